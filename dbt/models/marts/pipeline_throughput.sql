-- Per stage (asset step): runs and their outcomes, batches, rows processed, seconds and rows per second, from the
-- `runs` table (one row per Dagster run and stage).
select stage, count(*) as runs,
       count(*) filter (where outcome = 'success') as succeeded,
       count(*) filter (where outcome = 'failure') as failed,
       count(distinct batch) as batches,
       (sum(instances) filter (where outcome = 'success'))::bigint as rows_processed,
       round(sum(seconds) filter (where outcome = 'success'), 3) as seconds,
       round(sum(instances) filter (where outcome = 'success')
             / nullif(sum(seconds) filter (where outcome = 'success' and instances is not null), 0), 1)
           as rows_per_second,
       round(median(seconds), 3) as median_seconds,
       max(finished_at) as last_finished_at
from {{ ref('stg_runs') }}
group by stage
