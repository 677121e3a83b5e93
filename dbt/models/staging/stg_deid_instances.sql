-- Published de-identified instances: pseudonymous UIDs and patient, never an original value.
select batch, sop_instance_uid, series_instance_uid, study_instance_uid, patient_pseudonym, modality,
       sop_class_uid, transfer_syntax, burned_in, published_at
from {{ source('lake', 'deid_instances') }}
