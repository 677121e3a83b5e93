"""Retrieval adapter and reviewer feedback: split by patient, training lifts held-out retrieval where the base
vectors are dominated by a patient effect, the adapter file is checked, verdicts round-trip (CLI and drop folder),
unknown ids are refused, corrected labels are what the adapter trains on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from benchmarks.adapter import patient_effect_corpus as corpus
from hca_assets.assets.evaluation import feedback
from hca_assets.assets.search import retrieval_adapter
from hca_assets.checks.expectations import EXPECTATION_CHECKS
from hca_assets.cli import main
from hca_assets.config import Settings
from hca_assets.evaluation.feedback import FeedbackError, feedback_row, training_labels
from hca_assets.lake import registry as tables
from hca_assets.models import embedder_code_version
from hca_assets.orchestration.resources import EmbeddingEndpoint, SettingsResource
from hca_assets.search.adapter import (
    Adapter,
    AdapterConfig,
    heldout_metrics,
    load_adapter,
    patient_split,
    save_adapter,
    supcon_loss,
    train_adapter,
)
from hca_assets.search.index import IndexFiles, load_index

FAST = AdapterConfig(hidden=64, out_dim=32, epochs=25)


def test_split_is_by_patient_never_by_image() -> None:
    c = corpus()
    split = patient_split(c["patients"], 0.3, seed=0)
    assert split.train and split.heldout and not split.train & split.heldout
    assert split.train | split.heldout == set(c["patients"])
    for p in set(c["patients"]):  # every image of a patient lands on the same side
        sides = {c["patients"][i] in split.heldout for i in range(len(c["patients"])) if c["patients"][i] == p}
        assert len(sides) == 1
    assert patient_split(["only"], 0.3).heldout == frozenset()  # one patient: nothing to hold out


def test_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    model = Adapter.init(6, AdapterConfig(hidden=5, out_dim=4), rng)
    model.gamma, model.beta = rng.normal(size=5), rng.normal(size=5)
    x, y = rng.normal(size=(8, 6)), np.array(list("aabbbcca"))
    u, cache = model._forward(x)
    grads = model._backward(u, supcon_loss(u, y, 0.5)[1], cache)
    for name in ("w1", "gamma", "w2"):
        param = getattr(model, name)
        i = (1, 2)
        old = param[i] if param.ndim == 2 else param[i[0]]
        idx = i if param.ndim == 2 else i[0]
        param[idx] = old + 1e-6
        plus = supcon_loss(model._forward(x)[0], y, 0.5)[0]
        param[idx] = old - 1e-6
        minus = supcon_loss(model._forward(x)[0], y, 0.5)[0]
        param[idx] = old
        assert grads[name][idx] == pytest.approx((plus - minus) / 2e-6, rel=1e-4, abs=1e-8)


def test_adapter_lifts_heldout_retrieval_and_its_file_is_checked(tmp_path: Path) -> None:
    c = corpus()
    vectors = np.stack(c["vectors"])
    split = patient_split(c["patients"], 0.3, seed=0)
    train = [i for i, p in enumerate(c["patients"]) if p in split.train]
    model, losses = train_adapter(vectors[train], [c["classes"][i] for i in train], FAST)
    assert losses[-1] < losses[0]
    adapted = model.apply(vectors)
    assert np.allclose(np.linalg.norm(adapted, axis=1), 1.0, atol=1e-5)
    m = heldout_metrics(vectors, adapted, c["classes"], [None] * len(vectors), c["patients"], c["series"], split)
    base, lifted = m[("base", "class_label")].overall, m[("adapted", "class_label")].overall
    assert lifted["P@1"] > base["P@1"] and lifted["P@5"] > base["P@5"]  # held-out patients only: no leakage
    assert sum(m[("base", "class_label")].n.values()) == sum(p in split.heldout for p in c["patients"])

    path, meta = save_adapter(model, tmp_path, {"base_code_version": "x"})
    again, meta2 = load_adapter(path)
    assert meta2["sha256"] == meta["sha256"] and path.name == f"adapter-{str(meta['sha256'])[:8]}.npz"
    assert np.allclose(again.apply(vectors), adapted, atol=1e-5)
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(ValueError, match="sha256"):
        load_adapter(path)


def test_corrected_labels_change_training_labels() -> None:
    labels = [{"sop_instance_uid": "1.1", "class_label": "ct_chest"}, {"sop_instance_uid": "1.2", "class_label": "ct_chest"}]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fb = [feedback_row(kind="search_hit", sop_instance_uid="1.1", verdict="corrected", corrected_label="ct_abdomen",
                       reviewer="dr a", source="cli", reviewed_at=t0),
          feedback_row(kind="search_hit", sop_instance_uid="1.1", verdict="corrected", corrected_label="mr_brain",
                       reviewer="dr b", source="cli", reviewed_at=t0 + timedelta(hours=1)),
          feedback_row(kind="search_hit", sop_instance_uid="1.2", verdict="wrong", reviewer="dr a", source="cli")]
    assert training_labels(labels, []) == {"1.1": "ct_chest", "1.2": "ct_chest"}
    assert training_labels(labels, fb) == {"1.1": "mr_brain", "1.2": "ct_chest"}  # the latest correction wins
    with pytest.raises(FeedbackError, match="corrected label"):
        feedback_row(kind="search_hit", sop_instance_uid="1.1", verdict="wrong", corrected_label="x", reviewer="r",
                     source="cli")


def _lake(settings: Settings) -> dict[str, list]:  # type: ignore[type-arg]
    """A lake holding the clustered corpus as the current embedder's image vectors, with labels and instances."""
    c = corpus(dim=368, seed=1)
    version = embedder_code_version(settings)
    now = datetime.now(UTC)
    sops = [f"2.25.{i + 1000}" for i in range(len(c["classes"]))]
    emb, labels, inst = [], [], []
    for i, sop in enumerate(sops):
        common = {"batch": "b1", "sop_instance_uid": sop, "series_instance_uid": c["series"][i],
                  "patient_pseudonym": c["patients"][i]}
        emb.append({**common, "frame": 0, "study_instance_uid": "2.25.9", "modality": "CT",
                    "vector": c["vectors"][i].astype(np.float32).tolist(), "code_version": version})
        labels.append({**common, "class_label": c["classes"][i], "body_region": "chest", "lesion_present": c["lesion"][i],
                       "lesion_type": None, "study_has_lesion": True, "source": "synthetic_truth"})
        inst.append({**common, "study_instance_uid": "2.25.9", "modality": "CT", "sop_class_uid": "1.2",
                     "transfer_syntax": "1.2.840.10008.1.2.1", "path": f"b1/{sop}.dcm", "sha256": "0" * 64,
                     "burned_in": "none", "published_at": now})
    for spec, rows in ((tables.EMBEDDINGS, emb), (tables.LABELS, labels), (tables.DEID_INSTANCES, inst)):
        spec.write(settings, pa.Table.from_pylist(rows, schema=spec.schema), match={"batch": "b1"})
    return {**c, "sops": sops}


