"""Zero-shot classification: the nearest class prompt in the backend's text space, probabilities at its scaling
factor; the asset through Dagster against the MedImageInsight stub, and skipped for the local backend."""

from __future__ import annotations

import dataclasses

import dagster as dg
import numpy as np
import pyarrow as pa

from hca_assets.assets.search import zero_shot_eval
from hca_assets.config import Settings
from hca_assets.evaluation.zero_shot import class_prompt, zero_shot_rows
from hca_assets.lake import read_table
from hca_assets.lake import registry as tables
from hca_assets.lake.schemas import EMBEDDINGS, LABELS
from hca_assets.models import embedder_code_version
from hca_assets.orchestration.resources import EmbeddingEndpoint, SettingsResource
from hca_assets_tests.stubs import Mi2Stub, vector_for

CLASSES = ["cr_chest", "ct_chest", "mr_head"]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_nearest_prompt_wins_and_probabilities_follow_the_scale() -> None:
    rng = np.random.default_rng(0)
    texts = _unit(rng.normal(size=(3, 16)))
    truth = [CLASSES[i % 3] for i in range(30)]
    near = _unit(texts[[i % 3 for i in range(30)]] + 0.05 * rng.normal(size=(30, 16)))
    rows = {(r["label"], r["metric"]): r["value"] for r in zero_shot_rows(near, truth, texts, CLASSES, 4.5, "v", "r").to_pylist()}
    assert rows[("overall", "accuracy")] == 1.0 and rows[("overall", "true_class_probability")] > 0.9
    cold = {(r["label"], r["metric"]): r["value"] for r in zero_shot_rows(near, truth, texts, CLASSES, -5.0, "v", "r").to_pylist()}
    assert cold[("overall", "accuracy")] == 1.0 and abs(cold[("overall", "true_class_probability")] - 1 / 3) < 0.01
    wrong = ["ct_chest" if t == "cr_chest" else t for t in truth]  # a third of the truth relabelled
    off = {(r["label"], r["metric"]): r["value"] for r in zero_shot_rows(near, wrong, texts, CLASSES, 4.5, "v", "r").to_pylist()}
    assert off[("ct_chest", "accuracy")] == 0.5 and abs(off[("overall", "accuracy")] - 2 / 3) < 1e-9
    assert class_prompt("ct_chest") == "computed tomography chest" and class_prompt("dx_chest") == "x-ray chest"


def _lake(settings: Settings, version: str) -> None:
    """Three images per class whose vectors are the stub's text vectors of their class prompt (slightly moved)."""
    rng = np.random.default_rng(1)
    emb, lab = [], []
    for i in range(9):
        c = CLASSES[i % 3]
        v = np.asarray(vector_for(class_prompt(c).encode())) + 0.01 * rng.normal(size=1024)
        ids = {"batch": "b1", "sop_instance_uid": f"2.25.{i}", "series_instance_uid": f"2.25.1{i}",
               "patient_pseudonym": f"P{i}"}
        emb.append({**ids, "frame": 0, "study_instance_uid": f"2.25.2{i}", "modality": c[:2].upper(),
                    "vector": _unit(v).astype(np.float32).tolist(), "code_version": version})
        lab.append({**ids, "class_label": c, "body_region": c[3:], "lesion_present": False, "study_has_lesion": False,
                    "source": "synthetic"})
    tables.EMBEDDINGS.write(settings, pa.Table.from_pylist(emb, schema=EMBEDDINGS), match={"batch": "b1", "code_version": version})
    tables.LABELS.write(settings, pa.Table.from_pylist(lab, schema=LABELS), match={"batch": "b1"})


def test_zero_shot_asset_with_medimageinsight_and_skipped_for_local(settings: Settings) -> None:
    azure = dataclasses.replace(settings, embedder="azure")
    version = embedder_code_version(dataclasses.replace(Settings.from_env(), embedder="azure"))
    _lake(azure, version)
    with Mi2Stub() as stub, dg.instance_for_test() as instance:
        result = dg.materialize([zero_shot_eval], instance=instance, resources={
            "storage": SettingsResource.from_settings(azure), "embedding_endpoint": EmbeddingEndpoint(url=stub.url, key=stub.key)})
        assert result.success and sorted(stub.texts[:3]) == sorted(class_prompt(c) for c in CLASSES)
    rows = [r for r in read_table(settings.table_uri("evaluations")).to_pylist() if r["target"] == "zero_shot"]
    overall = {r["metric"]: r["value"] for r in rows if r["label"] == "overall"}
    assert overall["accuracy"] == 1.0 and overall["true_class_probability"] > 0.5  # scaling factor 4.51 from the stub
    assert {r["label"] for r in rows} == {"overall", *CLASSES} and all(r["code_version"] == version for r in rows)

    with dg.instance_for_test() as instance:
        local = dg.materialize([zero_shot_eval], instance=instance, resources={
            "storage": SettingsResource.from_settings(settings), "embedding_endpoint": EmbeddingEndpoint()})
        logs = " ".join(str(e.user_message) for e in instance.all_logs(local.run_id))
        assert local.success and "the 'local' backend embeds no text" in logs
        assert not instance.get_latest_materialization_event(dg.AssetKey("zero_shot_eval"))
