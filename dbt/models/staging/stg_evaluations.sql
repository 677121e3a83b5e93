-- Every evaluation row; task is what was evaluated: retrieval (kNN over embeddings) or segmentation.
select run_id,
       case when target = 'segmentation' then 'segmentation' else 'retrieval' end as task,
       target, level, coalesce(aggregation, 'none') as aggregation, label, metric, value, queries, code_version,
       evaluated_at
from {{ source('lake', 'evaluations') }}
