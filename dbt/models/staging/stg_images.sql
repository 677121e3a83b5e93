-- One row per rendered frame (1024² PNG); body_part is the de-identified BodyPartExamined (null if absent).
select batch, sop_instance_uid, frame, series_instance_uid, study_instance_uid, patient_pseudonym, modality,
       upper(nullif(trim(body_part), '')) as body_part, rows, columns, spacing_row_mm, spacing_col_mm, "window",
       constant, preprocessing_version
from {{ source('lake', 'images') }}
