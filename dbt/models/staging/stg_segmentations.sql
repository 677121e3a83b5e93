-- One row per series (3D) or image (2D) and prompted structure, segmented or not.
select batch, study_instance_uid, series_instance_uid, sop_instance_uid, modality, structure, backend, status,
       voxels, area_mm2, volume_ml, code_version, segmented_at
from {{ source('lake', 'segmentations') }}
