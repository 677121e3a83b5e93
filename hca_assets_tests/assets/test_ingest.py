"""raw_dicom materialized through Dagster: checks pass, re-runs are idempotent, no PHI in metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa

from hca_assets.assets.deid import deid_staged
from hca_assets.assets.ingest import raw_dicom
from hca_assets.checks.ingest import COUNTS, UNIQUE_SOP, run_ingest_checks
from hca_assets.config import Settings
from hca_assets.lake import RAW_INSTANCES, read_table
from hca_assets.lake.delta import write_partition
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.sources.claims import claim, load_batch
from hca_assets.synthetic.bad_inputs import write_bad_inputs


def materialize(settings: Settings, instance: dg.DagsterInstance, key: str) -> dg.ExecuteInJobResult:
    return dg.materialize(
        [raw_dicom], instance=instance, partition_key=key, raise_on_error=False,
        resources={"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey()},
    )


def test_materialize_twice_same_counts_checks_pass_no_phi(
    settings: Settings, small_study: tuple[Path, Path], phi_strings: list[str]
) -> None:
    landing = Path(settings.landing)
    shutil.copytree(small_study[0], landing / "study")
    write_bad_inputs(min(landing.rglob("ct/0001.dcm")), landing / "zz_bad", unreadable_dir=False)
    batch = claim(landing, Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    raw_uri = settings.table_uri("raw_instances", restricted=True)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        counts = []
        for _ in range(2):
            result = materialize(settings, instance, batch.key)
            assert result.success
            evaluations = result.get_asset_check_evaluations()
            assert len(evaluations) == 3 and all(e.passed for e in evaluations)
            counts.append((read_table(raw_uri).num_rows, read_table(settings.table_uri("quarantine")).num_rows))
        assert counts[0] == counts[1] and counts[0][0] > 0 and counts[0][1] == 10
        (mat,) = result.asset_materializations_for_node("raw_dicom")
        metadata_text = json.dumps({k: str(v.value) for k, v in mat.metadata.items()})
        assert mat.metadata["num_received"].value == batch.received
        assert not [s for s in phi_strings if s in metadata_text]
    quarantine = read_table(settings.table_uri("quarantine")).to_pylist()
    text = json.dumps(quarantine, default=str)
    assert not [s for s in phi_strings if s in text]
    assert "quarantine" in {p.name for p in Path(settings.lake).iterdir()}  # the listing below is not vacuous
    assert "raw_instances" not in {p.name for p in Path(settings.lake).iterdir()}  # the PHI-bearing index stays restricted
    assert raw_uri.startswith(settings.restricted) and Path(raw_uri, "_delta_log").is_dir()


def test_checks_fail_on_a_corrupted_table(settings: Settings, small_study: tuple[Path, Path]) -> None:
    landing = Path(settings.landing)
    shutil.copytree(small_study[0], landing)
    batch = claim(landing, Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        assert materialize(settings, instance, batch.key).success
    raw_uri = settings.table_uri("raw_instances", restricted=True)
    rows = read_table(raw_uri, where={"batch": batch.key})
    doubled = pa.concat_tables([rows, rows.slice(0, 1)])
    write_partition(raw_uri, doubled, match={"batch": batch.key}, schema=RAW_INSTANCES)
    results = {r.check_name: r.passed for r in run_ingest_checks(settings, load_batch(Path(settings.raw_batches), batch.key))}
    assert results[UNIQUE_SOP] is False and results[COUNTS] is False


def test_failed_check_fails_the_run(settings: Settings, small_study: tuple[Path, Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A blocking check that fails makes the run fail, and the next stage is not fed."""
    landing = Path(settings.landing)
    shutil.copytree(small_study[0], landing)
    batch = claim(landing, Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    import hca_assets.lake.delta as delta_module

    monkeypatch.setattr(delta_module, "write_partition", _drop_rows)  # raw_instances loses one row
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        result = dg.materialize(
            [raw_dicom, deid_staged], instance=instance, partition_key=batch.key, raise_on_error=False,
            resources={"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey()},
        )
    assert not result.success
    assert read_table(settings.table_uri("raw_instances", restricted=True)).num_rows == batch.received - 1
    assert {e.check_name for e in result.get_asset_check_evaluations() if not e.passed} == {COUNTS}
    assert result.asset_materializations_for_node("raw_dicom")  # written, then stopped by its check
    assert not result.asset_materializations_for_node("deid_staged")  # downstream never ran
    assert not Path(settings.deid_staging).exists() or not any(Path(settings.deid_staging).rglob("*.dcm"))


def _drop_rows(uri: str, data: pa.Table, **kw):  # type: ignore[no-untyped-def]
    return write_partition(uri, data.slice(0, max(0, data.num_rows - 1)), **kw)
