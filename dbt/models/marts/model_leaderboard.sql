-- The latest evaluation of each code_version × target (its newest run), one row per level × aggregation × metric:
-- retrieval metrics 'overall', segmentation metrics averaged over the structures. rank 1 = best code_version.
with latest as (
    select code_version, target, arg_max(run_id, evaluated_at) as run_id, max(evaluated_at) as evaluated_at
    from {{ ref('stg_evaluations') }}
    group by code_version, target
),
scores as (
    select e.task, e.code_version, e.target, e.level, e.aggregation, e.metric,
           avg(e.value) as value, count(*) as labels, sum(e.queries)::bigint as queries, l.run_id, l.evaluated_at
    from {{ ref('stg_evaluations') }} e
    join latest l using (code_version, target, run_id)
    where e.task = 'segmentation' or e.label = 'overall'
    group by e.task, e.code_version, e.target, e.level, e.aggregation, e.metric, l.run_id, l.evaluated_at
)
select *, metric like 'hd95%' as lower_is_better,
       rank() over (partition by task, target, level, aggregation, metric
                    order by case when metric like 'hd95%' then value else -value end) as rank
from scores
