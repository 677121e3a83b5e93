-- Per batch and stage (step = its place in the pipeline): items in = items out + items quarantined, nothing unaccounted (tested: ledger_balances).
-- deid_dicom: instances raw_dicom ingested (its latest successful run's row count, from `runs`) → instances
--   published or quarantined by de-identification.
-- images: instances published by de-identification → instances rendered (≥ 1 frame) or quarantined by rendering.
-- embeddings: frames rendered → frames embedded, per embedding code_version; constant frames (stored values
--   constant: nothing to embed) are set aside, counted as items_quarantined.
with ingested as (
    select batch, arg_max(instances, finished_at) as n from {{ ref('stg_runs') }}
    where stage = 'raw_dicom' and outcome = 'success' and instances is not null
    group by batch
),
published as (
    select batch, count(*) as n from {{ ref('stg_deid_instances') }} group by batch
),
rendered as (
    select batch, count(distinct sop_instance_uid) as n, count(*) as frames, count(*) filter (where constant) as constant,
           max(preprocessing_version) as version
    from {{ ref('stg_images') }} group by batch
),
quarantined as (
    select batch, stage, count(*) as n from {{ ref('stg_quarantine') }} group by batch, stage
),
embedded as (
    select batch, code_version, count(*) as n from {{ ref('stg_embeddings') }} group by batch, code_version
),
ledger as (
    select i.batch, 1 as step, 'deid_dicom' as stage, '' as version, 'instances' as unit,
           i.n as items_in, coalesce(p.n, 0) as items_out, coalesce(q.n, 0) as items_quarantined
    from ingested i
    left join published p using (batch)
    left join quarantined q on q.batch = i.batch and q.stage = 'deid_dicom'
    union all
    select p.batch, 2, 'images', coalesce(r.version, ''), 'instances', p.n, coalesce(r.n, 0), coalesce(q.n, 0)
    from published p
    left join rendered r using (batch)
    left join quarantined q on q.batch = p.batch and q.stage = 'images'
    where r.n is not null or q.n is not null  -- the stage has run on the batch
    union all
    select e.batch, 3, 'embeddings', e.code_version, 'frames', coalesce(r.frames, 0), e.n, coalesce(r.constant, 0)
    from embedded e
    left join rendered r using (batch)
)
select *, items_in - items_out - items_quarantined as unaccounted
from ledger
