"""Arrow schemas of the Delta tables; :mod:`hca_assets.lake.registry` gives each its name, zone, keys and partitioning."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["AUDIT_LOG", "DEID_AUDIT", "DEID_CROSSWALK", "DEID_INSTANCES", "DRIFT", "EMBEDDINGS", "EVALUATIONS", "EXPORTS",
           "FEEDBACK", "IMAGES", "INDEX_BUILDS", "LABELS", "OOD_SCORES", "PARTITION_COLUMN", "QUARANTINE", "RAW_INSTANCES",
           "REPORTS", "RUNS", "SEGMENTATIONS", "SERIES", "SERIES_EMBEDDINGS", "STUDIES", "STUDY_ARRIVALS", "VOLUMES"]

PARTITION_COLUMN = "batch"

_TS = pa.timestamp("us", tz="UTC")

RAW_INSTANCES = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # relative to the batch folder (file names may be PHI)
        pa.field("sop_instance_uid", pa.string(), nullable=False),
        pa.field("sop_class_uid", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string(), nullable=False),
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("body_part", pa.string()),
        pa.field("transfer_syntax", pa.string(), nullable=False),
        pa.field("rows", pa.int32(), nullable=False),
        pa.field("columns", pa.int32(), nullable=False),
        pa.field("frames", pa.int32(), nullable=False),
        pa.field("samples_per_pixel", pa.int16(), nullable=False),
        pa.field("bits_allocated", pa.int16(), nullable=False),
        pa.field("photometric", pa.string()),
        pa.field("file_size", pa.int64(), nullable=False),
        pa.field("pixel_bytes", pa.int64(), nullable=False),
        pa.field("patient_key", pa.string(), nullable=False),
        pa.field("ingested_at", _TS, nullable=False),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("item", pa.int32(), nullable=False),  # ordinal within (batch, stage): identical copies are two items
        pa.field("sha256", pa.string()),  # null when the item could not be read at all
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),  # PHI-free by construction
        pa.field("kept_as", pa.string(), nullable=False),  # path under the quarantine zone
        pa.field("quarantined_at", _TS, nullable=False),
    ]
)

DEID_INSTANCES = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string(), nullable=False),  # pseudonymous
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string(), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("sop_class_uid", pa.string(), nullable=False),
        pa.field("transfer_syntax", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # relative to the deid zone
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("burned_in", pa.string(), nullable=False),
        pa.field("published_at", _TS, nullable=False),
    ]
)

DEID_AUDIT = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string(), nullable=False),  # pseudonymous
        pa.field("profile", pa.string(), nullable=False),
        pa.field("key_fingerprint", pa.string(), nullable=False),
        pa.field("removed", pa.int32(), nullable=False),  # X
        pa.field("emptied", pa.int32(), nullable=False),  # Z
        pa.field("dummied", pa.int32(), nullable=False),  # D
        pa.field("uids_replaced", pa.int32(), nullable=False),  # U
        pa.field("cleaned", pa.int32(), nullable=False),  # C
        pa.field("kept", pa.int32(), nullable=False),  # K
        pa.field("private_removed", pa.int32(), nullable=False),
        pa.field("burned_in", pa.string(), nullable=False),
        pa.field("frames_screened", pa.int32()),  # by the classical glyph screen (null: audited before issue 19)
        pa.field("frames_flagged", pa.int32()),  # ... where it saw type
        pa.field("frames_net_read", pa.int32()),  # read by the learned net whatever the screen said
        pa.field("net_hits", pa.int32()),  # frames where the net found text the screen missed
        pa.field("frames_redacted", pa.int32()),
        pa.field("dates_shifted", pa.bool_(), nullable=False),
        pa.field("audited_at", _TS, nullable=False),
    ]
)

DEID_CROSSWALK = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # patient | study | series | instance
        pa.field("original", pa.string(), nullable=False),
        pa.field("pseudonym", pa.string(), nullable=False),
        pa.field("date_offset_days", pa.int32()),  # patients only
    ]
)

IMAGES = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string(), nullable=False),
        pa.field("frame", pa.int32(), nullable=False),
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string(), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("body_part", pa.string()),
        pa.field("path", pa.string(), nullable=False),  # relative to the images zone
        pa.field("rows", pa.int32(), nullable=False),  # original size
        pa.field("columns", pa.int32(), nullable=False),
        pa.field("spacing_row_mm", pa.float64()),
        pa.field("spacing_col_mm", pa.float64()),
        pa.field("window", pa.string()),  # CT preset, or null (VOI LUT / percentiles)
        pa.field("constant", pa.bool_(), nullable=False),
        pa.field("preprocessing_version", pa.string(), nullable=False),
    ]
)

VOLUMES = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # NIfTI, relative to the images zone
        pa.field("slices", pa.int32(), nullable=False),
        pa.field("shape", pa.list_(pa.int32()), nullable=False),
        pa.field("affine", pa.list_(pa.float64()), nullable=False),  # 4×4 RAS, row-major
        pa.field("preprocessing_version", pa.string(), nullable=False),
    ]
)

EMBEDDINGS = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string(), nullable=False),
        pa.field("frame", pa.int32(), nullable=False),
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string(), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),  # L2-normalised, length = model dim
        pa.field("code_version", pa.string(), nullable=False),
    ]
)

SERIES_EMBEDDINGS = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("aggregation", pa.string(), nullable=False),  # mean | max | median | std
        pa.field("study_instance_uid", pa.string(), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("slices", pa.int32(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
    ]
)

LABELS = pa.schema(
    [
        pa.field("batch", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string(), nullable=False),  # pseudonymous
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("class_label", pa.string(), nullable=False),
        pa.field("body_region", pa.string(), nullable=False),
        pa.field("lesion_present", pa.bool_(), nullable=False),
        pa.field("lesion_type", pa.string()),
        pa.field("study_has_lesion", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

EVALUATIONS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("level", pa.string(), nullable=False),  # image | series | study
        pa.field("target", pa.string(), nullable=False),  # which label: class_label | lesion | class_and_lesion
        pa.field("label", pa.string(), nullable=False),  # a class, or "overall"
        pa.field("aggregation", pa.string()),  # series level (and "mean" at study level)
        pa.field("queries", pa.int32(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("evaluated_at", _TS, nullable=False),
    ]
)

DRIFT = pa.schema(
    [  # one row per batch and embedding code_version: how far its vectors are from the reference window (drift.py)
        pa.field("batch", pa.string(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # compared | ood_only (one image) | no_reference | empty
        pa.field("reference_batches", pa.list_(pa.string()), nullable=False),
        pa.field("reference_rows", pa.int64(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("mmd2", pa.float64()),  # unbiased MMD², RBF kernel (median-heuristic bandwidth of the reference)
        pa.field("p_value", pa.float64()),  # permutation test
        pa.field("threshold", pa.float64()),  # calibrated on the reference window
        pa.field("bandwidth", pa.float64()),
        pa.field("drifted", pa.bool_(), nullable=False),
        pa.field("mean_shift", pa.float64()),  # mean over dimensions of |Δμ| / σ_ref
        pa.field("max_mean_shift", pa.float64()),
        pa.field("shifted_dims", pa.int32()),  # dimensions with |Δμ| / σ_ref > 3
        pa.field("max_log_var_ratio", pa.float64()),
        pa.field("ood_threshold", pa.float64()),  # k-th neighbour distance the reference's own quantile gives
        pa.field("ood_fraction", pa.float64()),
        pa.field("computed_at", _TS, nullable=False),
    ]
)

OOD_SCORES = pa.schema(
    [  # one row per image and embedding code_version of a batch compared with its reference window
        pa.field("batch", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string(), nullable=False),
        pa.field("frame", pa.int32(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("kth_distance", pa.float64(), nullable=False),  # to the k-th nearest reference vector
        pa.field("score", pa.float64(), nullable=False),  # kth_distance / threshold: > 1 is out of distribution
        pa.field("percentile", pa.float64(), nullable=False),  # among the reference's own leave-one-patient-out distances
        pa.field("ood", pa.bool_(), nullable=False),
    ]
)

AUDIT_LOG = pa.schema(
    [  # one row per restricted read (written before it runs), CLI action and Dagster run outcome (lake/audit.py)
        pa.field("accessed_at", _TS, nullable=False),
        pa.field("user_name", pa.string(), nullable=False),  # the operating-system user
        pa.field("command", pa.string(), nullable=False),  # sql | demo | deid | search | segment | backfill | … | run
        pa.field("query_sha256", pa.string()),  # restricted reads: never the query text, it may quote PHI
        pa.field("restricted_tables", pa.list_(pa.string())),  # restricted reads: the restricted views it could read
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),  # restricted_read | cli | run
        pa.field("outcome", pa.string()),  # ok | error | failed (CLI), success | failure (runs)
        pa.field("restricted", pa.bool_(), nullable=False),  # a --restricted action
        pa.field("job_name", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("assets", pa.list_(pa.string())),  # asset keys a run materialized or a backfill targets
        pa.field("partition", pa.string()),  # the ingest batch
        pa.field("counts", pa.list_(pa.struct([("name", pa.string()), ("value", pa.int64())]))),  # named numbers only
    ]
)

SEGMENTATIONS = pa.schema(
    [  # one row per series (3D) or image (2D) and structure its strategy prompts for, segmented or not
        pa.field("batch", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string(), nullable=False),
        pa.field("sop_instance_uid", pa.string()),  # planar images only; null for a 3D series
        pa.field("modality", pa.string(), nullable=False),
        pa.field("structure", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("backend", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # segmented | unsupported (backend or input cannot) | failed
        pa.field("voxels", pa.int64()),
        pa.field("area_mm2", pa.float64()),  # planar masks
        pa.field("volume_ml", pa.float64()),  # 3D masks
        pa.field("confidence", pa.float64()),  # null where the backend has none
        pa.field("mask_path", pa.string()),  # NIfTI on the volume grid, relative to the segmentations zone
        pa.field("seg_path", pa.string()),  # DICOM SEG of the series, relative to the segmentations zone
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("segmented_at", _TS, nullable=False),
    ]
)

SERIES = pa.schema(
    [  # one row per published series: attributes an analyst filters by, and its geometry QA (de-identified headers)
        pa.field("batch", pa.string(), nullable=False),
        pa.field("series_instance_uid", pa.string(), nullable=False),  # pseudonymous
        pa.field("study_instance_uid", pa.string(), nullable=False),
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("body_part", pa.string()),
        pa.field("manufacturer", pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("study_date", pa.date32()),  # shifted per patient (or as the de-identification profile left it)
        pa.field("series_date", pa.date32()),
        pa.field("instances", pa.int32(), nullable=False),
        pa.field("frames", pa.int32(), nullable=False),
        pa.field("rows", pa.int32()),
        pa.field("columns", pa.int32()),
        pa.field("slice_thickness_mm", pa.float64()),
        pa.field("pixel_spacing_row_mm", pa.float64()),
        pa.field("pixel_spacing_col_mm", pa.float64()),
        pa.field("slice_spacing_mm", pa.float64()),  # median gap between slice positions along the normal
        pa.field("slices", pa.int32(), nullable=False),  # frames with a position (localizers excluded)
        pa.field("missing_slices", pa.int32(), nullable=False),  # gaps of about k spacings count k - 1
        pa.field("duplicate_positions", pa.int32(), nullable=False),
        pa.field("gantry_tilt_deg", pa.float64()),  # GantryDetectorTilt, else the slice stack's shear angle
        pa.field("localizers", pa.int32(), nullable=False),  # scouts mixed into the series
        pa.field("spacing_irregular", pa.bool_(), nullable=False),  # slice gaps or pixel spacing differ
        pa.field("orientation_inconsistent", pa.bool_(), nullable=False),
        pa.field("geometry_issues", pa.list_(pa.string()), nullable=False),  # empty: geometry is clean
    ]
)

STUDIES = pa.schema(
    [  # one row per published study and batch, aggregated from its series
        pa.field("batch", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string(), nullable=False),  # pseudonymous
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("study_date", pa.date32()),  # shifted
        pa.field("modalities", pa.list_(pa.string()), nullable=False),
        pa.field("body_parts", pa.list_(pa.string()), nullable=False),
        pa.field("manufacturers", pa.list_(pa.string()), nullable=False),
        pa.field("series", pa.int32(), nullable=False),
        pa.field("instances", pa.int32(), nullable=False),
        pa.field("series_with_geometry_issues", pa.int32(), nullable=False),
    ]
)

INDEX_BUILDS = pa.schema(
    [  # one row per FAISS index build or extension (per run and level)
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),  # image | series | study
        pa.field("code_version", pa.string(), nullable=False),  # embedding version the index belongs to
        pa.field("index_type", pa.string(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),  # built | extended by N
        pa.field("ntotal", pa.int64(), nullable=False),
        pa.field("dim", pa.int32(), nullable=False),
        pa.field("recall_at_10", pa.float64()),  # against exact search, where measured (approximate indexes)
        pa.field("path", pa.string(), nullable=False),  # relative to the indexes zone
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("built_at", _TS, nullable=False),
    ]
)

REPORTS = pa.schema(
    [  # CXRReportGen: one row per finding of a chest X-ray study (or one `failed` row per study), PHI-free
        pa.field("batch", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string(), nullable=False),  # pseudonymous
        pa.field("frontal_sop_instance_uid", pa.string()),
        pa.field("lateral_sop_instance_uid", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # reported | failed
        pa.field("reason", pa.string()),  # why a study failed (HTTP status, model error), never request content
        pa.field("finding_index", pa.int32()),
        pa.field("sentence", pa.string()),
        pa.field("boxes", pa.list_(pa.list_(pa.float64()))),  # [x0, y0, x1, y1] in 0-1 of the frontal centre crop
        pa.field("boxes_px", pa.list_(pa.list_(pa.float64()))),  # the same boxes in pixels of the frontal image
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("reported_at", _TS, nullable=False),
    ]
)

STUDY_ARRIVALS = pa.schema(
    [  # one row per network source and study (hca_assets/sources): how complete it is, PHI-free
        pa.field("source", pa.string(), nullable=False),  # cstore | dicomweb (the source's name)
        pa.field("study_key", pa.string(), nullable=False),  # keyed digest of the StudyInstanceUID (sources.base)
        pa.field("expected_instances", pa.int64()),  # QIDO's NumberOfStudyRelatedInstances; null when unknown
        pa.field("received_instances", pa.int64(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),
        # count_matches | stable_after_release | stable_after_abort (an association ended without release) | null
        pa.field("completed_by", pa.string()),  # while incomplete
        pa.field("released", pa.int64(), nullable=False),  # folders moved into landing so far (late instances: > 1)
        pa.field("first_arrival", _TS, nullable=False),
        pa.field("last_arrival", _TS, nullable=False),
    ]
)

EXPORTS = pa.schema(
    [  # one row per de-identified study of a batch sent to the export destination (hca_assets/export), PHI-free
        pa.field("batch", pa.string(), nullable=False),
        pa.field("study_instance_uid", pa.string(), nullable=False),  # pseudonymous
        pa.field("patient_pseudonym", pa.string(), nullable=False),
        pa.field("destination_kind", pa.string(), nullable=False),  # stow | cstore
        pa.field("destination", pa.string(), nullable=False),  # DICOMweb root or CALLED_AE@host:port, no credentials
        pa.field("status", pa.string(), nullable=False),  # exported | failed
        pa.field("instances", pa.int32(), nullable=False),  # de-identified instances of the study in the batch
        pa.field("seg_objects", pa.int32(), nullable=False),  # DICOM SEG results of its series
        pa.field("accepted", pa.int32(), nullable=False),  # of both, what the destination confirmed
        pa.field("refused", pa.int32(), nullable=False),  # instances the destination answered with a failure status
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("message", pa.string()),  # why it failed (PHI-free); null when exported
        pa.field("fhir_path", pa.string(), nullable=False),  # ImagingStudy JSON, relative to the exports zone
        pa.field("exported_at", _TS, nullable=False),
    ]
)

RUNS = pa.schema(
    [  # one row per Dagster run and stage (asset step): what it processed, how long, how it ended
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("job", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("partition", pa.string()),  # the ingest batch, or null
        pa.field("outcome", pa.string(), nullable=False),  # success | failure | skipped
        pa.field("instances", pa.int64()),  # the stage's row count, where it reported one
        pa.field("seconds", pa.float64()),
        pa.field("started_at", _TS),
        pa.field("finished_at", _TS),
    ]
)

FEEDBACK = pa.schema(
    [  # one row per reviewer verdict (hca feedback, or a CSV in <data>/feedback/): pseudonymous ids only
        pa.field("feedback_id", pa.string(), nullable=False),  # sha256 prefix of the verdict's content
        pa.field("kind", pa.string(), nullable=False),  # search_hit | mask
        pa.field("sop_instance_uid", pa.string()),  # the hit (search_hit), or the image a 2D mask is on
        pa.field("series_instance_uid", pa.string()),  # the mask's series (mask)
        pa.field("structure", pa.string()),  # the mask's structure (mask)
        pa.field("query_sop_instance_uid", pa.string()),  # the query the hit answered, when known
        pa.field("verdict", pa.string(), nullable=False),  # correct | wrong | corrected
        pa.field("corrected_label", pa.string()),  # verdict corrected: the right class label
        pa.field("code_version", pa.string()),  # the embedding (hit) or segmenter (mask) version under review
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("reviewed_at", _TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),  # cli, or csv:<file name>
    ]
)
