"""Great Expectations suites: they pass on a real materialized batch, fail on deliberately broken tables, and as
blocking checks stop the downstream asset in a real run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.embeddings import embedding_drift, embeddings, labels
from hca_assets.assets.evaluation import feedback, segmentation_eval
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.search import faiss_index, retrieval_adapter, retrieval_eval
from hca_assets.assets.segmentation import segmentations_asset
from hca_assets.checks.expectation_suites import suite, validate
from hca_assets.checks.expectations import CHECK_NAME, EXPECTATION_CHECKS, TABLES_OF
from hca_assets.config import Settings
from hca_assets.lake.registry import spec
from hca_assets.models import get_embedder
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import (
    EmbeddingEndpoint,
    PseudonymKey,
    SegmentationEndpoint,
    SettingsResource,
)
from hca_assets.sources.claims import claim
from hca_assets.synthetic import generate
from hca_assets_tests.conftest import SMALL, TEST_KEY

PER_BATCH = [raw_dicom, deid_staged, deid_dicom, images, embeddings, labels, segmentations_asset(Settings()), embedding_drift]
WHOLE = [faiss_index, retrieval_eval, segmentation_eval, retrieval_adapter, feedback]


def _resources(settings: Settings) -> dict[str, object]:
    return {"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey(),
            "embedding_endpoint": EmbeddingEndpoint(), "segmentation_endpoint": SegmentationEndpoint()}


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str, dict[str, dg.AssetCheckEvaluation]]]:
    """Two small patients through every asset and every GX check: (settings, batch, GX evaluations by asset)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HCA_DEID_KEY", TEST_KEY)
        settings = Settings(data_dir=str(tmp_path_factory.mktemp("gx") / "data"), settle_seconds=0.0, workers=1,
                            seg_min_dice=0.0)  # 64² phantoms are below the default Dice floor
        generate(Path(settings.landing), Path(settings.truth_file).parent, dataclasses.replace(SMALL, patients=2, seed=11))
        batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
        assert batch is not None
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
            per_batch = dg.materialize([*PER_BATCH, *EXPECTATION_CHECKS], instance=instance, partition_key=batch.key,
                                       resources=_resources(settings), selection=PER_BATCH, raise_on_error=False)
            whole = dg.materialize([*WHOLE, *EXPECTATION_CHECKS], instance=instance, resources=_resources(settings),
                                   selection=WHOLE, raise_on_error=False)
        evaluations = [e for r in (per_batch, whole) for e in r.get_asset_check_evaluations()]
        assert per_batch.success and whole.success, [(e.asset_key, e.check_name, e.metadata.get("failed_expectations"))
                                                     for e in evaluations if not e.passed]
        yield settings, batch.key, {e.asset_key.path[-1]: e for e in evaluations if e.check_name == CHECK_NAME}


def test_suites_pass_on_a_real_batch_with_results_in_metadata(validated: tuple[Settings, str, dict]) -> None:
    _, _, gx = validated
    assert set(gx) == set(TABLES_OF)  # every asset's GX check ran in the real runs
    for asset, evaluation in gx.items():
        assert evaluation.passed, (asset, evaluation.metadata["failed_expectations"])
        results = evaluation.metadata["results"].value
        assert evaluation.metadata["failed"].value == 0 and evaluation.metadata["expectations"].value > 10
        assert "ExpectCompoundColumnsToBeUnique" in results or "ExpectColumnValuesToBeUnique" in results
    assert gx["embeddings"].metadata["rows"].value["embeddings"] > 0
    embeddings_md = gx["embeddings"].metadata["results"].value
    assert "ExpectColumnValuesToBeBetween(vector_dim) | ✅ | 0 of" in embeddings_md  # observed value per expectation
    assert gx["retrieval_eval"].metadata["rows"].value["evaluations"] > 0


