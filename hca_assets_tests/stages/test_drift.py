"""embedding_drift: MMD drift and k-NN OOD scores against a reference window, in the core and through Dagster.

One small synthetic corpus (4 patients) goes through ingest → de-identification → images → embeddings once; its CT
slices per patient then make the reference batches, and the 4th patient's CT (fresh, same distribution), its MR
(another modality) and its CT with salt-and-pepper pixels (re-embedded) are the batches under test.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.embeddings import embedding_drift, embeddings
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.checks.embeddings import DRIFT_FLAG, OOD_MAJORITY, drift_checks
from hca_assets.checks.expectation_suites import validate
from hca_assets.config import Settings
from hca_assets.evaluation.drift import (
    OodReference,
    mmd_test,
    rbf_bandwidth,
    reference_threshold,
    shift_summary,
)
from hca_assets.lake import registry as tables
from hca_assets.models.base import vectors_of
from hca_assets.models.local import LocalEmbedder
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import EmbeddingEndpoint, PseudonymKey, SettingsResource
from hca_assets.sources.claims import claim
from hca_assets.stages.drift import drift_batch
from hca_assets.synthetic import generate
from hca_assets_tests.conftest import SMALL

REFERENCE = ["a1", "a2", "a3"]  # sort before the real batch key (b…) and the batches under test (x…)


def _corpus(root: Path) -> Settings:
    """A lake with one real batch of 4 synthetic patients embedded by the local backend."""
    settings = Settings(data_dir=str(root / "data"), settle_seconds=0.0, workers=1)
    generate(Path(settings.landing), Path(settings.truth_file).parent, dataclasses.replace(SMALL, patients=4, seed=3))
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        result = dg.materialize([raw_dicom, deid_staged, deid_dicom, images, embeddings], instance=instance,
                                partition_key=batch.key, resources={
                                    "storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey(),
                                    "embedding_endpoint": EmbeddingEndpoint()})
    assert result.success
    return settings


def _split(settings: Settings) -> tuple[list[pa.Table], pa.Table, pa.Table]:
    """(CT of patients 1-3, one table each; CT of patient 4; MR of patient 4) from the corpus' embeddings."""
    rows = tables.EMBEDDINGS.read(settings)
    patients = sorted(set(rows.column("patient_pseudonym").to_pylist()))
    assert len(patients) == 4

    def of(modality: str, patient: str) -> pa.Table:
        return rows.filter((pc.field("modality") == modality) & (pc.field("patient_pseudonym") == patient))

    return [of("CT", p) for p in patients[:3]], of("CT", patients[3]), of("MR", patients[3])


def _salt_and_pepper(settings: Settings, table: pa.Table, fraction: float = 0.1) -> np.ndarray:
    """The local embeddings of ``table``'s images with ``fraction`` of their pixels set to black or white."""
    paths = {(r["sop_instance_uid"], r["frame"]): r["path"] for r in tables.IMAGES.read(settings).to_pylist()}
    rng = np.random.default_rng(0)
    corrupted = []
    for r in table.select(["sop_instance_uid", "frame"]).to_pylist():
        pixels = np.asarray(Image.open(Path(settings.images) / paths[(r["sop_instance_uid"], r["frame"])])).copy()
        hit = rng.random(pixels.shape) < fraction
        pixels[hit] = rng.choice(np.array([0, 255], dtype=pixels.dtype), size=int(hit.sum()))
        corrupted.append(pixels)
    return LocalEmbedder().embed(corrupted)


def test_other_modality_and_corrupted_pixels_are_flagged_a_fresh_batch_is_not(tmp_path: Path) -> None:
    """One test (the corpus is built once, on one xdist worker): the core functions, then the asset in Dagster."""
    corpus = _corpus(tmp_path / "corpus")
    _core(corpus)
    _asset_through_dagster(corpus, tmp_path)


def _core(corpus: Settings) -> None:
    reference, fresh, mr = _split(corpus)
    x = np.concatenate([vectors_of(t) for t in reference])
    bandwidth = rbf_bandwidth(x)
    threshold = reference_threshold([vectors_of(t) for t in reference], bandwidth=bandwidth, floor=0.02)
    ood = OodReference.fit(x, [p for t in reference for p in t.column("patient_pseudonym").to_pylist()], k=5, quantile=0.99)
    outcomes = {}
    for name, y in (("fresh", vectors_of(fresh)), ("mr", vectors_of(mr)), ("corrupted", _salt_and_pepper(corpus, fresh))):
        test = mmd_test(x, y, bandwidth=bandwidth, permutations=200, seed=0)
        outcomes[name] = (test.statistic, test.p_value, float((ood.score(y)[1] > 1).mean()), shift_summary(x, y))
    statistic, p_value, ood_fraction, shift = outcomes["fresh"]
    assert statistic < threshold and p_value > 0.05 and ood_fraction <= 0.1 and shift["shifted_dims"] == 0
    for name in ("mr", "corrupted"):
        statistic, p_value, ood_fraction, shift = outcomes[name]
        assert statistic > 5 * threshold and p_value < 0.01, name
        assert ood_fraction > 0.5 and shift["shifted_dims"] > 10, name
    again = mmd_test(x, vectors_of(mr), bandwidth=bandwidth, permutations=200, seed=0)  # fixed seed: reproducible
    assert (again.statistic, again.p_value) == outcomes["mr"][:2]


