"""Reprocessing without a manual step, on a real Dagster instance: code_versions come from the settings the
Definitions are built with; a changed embedder, preprocessing, prompt set or de-identification profile makes
declarative automation request every batch of what changed and of what depends on it, and the old version's
rows and index stay queryable next to the new ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import pytest

from hca_assets.assets.deid import deid_staged
from hca_assets.config import Settings
from hca_assets.definitions import build_defs, versioned
from hca_assets.dicom import pixels
from hca_assets.lake import registry as tables
from hca_assets.orchestration.code_versions import StaleDefinition
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.search.query import load_query_image, search_similar
from hca_assets.segmentation import backends
from hca_assets.sensors.landing import landing_sensor
from hca_assets.synthetic import GeneratorOptions, generate
from hca_assets_tests.builders import tiny_model

TINY = GeneratorOptions(patients=1, ct_slices=8, ct_size=32, cxr_size=48, mr_slices=8, mr_size=32, lesion_rate=0.0)
PER_BATCH = ("deid_staged", "deid_dicom", "images", "embeddings", "segmentations", "labels", "series", "studies")
Tick = dg.EvaluateAutomationConditionsResult


def land_and_ingest(settings: Settings, instance: dg.DagsterInstance, defs: dg.Definitions, seed: int) -> str:
    """New files in the landing zone: the landing sensor claims them and requests a run, run here as the daemon would."""
    generate(Path(settings.landing), Path(settings.truth_file).parent, dataclasses.replace(TINY, seed=seed))
    result = landing_sensor(dg.build_sensor_context(instance=instance,
                                                    resources={"storage": SettingsResource.from_settings(settings)}))
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(INGEST_BATCHES, list(request.partition_keys))
    (run,) = result.run_requests or []
    assert run.partition_key is not None
    ran = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, partition_key=run.partition_key)
    assert ran.success and all(e.passed for e in ran.get_asset_check_evaluations())
    return run.partition_key


def requested(tick: Tick, *assets: str) -> dict[str, set[str | None]]:
    return {a: set(tick.get_requested_partitions(dg.AssetKey(a))) for a in assets}


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, asset: str,
                partition: str | None = None) -> None:
    ran = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                       asset_selection=[dg.AssetKey(asset)])
    assert ran.success and all(e.passed for e in ran.get_asset_check_evaluations())


def test_a_new_embedder_reprocesses_every_batch_and_keeps_the_old_index(
        settings: Settings, tmp_path: Path) -> None:
    tiny_model(tmp_path / "m.onnx")
    onnx = dataclasses.replace(settings, embedder="onnx", onnx_model=str(tmp_path / "m.onnx"))
    old, new = build_defs(settings), build_defs(onnx)
    with dg.instance_for_test() as instance:
        tick = dg.evaluate_automation_conditions(defs=old, instance=instance)
        batches = {land_and_ingest(settings, instance, old, seed) for seed in (1, 2)}
        tick = dg.evaluate_automation_conditions(defs=old, instance=instance, cursor=tick.cursor)
        assert requested(tick, *PER_BATCH, "faiss_index") == {**{a: set() for a in PER_BATCH}, "faiss_index": {None}}
        materialize(old, instance, "index_job", "faiss_index")  # new landed files flowed to the index
        before = tables.EMBEDDINGS.read(settings).num_rows

        tick = dg.evaluate_automation_conditions(defs=new, instance=instance, cursor=tick.cursor)  # reloaded with onnx
        assert requested(tick, *PER_BATCH, "faiss_index") == {
            **{a: set() for a in PER_BATCH}, "embeddings": batches, "faiss_index": set()}
        for batch in sorted(batches):
            materialize(new, instance, "ingest_job", "embeddings", batch)
        tick = dg.evaluate_automation_conditions(defs=new, instance=instance, cursor=tick.cursor)
        assert requested(tick, "embeddings", "faiss_index") == {"embeddings": set(), "faiss_index": {None}}
        materialize(new, instance, "index_job", "faiss_index")
        tick = dg.evaluate_automation_conditions(defs=new, instance=instance, cursor=tick.cursor)
        assert tick.total_requested == 0  # (a tick sees the index built before the next batch lands)

        later = land_and_ingest(onnx, instance, new, 3)  # a batch landed after the switch: the new version only
        tick = dg.evaluate_automation_conditions(defs=new, instance=instance, cursor=tick.cursor)
        assert requested(tick, "embeddings", "faiss_index") == {"embeddings": set(), "faiss_index": {None}}
        materialize(new, instance, "index_job", "faiss_index")

    version_a, version_b = (d.resolve_asset_graph().get(dg.AssetKey("embeddings")).code_version for d in (old, new))
    assert version_a == "local@stats-1+pre-2" and version_b is not None and version_b.startswith("onnx@sha256-")
    rows = tables.EMBEDDINGS.read(settings).to_pylist()
    assert sum(r["code_version"] == version_a for r in rows) == before  # the old version's rows untouched
    by_batch = {b: {r["code_version"] for r in rows if r["batch"] == b} for b in {*batches, later}}
    assert by_batch == {**{b: {version_a, version_b} for b in batches}, later: {version_b}}
    image = next(r for r in tables.IMAGES.read(settings).to_pylist() if r["modality"] == "CT")
    query = load_query_image(Path(settings.images) / image["path"])
    for version_settings, version in ((settings, version_a), (onnx, version_b)):  # both versions' indexes answer
        found = search_similar(version_settings, image=query, k=len(rows))
        assert found[0].similarity > 0.99 and {n.sop_instance_uid for n in found} == {
            r["sop_instance_uid"] for r in rows if r["code_version"] == version}


def test_prompt_set_preprocessing_and_deid_profile_changes_request_what_they_change(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    defs = build_defs(settings)
    with dg.instance_for_test() as instance:
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        batches = {land_and_ingest(settings, instance, defs, seed) for seed in (4, 5)}
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=start.cursor)
        assert requested(start, *PER_BATCH) == {a: set() for a in PER_BATCH}

        def after(changed: dg.Definitions) -> dict[str, set[str | None]]:
            return requested(dg.evaluate_automation_conditions(defs=changed, instance=instance, cursor=start.cursor),
                             *PER_BATCH)

        with monkeypatch.context() as m:  # a new prompt set: re-segment every batch
            m.setattr(backends, "STRATEGIES_VERSION", "prompts-2")
            assert after(build_defs(settings)) == {a: batches if a == "segmentations" else set() for a in PER_BATCH}
        with monkeypatch.context() as m:  # new preprocessing: re-render, re-embed and re-segment every batch
            m.setattr(pixels, "PREPROCESSING_VERSION", "pre-3")
            m.setattr(backends, "PREPROCESSING_VERSION", "pre-3")
            assert after(build_defs(settings)) == {
                a: batches if a in ("images", "embeddings", "segmentations") else set() for a in PER_BATCH}
        profile = dataclasses.replace(settings, deid_options=("rtn_long_modif_dates",))  # every batch, every stage
        assert after(build_defs(profile)) == {a: batches for a in PER_BATCH}

        # resources configured unlike the loaded definition: one line, nothing written
        before = tables.DEID_INSTANCES.read(settings).num_rows
        stale = versioned([deid_staged], settings)
        result = dg.materialize(stale, instance=instance, partition_key=min(batches), raise_on_error=False,
                                resources={"storage": SettingsResource.from_settings(profile), "pseudonym_key": PseudonymKey()})
        (failure,) = result.get_step_failure_events()
        error = failure.step_failure_data.error
        cause = error.cause if error is not None else None
        assert cause is not None and cause.cls_name == StaleDefinition.__name__ and "\n" not in cause.message.strip()
        assert "reload the code location" in cause.message
        assert tables.DEID_INSTANCES.read(settings).num_rows == before
