-- How many studies, series, instances and patients per modality and body part ("how many CT studies per body part?").
select modality, body_part, count(distinct study_instance_uid) as studies, count(*) as series,
       sum(instances)::bigint as instances, sum(images)::bigint as images, count(distinct patient_pseudonym) as patients
from {{ ref('int_series') }}
group by modality, body_part
