-- Promoted de-identified series attributes and geometry QA (one row per series and batch).
select batch, series_instance_uid, study_instance_uid, modality, upper(nullif(trim(body_part), '')) as body_part,
       manufacturer, model_name, study_date, series_date, instances, frames, slice_thickness_mm,
       pixel_spacing_row_mm, pixel_spacing_col_mm, slice_spacing_mm, missing_slices, duplicate_positions,
       gantry_tilt_deg, localizers, spacing_irregular, orientation_inconsistent,
       len(geometry_issues) > 0 as has_geometry_issues
from {{ source('lake', 'series') }}
