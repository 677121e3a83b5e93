"""Arrow schemas of every Delta table, in one place. ``RESTRICTED`` names the tables that hold PHI."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["DEID_AUDIT", "DEID_CROSSWALK", "DEID_INSTANCES", "PARTITION_COLUMN", "QUARANTINE", "RAW_INSTANCES", "RESTRICTED", "SCHEMAS"]

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

SCHEMAS: dict[str, pa.Schema] = {
    "raw_instances": RAW_INSTANCES, "quarantine": QUARANTINE, "deid_instances": DEID_INSTANCES,
    "deid_audit": DEID_AUDIT, "deid_crosswalk": DEID_CROSSWALK,
}

RESTRICTED: frozenset[str] = frozenset({"raw_instances", "deid_crosswalk"})
