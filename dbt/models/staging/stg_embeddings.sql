-- One row per embedded frame and embedding code_version (vectors stay in the lake, FAISS reads them there).
select batch, sop_instance_uid, frame, series_instance_uid, modality, code_version
from {{ source('lake', 'embeddings') }}
