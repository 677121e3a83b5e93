"""Blocking checks on ``raw_dicom``, computed from what was actually written to Delta."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from hca_assets.config import Settings
from hca_assets.ingest import STAGE
from hca_assets.lake import QUARANTINE, RAW_INSTANCES, read_table
from hca_assets.lake.delta import table_schema
from hca_assets.landing import Batch

SCHEMA = "schema_matches"
UNIQUE_SOP = "sop_instance_uid_unique"
COUNTS = "counts_add_up"

INGEST_CHECKS = [
    dg.AssetCheckSpec(SCHEMA, asset="raw_dicom", blocking=True, description="raw_instances and quarantine have the declared schemas"),
    dg.AssetCheckSpec(UNIQUE_SOP, asset="raw_dicom", blocking=True, description="no SOP Instance UID appears twice across all batches"),
    dg.AssetCheckSpec(COUNTS, asset="raw_dicom", blocking=True, description="received = ingested + quarantined for the batch"),
]


def _schema_result(uri: str, expected: pa.Schema) -> tuple[bool, str]:
    actual = table_schema(uri)
    if actual is None:
        return False, f"no table at {uri}"
    want = [(f.name, str(f.type)) for f in expected]
    got = [(f.name, str(f.type)) for f in actual]
    return want == got, "ok" if want == got else f"expected {want}, found {got}"


def run_ingest_checks(settings: Settings, batch: Batch) -> list[dg.AssetCheckResult]:
    raw_uri = settings.table_uri("raw_instances", restricted=True)
    q_uri = settings.table_uri("quarantine")
    ok_raw, msg_raw = _schema_result(raw_uri, RAW_INSTANCES)
    ok_q, msg_q = _schema_result(q_uri, QUARANTINE)

    sops = read_table(raw_uri, schema=RAW_INSTANCES).column("sop_instance_uid")
    counts = pc.value_counts(sops)
    duplicated = sum(1 for c in counts.field("counts").to_pylist() if c > 1)

    ingested = read_table(raw_uri, schema=RAW_INSTANCES, where={"batch": batch.key}).num_rows
    quarantined = read_table(q_uri, schema=QUARANTINE, where={"batch": batch.key, "stage": STAGE}).num_rows
    return [
        dg.AssetCheckResult(
            check_name=SCHEMA, passed=ok_raw and ok_q, metadata={"raw_instances": msg_raw, "quarantine": msg_q}
        ),
        dg.AssetCheckResult(
            check_name=UNIQUE_SOP, passed=duplicated == 0,
            metadata={"duplicated_uids": duplicated, "total_instances": len(sops)},
        ),
        dg.AssetCheckResult(
            check_name=COUNTS, passed=batch.received == ingested + quarantined,
            metadata={"received": batch.received, "ingested": ingested, "quarantined": quarantined},
        ),
    ]