def test_mmd_and_ood_on_gaussians_both_directions() -> None:
    rng = np.random.default_rng(42)
    reference, same = rng.normal(size=(300, 16)), rng.normal(size=(100, 16))
    shifted = rng.normal(size=(100, 16)) + np.r_[1.5, np.zeros(15)]  # one dimension moved by 1.5 σ
    bandwidth = rbf_bandwidth(reference)
    assert mmd_test(reference, same, bandwidth=bandwidth, seed=0).p_value > 0.05
    moved = mmd_test(reference, shifted, bandwidth=bandwidth, seed=0)
    assert moved.p_value < 0.01 and moved.statistic > 0
    assert shift_summary(reference, shifted)["shifted_dims"] == 0 < shift_summary(reference, shifted, z=1.0)["shifted_dims"]
    ood = OodReference.fit(reference, [str(i // 10) for i in range(300)], k=5, quantile=0.99)
    assert (ood.score(same)[1] > 1).mean() <= 0.05  # calibrated: about 1 % of in-distribution points exceed
    far = ood.score(rng.normal(size=(50, 16)) + 6.0)
    assert (far[1] > 1).all() and (far[2] == 1.0).all()  # beyond every calibration distance


def _rekey(settings: Settings, table: pa.Table, batch: str, vectors: np.ndarray | None = None) -> None:
    rows = table.set_column(table.schema.get_field_index("batch"), "batch", pa.array([batch] * table.num_rows))
    if vectors is not None:
        rows = rows.set_column(rows.schema.get_field_index("vector"), "vector",
                               pa.array(vectors.tolist(), pa.list_(pa.float32())))
    version = rows.column("code_version")[0].as_py()
    tables.EMBEDDINGS.write(settings, rows, match={"batch": batch, "code_version": version})


def _asset_through_dagster(corpus: Settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(corpus, data_dir=str(tmp_path / "data"))  # an empty lake of its own
    reference, fresh, mr = _split(corpus)
    for key, table in zip(REFERENCE, reference, strict=True):
        _rekey(settings, table, key)
    _rekey(settings, fresh, "x-fresh")
    _rekey(settings, mr, "x-mr")
    _rekey(settings, fresh, "x-corrupted", _salt_and_pepper(corpus, fresh))
    resources = {"storage": SettingsResource.from_settings(settings)}
    results = {}
    with dg.instance_for_test() as instance:
        keys = [*REFERENCE, "x-fresh", "x-mr", "x-corrupted"]
        instance.add_dynamic_partitions(INGEST_BATCHES, keys)
        for key in ("a1", "x-fresh", "x-mr", "x-corrupted"):  # a reference batch and the three under test
            results[key] = dg.materialize([embedding_drift], instance=instance, partition_key=key, resources=resources,
                                          raise_on_error=False)
    drift = {r["batch"]: r for r in tables.DRIFT.read(settings).to_pylist()}
    assert drift["a1"]["status"] == "compared" and drift["a1"]["reference_batches"] == ["a2", "a3"]
    assert drift["x-fresh"]["reference_batches"] == REFERENCE  # the earliest three, never a later batch
    for key in ("x-mr", "x-corrupted"):
        assert drift[key]["drifted"] and drift[key]["ood_fraction"] > 0.5, key
        checks = {e.check_name: e for e in results[key].get_asset_check_evaluations()}
        assert not checks[DRIFT_FLAG].passed and checks[DRIFT_FLAG].severity == dg.AssetCheckSeverity.WARN
        assert not checks[OOD_MAJORITY].passed and checks[OOD_MAJORITY].severity == dg.AssetCheckSeverity.ERROR
        assert not results[key].success  # the blocking ERROR check fails the run
    for key in ("a1", "x-fresh"):
        assert not drift[key]["drifted"] and drift[key]["ood_fraction"] <= 0.1, key
        assert results[key].success and all(e.passed for e in results[key].get_asset_check_evaluations()), key
    scores = tables.OOD_SCORES.read(settings, where={"batch": "x-mr"}).to_pylist()
    assert len(scores) == mr.num_rows and all(s["ood"] == (s["score"] > 1) for s in scores)
    metadata = results["x-corrupted"].get_asset_materialization_events()[0].materialization.metadata
    assert metadata["drifted"].value is True and metadata["reference_batches"].value == REFERENCE
    assert "data:image/png;base64," in metadata["drift_per_batch"].value  # every batch so far vs its threshold
    for table in (tables.DRIFT, tables.OOD_SCORES):  # the Great Expectations suites hold on the slice a run owns
        result = validate(table, table.read(settings, where={"batch": "x-corrupted"}))
        assert result.success, result.failed
    for name, table, ood in (("x-one-ct", fresh, False), ("x-one-mr", mr, True)):  # a single-image batch: OOD only
        _rekey(settings, table.slice(0, 1), name)
        one = drift_batch(settings, name, fresh.column("code_version")[0].as_py())
        row = one.drift.to_pylist()[0]
        assert row["status"] == "ood_only" and row["mmd2"] is None and one.ood.column("ood").to_pylist() == [ood]
        checks = {c.check_name: c.passed for c in drift_checks(settings, row)}
        assert checks == {DRIFT_FLAG: True, OOD_MAJORITY: not ood}, name
