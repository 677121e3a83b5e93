-- One row per 3D series rendered as a NIfTI volume.
select batch, series_instance_uid, modality, slices, preprocessing_version
from {{ source('lake', 'volumes') }}
