-- Class and lesion labels per instance (from the generator's ground truth).
select batch, sop_instance_uid, series_instance_uid, patient_pseudonym, class_label, body_region, lesion_present,
       lesion_type, study_has_lesion, source
from {{ source('lake', 'labels') }}
