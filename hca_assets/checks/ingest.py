"""Blocking checks on ``raw_dicom``, computed from what was actually written to Delta."""

from __future__ import annotations

import dagster as dg
import pyarrow.compute as pc

from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import table_schema
from hca_assets.sources.claims import Batch
from hca_assets.stages.ingest import STAGE

SCHEMA = "schema_matches"
UNIQUE_SOP = "sop_instance_uid_unique"
COUNTS = "counts_add_up"

INGEST_CHECKS = [
    dg.AssetCheckSpec(SCHEMA, asset="raw_dicom", blocking=True, description="raw_instances and quarantine have the declared schemas"),
    dg.AssetCheckSpec(UNIQUE_SOP, asset="raw_dicom", blocking=True, description="no SOP Instance UID appears twice across all batches"),
    dg.AssetCheckSpec(COUNTS, asset="raw_dicom", blocking=True, description="received = ingested + quarantined for the batch"),
]


def _schema_result(settings: Settings, spec: tables.TableSpec) -> tuple[bool, str]:
    actual = table_schema(spec.uri(settings))
    if actual is None:
        return False, f"no table {spec.name}"
    want = [(f.name, str(f.type)) for f in spec.schema]
    got = [(f.name, str(f.type)) for f in actual]
    return want == got, "ok" if want == got else f"expected {want}, found {got}"


def run_ingest_checks(settings: Settings, batch: Batch) -> list[dg.AssetCheckResult]:
    ok_raw, msg_raw = _schema_result(settings, tables.RAW_INSTANCES)
    ok_q, msg_q = _schema_result(settings, tables.QUARANTINE)

    sops = tables.RAW_INSTANCES.read(settings, columns=["sop_instance_uid"]).column("sop_instance_uid")
    counts = pc.value_counts(sops)
    duplicated = sum(1 for c in counts.field("counts").to_pylist() if c > 1)

    ingested = tables.RAW_INSTANCES.read(settings, where={"batch": batch.key}, columns=["batch"]).num_rows
    quarantined = tables.QUARANTINE.read(settings, where={"batch": batch.key, "stage": STAGE}, columns=["batch"]).num_rows
    return [
        dg.AssetCheckResult(
            check_name=SCHEMA, passed=ok_raw and ok_q,
            metadata={tables.RAW_INSTANCES.name: msg_raw, tables.QUARANTINE.name: msg_q}
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
