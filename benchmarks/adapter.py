"""Benchmark part ``adapter``: base vs adapted retrieval (P@1, P@5) on held-out patients of a synthetic corpus,
class and lesion targets, with the local weight-free embedder; and how long the adapter takes to train."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom

from hca_assets.dicom.pixels import display_frames, letterbox
from hca_assets.models import LocalEmbedder
from hca_assets.search.adapter import (
    DEFAULT_CONFIG,
    AdapterConfig,
    heldout_metrics,
    lesion_labels,
    patient_split,
    train_adapter,
)
from hca_assets.synthetic import GeneratorOptions, generate

__all__ = ["bench_adapter", "corpus"]

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


def bench_adapter(work: Path, config: AdapterConfig = DEFAULT_CONFIG) -> list[str]:
    """Train on the train patients, evaluate base and adapted on the held-out ones."""
    c = corpus(work)
    vectors = np.stack(c["vectors"])
    split = patient_split(c["patients"], config.heldout_fraction, config.seed)
    train = [i for i, p in enumerate(c["patients"]) if p in split.train]
    start = time.perf_counter()
    model, history = train_adapter(vectors[train], [c["classes"][i] for i in train], config)
    seconds = time.perf_counter() - start
    m = heldout_metrics(vectors, model.apply(vectors), c["classes"], lesion_labels(c["classes"], c["lesion"]),
                        c["patients"], c["series"], split)
    lines = ["## Retrieval adapter", "",
             f"Synthetic corpus of {OPTIONS.patients} patients ({len(vectors)} images, local {vectors.shape[1]}-d "
             f"embeddings); split by patient: {len(split.train)} train, {len(split.heldout)} held out "
             f"({sum(p in split.heldout for p in c['patients'])} images). MLP {vectors.shape[1]}→{config.hidden}→"
             f"{config.out_dim}, {config.epochs} epochs in **{seconds:.1f} s** on CPU (loss {history[0]:.2f} → "
             f"{history[-1]:.2f}). Leave-one-out kNN among held-out patients (no same-patient or same-series neighbour):",
             "", "| target | vectors | P@1 | P@5 | mAP | queries |", "|---|---|---:|---:|---:|---:|"]
    for (name, target), r in sorted(m.items(), key=lambda kv: (kv[0][1], kv[0][0] != "base")):
        lines.append(f"| {target} | {name} | {r.overall['P@1']:.3f} | {r.overall['P@5']:.3f} | {r.overall['mAP']:.3f} | "
                     f"{sum(r.n.values())} |")
    return [*lines, ""]
