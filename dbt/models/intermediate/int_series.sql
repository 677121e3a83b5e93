-- One row per published series: what an analyst filters by. Modality, patient and counts from the published
-- instances; body part from the rendered frames; manufacturer, shifted study date, slice thickness and geometry QA
-- from the `series` table where it has the series (null otherwise).
with instances as (
    select series_instance_uid, min(batch) as first_batch, any_value(study_instance_uid) as study_instance_uid,
           any_value(patient_pseudonym) as patient_pseudonym, any_value(modality) as modality,
           count(*) as instances, min(published_at) as published_at
    from {{ ref('stg_deid_instances') }}
    group by series_instance_uid
),
frames as (
    select series_instance_uid, mode(body_part) as body_part, count(*) as images
    from {{ ref('stg_images') }}
    group by series_instance_uid
),
attributes as (
    select series_instance_uid, any_value(manufacturer) as manufacturer, min(study_date) as study_date,
           any_value(slice_thickness_mm) as slice_thickness_mm, bool_or(has_geometry_issues) as has_geometry_issues
    from {{ ref('stg_series') }}
    group by series_instance_uid
)
select i.series_instance_uid, i.study_instance_uid, i.patient_pseudonym, i.first_batch, i.modality,
       coalesce(f.body_part, 'UNKNOWN') as body_part, i.instances, coalesce(f.images, 0) as images,
       v.series_instance_uid is not null as is_volume, v.slices, a.manufacturer, a.study_date, a.slice_thickness_mm,
       a.has_geometry_issues, i.published_at
from instances i
left join frames f using (series_instance_uid)
left join {{ ref('stg_volumes') }} v using (series_instance_uid)
left join attributes a using (series_instance_uid)
