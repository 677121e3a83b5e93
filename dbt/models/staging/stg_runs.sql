-- One row per Dagster run and stage (asset step): outcome, rows processed, seconds.
select run_id, job, stage, "partition" as batch, outcome, instances, seconds, started_at, finished_at
from {{ source('lake', 'runs') }}
