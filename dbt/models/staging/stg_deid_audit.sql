-- What de-identification did to each published instance: counts per PS3.15 action, never values.
select batch, sop_instance_uid, profile, key_fingerprint, removed, emptied, dummied, uids_replaced, cleaned, kept,
       private_removed, burned_in, frames_screened, frames_flagged, frames_net_read, net_hits, frames_redacted,
       dates_shifted, audited_at
from {{ source('lake', 'deid_audit') }}