def test_feedback_round_trip_refusal_and_adapter_asset(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    c = _lake(settings)
    monkeypatch.setenv("HCA_DATA_DIR", settings.data_dir)
    runner = CliRunner()
    refused = runner.invoke(main, ["feedback", "--hit", "2.25.424242", "--verdict", "correct", "--reviewer", "dr x"])
    assert refused.exit_code == 2 and "unknown sop_instance_uid" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "Traceback" not in refused.output
    ok = runner.invoke(main, ["feedback", "--hit", c["sops"][0], "--query", c["sops"][5], "--verdict", "corrected",
                              "--label", "class3", "--reviewer", "dr x"])
    assert ok.exit_code == 0, ok.output
    rows = tables.FEEDBACK.read(settings).to_pylist()
    assert [(r["sop_instance_uid"], r["verdict"], r["corrected_label"], r["reviewer"], r["source"]) for r in rows] == [
        (c["sops"][0], "corrected", "class3", "dr x", "cli")]
    assert rows[0]["code_version"] == embedder_code_version(settings) and rows[0]["reviewed_at"] is not None

    drop = Path(settings.feedback)
    drop.mkdir(parents=True)
    (drop / "good.csv").write_text("kind,sop_instance_uid,verdict,corrected_label,reviewer\n"
                                   f"search_hit,{c['sops'][1]},correct,,dr y\nsearch_hit,{c['sops'][2]},wrong,,dr y\n")
    (drop / "bad.csv").write_text(f"kind,sop_instance_uid,verdict,reviewer\nsearch_hit,{c['sops'][3]},correct,dr y\n"
                                  "search_hit,2.25.777,correct,dr y\n")
    checks = [chk for chk in EXPECTATION_CHECKS if {k.asset_key.to_user_string() for k in chk.check_keys} &
              {"feedback", "retrieval_adapter"}]
    with dg.instance_for_test() as instance:
        result = dg.materialize([feedback, retrieval_adapter, *checks], instance=instance,
                                resources={"storage": SettingsResource.from_settings(settings),
                                           "embedding_endpoint": EmbeddingEndpoint()})
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert meta["feedback"]["files_taken"].value == 1 and meta["feedback"]["files_refused"].value == 1
    assert len(tables.FEEDBACK.read(settings).to_pylist()) == 3  # bad.csv refused whole
    assert meta["retrieval_adapter"]["corrected_labels"].value == (1 if c["patients"][0] in _train(c) else 0)

    evaluations = tables.EVALUATIONS.read(settings).to_pylist()
    reviewed = [r for r in evaluations if r["target"] == "reviewed"]
    assert [(r["queries"], r["value"]) for r in reviewed] == [(3, pytest.approx(1 / 3))]
    adapted_version = str(meta["retrieval_adapter"]["code_version"].value)
    base = embedder_code_version(settings)
    p1 = {r["code_version"]: r["value"] for r in evaluations
          if r["target"] == "class_label_heldout" and r["metric"] == "P@1" and r["label"] == "overall"}
    assert set(p1) == {base, adapted_version} and adapted_version.startswith(base + "+adapter-")
    assert p1[adapted_version] >= p1[base]  # the lake version of the held-out comparison does not get worse
    adapter_file = Path(settings.indexes) / str(meta["retrieval_adapter"]["adapter_file"].value)
    sidecar = json.loads(adapter_file.with_suffix(".json").read_text())
    assert adapted_version.endswith(sidecar["sha256"][:8]) and sidecar["base_code_version"] == base
    index, _, manifest = load_index(IndexFiles.for_version(Path(settings.indexes), adapted_version, "image"))
    assert index.ntotal == len(c["sops"]) and manifest["code_version"] == adapted_version and index.d == 128


def test_each_bad_drop_file_is_refused_alone_without_echoing_it(settings: Settings) -> None:
    """The issue's hostile drop folder: not UTF-8, random bytes, a 200,000-character cell, a formula, an id that
    is not published, a file named after a patient, a link, a sub-folder, a FIFO — each refused alone with a
    reason that holds no value or name; the good files (one with a BOM) are taken; sources are content digests;
    ``hca sql --format csv`` never prints a live formula."""
    import os

    from hca_assets.lake.render import render
    from hca_assets.stages.feedback import ingest_feedback

    c = _lake(settings)
    drop = Path(settings.feedback)
    (drop / "sub").mkdir(parents=True)
    head = "kind,sop_instance_uid,verdict,reviewer\n"
    good = f"{head}search_hit,{c['sops'][1]},correct,dr y\n"
    (drop / "DOE^JOHN 19700321.csv").write_text(good)  # a patient's name as file name
    (drop / "bom.csv").write_bytes(b"\xef\xbb\xbf" + f"{head}search_hit,{c['sops'][2]},wrong,dr z\n".encode())
    (drop / "latin1.csv").write_bytes(f"{head}search_hit,{c['sops'][3]},correct,Dr Müller\n".encode("latin-1"))
    (drop / "random.csv").write_bytes(np.random.default_rng(0).bytes(4096))
    (drop / "huge.csv").write_text(f"{head}search_hit,{c['sops'][4]},correct,{'x' * 200_000}\n")
    (drop / "formula.csv").write_text(f"{head}search_hit,{c['sops'][5]},correct,=cmd|' /C calc'!A0\n")
    (drop / "unknown.csv").write_text(f"{head}search_hit,1.2.840.113619.2.55.3.SECRET,correct,dr y\n")
    (drop / "sub" / "nested.csv").write_text(good)
    (drop / "link.csv").symlink_to(drop / "bom.csv")
    os.mkfifo(drop / "fifo.csv")
    out = ingest_feedback(settings, "run-1")

    assert sorted(out.taken.values()) == [1, 1]
    reasons = sorted(out.refused.values())
    assert len(reasons) == 8, reasons
    assert sum("not UTF-8" in r for r in reasons) == 2  # latin-1 and random bytes
    assert any("over 1024 characters" in r or "not well-formed" in r for r in reasons)
    assert any("spreadsheet formula" in r for r in reasons)
    assert any("unknown sop_instance_uid" in r for r in reasons)
    assert any("symbolic link" in r for r in reasons) and any("sub-folder" in r for r in reasons)
    assert any("not a regular file" in r for r in reasons)
    said = " ".join([*out.refused, *out.refused.values(), *out.taken])
    assert "DOE" not in said and "SECRET" not in said and "calc" not in said and "Müller" not in said
    rows = tables.FEEDBACK.read(settings).to_pylist()
    assert sorted(r["reviewer"] for r in rows) == ["dr y", "dr z"]
    assert all(r["source"].startswith("csv:") and "DOE" not in r["source"] for r in rows)
    assert ingest_feedback(settings, "run-2").taken == out.taken  # taken again: same rows, not twice
    assert len(tables.FEEDBACK.read(settings).to_pylist()) == 2

    printed = render(["reviewer", "n"], [["=cmd|' /C calc'!A0", -1], ["@SUM(A1)", 2], ["dr y", 3]], "csv")
    assert printed.splitlines()[1:] == ["'=cmd|' /C calc'!A0,-1", "'@SUM(A1),2", "dr y,3"]


def _train(c: dict[str, list]) -> frozenset[str]:  # type: ignore[type-arg]
    return patient_split(c["patients"], AdapterConfig().heldout_fraction, AdapterConfig().seed).train
