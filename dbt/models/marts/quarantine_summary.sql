-- What was set aside, where and why: items per stage and reason, over every batch.
select stage, reason, count(*) as items, count(distinct sha256) as distinct_files,
       count(distinct batch) as batches, min(quarantined_at) as first_at, max(quarantined_at) as last_at
from {{ ref('stg_quarantine') }}
group by stage, reason
