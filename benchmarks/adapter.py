"""Benchmark part ``adapter``: base vs adapted retrieval (P@1, P@5) on held-out patients of a synthetic corpus,
class and lesion targets, with the local weight-free embedder; and how long the adapter takes to train."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom

from hca_assets.dicom.pixels import display_frames, letterbox
from hca_assets.evaluation.retrieval import RetrievalMetrics
from hca_assets.models import LocalEmbedder
from hca_assets.search.adapter import (
    DEFAULT_CONFIG,
    AdapterConfig,
    Split,
    heldout_metrics,
    lesion_labels,
    patient_split,
    train_adapter,
)
from hca_assets.synthetic import GeneratorOptions, generate

__all__ = ["bench_adapter", "corpus", "patient_effect_corpus"]

OPTIONS = GeneratorOptions(patients=12, seed=3, ct_slices=24, ct_size=128, cxr_size=256, mr_slices=12, mr_size=128)


def corpus(work: Path, options: GeneratorOptions = OPTIONS) -> dict[str, list]:  # type: ignore[type-arg]
    """Embeddings of a generated corpus with its truth: vectors, classes, lesion flags, patients, series."""
    generate(work / "dicom", work / "truth", options)
    rows = [json.loads(line) for line in (work / "truth" / "instances.jsonl").read_text().splitlines()]
    embedder = LocalEmbedder()
    images = [letterbox(next(display_frames(pydicom.dcmread(work / "dicom" / r["path"]))[1])) for r in rows]
    return {"vectors": list(embedder.embed(images)), "classes": [r["class_label"] for r in rows],
            "lesion": [bool(r["lesion_present"]) for r in rows], "patients": [f"P{r['patient_index']}" for r in rows],
            "series": [r["series_instance_uid"] for r in rows]}


def patient_effect_corpus(patients: int = 10, classes: int = 4, per_class: int = 6, dim: int = 48, seed: int = 0) -> dict[str, list]:  # type: ignore[type-arg]
    """Vectors where a per-patient offset in a few shared directions (as scanner or site effects) outweighs a
    weak class signal: kNN on them is poor across patients, and an adapter can learn to ignore those directions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim))
    nuisance = np.linalg.qr(rng.normal(size=(dim, 4)))[0]
    rows: dict[str, list] = {"vectors": [], "classes": [], "patients": [], "series": [], "lesion": []}  # type: ignore[type-arg]
    for p in range(patients):
        offset = nuisance @ rng.normal(0, 1.5 * np.sqrt(dim), 4)
        for c in range(classes):
            for i in range(per_class):
                v = 0.6 * centres[c] + offset + rng.normal(0, 0.5, dim)
                rows["vectors"].append(v / np.linalg.norm(v))
                rows["classes"].append(f"class{c}")
                rows["patients"].append(f"PSN{p:03d}")
                rows["series"].append(f"2.25.{p}.{c}")
                rows["lesion"].append(bool(i % 2))
    return rows


def _table(metrics: dict[tuple[str, str], RetrievalMetrics]) -> list[str]:
    lines = ["| target | vectors | P@1 | P@5 | mAP | queries |", "|---|---|---:|---:|---:|---:|"]
    for (name, target), r in sorted(metrics.items(), key=lambda kv: (kv[0][1], kv[0][0] != "base")):
        lines.append(f"| {target} | {name} | {r.overall['P@1']:.3f} | {r.overall['P@5']:.3f} | {r.overall['mAP']:.3f} | "
                     f"{sum(r.n.values())} |")
    return lines


def _run(c: dict[str, list], config: AdapterConfig) -> tuple[dict[tuple[str, str], RetrievalMetrics], float, list[float], Split]:  # type: ignore[type-arg]
    vectors = np.stack(c["vectors"])
    split = patient_split(c["patients"], config.heldout_fraction, config.seed)
    train = [i for i, p in enumerate(c["patients"]) if p in split.train]
    start = time.perf_counter()
    model, history = train_adapter(vectors[train], [c["classes"][i] for i in train], config)
    seconds = time.perf_counter() - start
    m = heldout_metrics(vectors, model.apply(vectors), c["classes"], lesion_labels(c["classes"], c["lesion"]),
                        c["patients"], c["series"], split)
    return m, seconds, history, split


def bench_adapter(work: Path, config: AdapterConfig = DEFAULT_CONFIG) -> list[str]:
    """Train on the train patients, evaluate base and adapted on the held-out ones: the synthetic corpus, then
    vectors with a known patient effect (what an adapter is for)."""
    c = corpus(work)
    m, seconds, history, split = _run(c, config)
    dim = len(c["vectors"][0])
    controlled = patient_effect_corpus(dim=dim, seed=1)
    m2, seconds2, _, split2 = _run(controlled, config)
    m2 = {k: v for k, v in m2.items() if k[1] == "class_label"}  # its lesion flags are arbitrary

    def v(name: str, target: str, metric: str) -> float:
        return m[(name, target)].overall[metric]

    def d(target: str, metric: str) -> float:
        return v("adapted", target, metric) - v("base", target, metric)

    return [
        "## Retrieval adapter", "",
        f"Synthetic corpus of {OPTIONS.patients} patients ({len(c['vectors'])} images, local {dim}-d embeddings), split "
        f"by patient: {len(split.train)} train, {len(split.heldout)} held out "
        f"({sum(p in split.heldout for p in c['patients'])} images). MLP {dim}→{config.hidden}→{config.out_dim} "
        f"(Linear → GELU → LayerNorm → Linear, numpy), supervised contrastive loss on class labels, {config.epochs} "
        f"epochs in **{seconds:.1f} s** on one CPU (loss {history[0]:.2f} → {history[-1]:.2f}). Leave-one-out kNN among "
        "the held-out patients only (no same-patient or same-series neighbour):", "",
        *_table(m), "",
        f"Base class P@1 is already {v('base', 'class_label', 'P@1'):.3f}: the synthetic classes are too easy for P@1 "
        f"to show a lift. Adapted − base: class P@1 {d('class_label', 'P@1'):+.3f}, P@5 {d('class_label', 'P@5'):+.3f}, "
        f"mAP {d('class_label', 'mAP'):+.3f}; lesion P@1 {d('lesion', 'P@1'):+.3f}, P@5 {d('lesion', 'P@5'):+.3f}, "
        f"mAP {d('lesion', 'mAP'):+.3f} (the loss uses class labels only). The ranking below the first hits tightens "
        "(mAP), the first hits were already right.",
        f"On {len(controlled['vectors'])} {dim}-d vectors where a per-patient offset in four directions outweighs the "
        f"class signal ({len(split2.train)} train / {len(split2.heldout)} held-out patients, trained in "
        f"{seconds2:.1f} s), the same adapter learns to ignore those directions:", "",
        *_table(m2), "",
    ]
