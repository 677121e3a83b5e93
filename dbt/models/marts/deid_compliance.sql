-- De-identification per batch: instances published and audited, PS3.15 actions applied, burned-in text outcome,
-- PHI residue caught, and what the stage quarantined. compliant = every published instance audited and no
-- unverified burned-in text published.
with published as (
    select batch, count(*) as published,
           count(*) filter (where burned_in = 'unverified') as published_burned_in_unverified
    from {{ ref('stg_deid_instances') }} group by batch
),
audit as (
    select batch, count(*) as audited, string_agg(distinct profile, ',' order by profile) as profiles,
           count(distinct key_fingerprint) as keys, sum(removed)::bigint as removed, sum(emptied)::bigint as emptied,
           sum(dummied)::bigint as dummied, sum(uids_replaced)::bigint as uids_replaced, sum(cleaned)::bigint as cleaned, sum(kept)::bigint as kept,
           sum(private_removed)::bigint as private_removed, count(*) filter (where dates_shifted) as dates_shifted,
           count(*) filter (where burned_in = 'redacted') as burned_in_redacted,
           count(*) filter (where burned_in = 'no_text_found') as burned_in_none_found,
           count(*) filter (where burned_in = 'not_checked') as burned_in_not_checked,
           sum(frames_screened)::bigint as frames_screened, sum(frames_net_read)::bigint as frames_net_read,
           sum(net_hits)::bigint as net_hits, sum(frames_redacted)::bigint as frames_redacted
    from {{ ref('stg_deid_audit') }} group by batch
),
quarantined as (
    select batch, count(*) as quarantined,
           count(*) filter (where reason = 'phi_residue') as phi_residue,
           count(*) filter (where reason = 'burned_in_unverified') as burned_in_unverified,
           count(*) filter (where reason = 'deid_failed') as deid_failed
    from {{ ref('stg_quarantine') }} where stage = 'deid_dicom' group by batch
)
select batch, coalesce(p.published, 0) as published, coalesce(a.audited, 0) as audited, a.profiles, a.keys,
       a.removed, a.emptied, a.dummied, a.uids_replaced, a.cleaned, a.kept, a.private_removed, a.dates_shifted,
       a.burned_in_redacted, a.burned_in_none_found, a.burned_in_not_checked,
       a.frames_screened, a.frames_net_read, a.net_hits, a.frames_redacted,
       coalesce(q.quarantined, 0) as quarantined, coalesce(q.phi_residue, 0) as phi_residue,
       coalesce(q.burned_in_unverified, 0) as burned_in_unverified, coalesce(q.deid_failed, 0) as deid_failed,
       coalesce(p.published, 0) = coalesce(a.audited, 0) and coalesce(p.published_burned_in_unverified, 0) = 0
           as compliant
from published p
full join audit a using (batch)
full join quarantined q using (batch)
