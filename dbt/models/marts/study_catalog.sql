-- One row per de-identified study: modalities, body parts, size, shifted date, labels, geometry QA.
-- Pseudonymous identifiers only.
with series as (select * from {{ ref('int_series') }}),
labels as (
    select d.study_instance_uid, string_agg(distinct l.class_label, ',' order by l.class_label) as class_labels,
           bool_or(l.study_has_lesion) as has_lesion
    from {{ ref('stg_labels') }} l
    join {{ ref('stg_deid_instances') }} d using (sop_instance_uid)
    group by d.study_instance_uid
)
select s.study_instance_uid, any_value(s.patient_pseudonym) as patient_pseudonym, min(s.study_date) as study_date,
       string_agg(distinct s.modality, ',' order by s.modality) as modalities,
       string_agg(distinct s.body_part, ',' order by s.body_part) as body_parts,
       string_agg(distinct s.manufacturer, ',' order by s.manufacturer) as manufacturers,
       count(*) as series, sum(s.instances)::bigint as instances, sum(s.images)::bigint as images,
       count(*) filter (where s.is_volume) as volumes,
       count(*) filter (where s.has_geometry_issues) as series_with_geometry_issues,
       l.class_labels, l.has_lesion, min(s.first_batch) as first_batch, min(s.published_at) as published_at
from series s
left join labels l using (study_instance_uid)
group by s.study_instance_uid, l.class_labels, l.has_lesion