def _set(column: str, value: object) -> Callable[[pa.Table], pa.Table]:
    def change(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index(column)
        values = t.column(column).to_pylist()
        values[0] = value
        return t.set_column(i, pa.field(column, t.schema.field(column).type), pa.array(values, t.schema.field(column).type))
    return change


# per table: a deliberate break of a value set or range, and the expectation that must catch it
BREAKS: dict[str, tuple[Callable[[pa.Table], pa.Table], str]] = {
    "quarantine": (_set("reason", "lost_somewhere"), "ExpectColumnValuesToBeInSet(reason)"),
    "deid_instances": (_set("modality", "XX"), "ExpectColumnValuesToBeInSet(modality)"),
    "deid_audit": (_set("removed", -1), "ExpectColumnValuesToBeBetween(removed)"),
    "images": (_set("window", "xray"), "ExpectColumnValuesToBeInSet(window)"),
    "volumes": (_set("shape", [64, 64]), "ExpectColumnValuesToBeBetween(shape_len)"),
    "embeddings": (lambda t: _set("vector", t.column("vector")[0].as_py()[:-1])(t), "ExpectColumnValuesToBeBetween(vector_dim)"),
    "series_embeddings": (_set("aggregation", "mode"), "ExpectColumnValuesToBeInSet(aggregation)"),
    "labels": (_set("sop_instance_uid", "not-a-uid"), "ExpectColumnValuesToMatchRegex(sop_instance_uid)"),
    "evaluations": (_set("value", 1.5), "ExpectColumnValuesToBeBetween(value) where metric != 'hd95_mm'"),
    "segmentations": (_set("volume_ml", -1.0), "ExpectColumnValuesToBeBetween(volume_ml)"),
}


def _rows(settings: Settings, name: str, batch: str) -> pa.Table:
    table = spec(name).read(settings, where=None if name == "evaluations" else {"batch": batch})
    if name == "evaluations":  # one run's rows (what the check validates)
        table = table.filter(pc.field("run_id") == table.column("run_id")[0])
    if name == "quarantine" and not table.num_rows:  # a clean batch quarantines nothing: one plausible row
        table = pa.Table.from_pylist([{"batch": batch, "stage": "images", "item": 0, "sha256": "ab" * 32, "reason": "unrenderable",
                                       "message": "cannot decode", "kept_as": "x", "quarantined_at": datetime.now(UTC)}],
                                     schema=spec(name).schema)
    return table


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_suite_fails_on_a_broken_table(validated: tuple[Settings, str, dict], name: str) -> None:
    settings, batch, _ = validated
    table = _rows(settings, name, batch)
    params = {"model_dim": get_embedder(settings).dim}
    assert table.num_rows and validate(name, table, params).success  # the real rows pass
    breaker, expected = BREAKS[name]
    broken = validate(name, breaker(table), params)
    assert [r.expectation for r in broken.failed] == [expected]
    first_key = list(spec(name).keys)
    duplicated = validate(name, pa.concat_tables([table, table.slice(0, 1)]), params)  # a key twice
    assert not duplicated.success and any("Unique" in r.expectation for r in duplicated.failed)
    non_null = next(f.name for f in spec(name).schema if not f.nullable and f.name not in first_key)
    nulled = table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))
    nulled = _set(non_null, None)(nulled)
    assert f"ExpectColumnValuesToNotBeNull({non_null})" in [r.expectation for r in validate(name, nulled, params).failed]
    renamed = table.rename_columns([*table.column_names[:-1], "surprise"])
    assert "ExpectTableColumnsToMatchOrderedList" in validate(name, renamed, params).failed[0].expectation
    assert len(suite(name)) > len(spec(name).schema)  # schema, nulls, keys and the table's own expectations


def test_blocking_gx_check_stops_the_downstream_asset(validated: tuple[Settings, str, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """A rendering that writes an unknown CT window passes the older image checks, but its GX suite fails, and
    the embeddings of that batch are not computed in the run."""
    settings, batch, _ = validated
    from hca_assets.stages import images as stages_images
    from hca_assets.stages.images import render_batch

    def broken_render(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        out = render_batch(*args, **kwargs)  # type: ignore[arg-type]
        ct = out.images.column("modality").to_pylist().index("CT")
        windows = out.images.column("window").to_pylist()
        windows[ct] = "xray"
        return dataclasses.replace(out, images=out.images.set_column(
            out.images.schema.get_field_index("window"), "window", pa.array(windows, pa.string())))

    monkeypatch.setattr(stages_images, "render_batch", broken_render)
    before = spec("embeddings").read(settings, where={"batch": batch}).num_rows
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch])
        result = dg.materialize([images, embeddings, *EXPECTATION_CHECKS], instance=instance, partition_key=batch,
                                resources=_resources(settings), selection=[images, embeddings], raise_on_error=False)
        assert not result.success
        checks = {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
        assert checks[("images", CHECK_NAME)] is False
        assert all(passed for (asset, name), passed in checks.items() if name != CHECK_NAME)  # the older checks pass
        materialized = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}
        assert materialized == {"images"}  # embeddings never ran
        assert instance.get_latest_materialization_event(dg.AssetKey("embeddings")) is None
    assert spec("embeddings").read(settings, where={"batch": batch}).num_rows == before
