-- One row per item a stage set aside (a file, or an instance it could not process).
select batch, stage, reason, sha256, kept_as, message, quarantined_at
from {{ source('lake', 'quarantine') }}
