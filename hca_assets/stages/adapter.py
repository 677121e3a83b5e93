"""The retrieval adapter's run over the lake: a small MLP trained on frozen image vectors, its index and held-out
evaluations (what the ``retrieval_adapter`` asset calls)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from hca_assets._infra.storage import pull, push
from hca_assets.config import Settings
from hca_assets.evaluation.feedback import (
    training_labels,
)
from hca_assets.evaluation.report import _rows as metric_rows
from hca_assets.evaluation.retrieval import RetrievalMetrics
from hca_assets.lake import registry as tables
from hca_assets.lake.schemas import EVALUATIONS
from hca_assets.models import embedder_code_version
from hca_assets.search.adapter import (
    DEFAULT_CONFIG,
    HELDOUT_TARGETS,
    AdapterConfig,
    adapted_version,
    config_dict,
    heldout_metrics,
    lesion_labels,
    patient_split,
    save_adapter,
    train_adapter,
)
from hca_assets.search.index import IndexFiles, build_or_extend, keyed_vectors

__all__ = ["AdapterRun", "overall", "run_adapter"]


@dataclass(frozen=True)
class AdapterRun:
    """What one adapter run did; ``skipped`` says why nothing was trained (then the other fields are empty)."""

    skipped: str = ""
    version: str = ""
    file: str = ""
    sha256: str = ""
    train_images: int = 0
    train_patients: int = 0
    heldout_patients: int = 0
    corrected: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    metrics: dict[tuple[str, str], RetrievalMetrics] = field(default_factory=dict)
    evaluations: pa.Table = field(default_factory=EVALUATIONS.empty_table)


def run_adapter(settings: Settings, run_id: str, config: AdapterConfig = DEFAULT_CONFIG) -> AdapterRun:
    """Train an adapter on the current embedder's image vectors and the labels (reviewers' corrections applied),
    publish the adapter file and the adapted vectors' FAISS index (pushed before any table row), and write the
    held-out evaluation of base and adapted vectors into ``evaluations``."""
    base = embedder_code_version(settings)
    keys, vectors = keyed_vectors(tables.EMBEDDINGS.read(settings, where={"code_version": base}), "image", base)
    label_rows = tables.LABELS.read(settings).to_pylist()
    feedback = tables.FEEDBACK.read(settings).to_pylist()
    by_sop = training_labels(label_rows, feedback)
    truth = {str(r["sop_instance_uid"]): str(r["class_label"]) for r in label_rows}
    lesion_of = {str(r["sop_instance_uid"]): bool(r["lesion_present"]) for r in label_rows}
    sops = [str(s) for s in keys.column("sop_instance_uid").to_pylist()]
    patients = [str(p) for p in keys.column("patient_pseudonym").to_pylist()]
    series = [str(s) for s in keys.column("series_instance_uid").to_pylist()]
    labelled = [i for i, s in enumerate(sops) if s in by_sop]
    split = patient_split([patients[i] for i in labelled], config.heldout_fraction, config.seed)
    train = [i for i in labelled if patients[i] in split.train]
    if not split.heldout or len({by_sop[sops[i]] for i in train}) < 2:
        return AdapterRun(skipped=f"{len(labelled)} labelled images of {len(split.train | split.heldout)} patients: "
                                  "an adapter needs two classes to train on and a held-out patient to evaluate on")
    start = time.perf_counter()
    model, losses = train_adapter(vectors[train], [by_sop[sops[i]] for i in train], config)
    seconds = time.perf_counter() - start
    corrected = sum(1 for i in train if by_sop[sops[i]] != truth.get(sops[i]))
    pull(settings, settings.indexes)
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", base)
    path, meta = save_adapter(model, Path(settings.indexes) / "adapters" / safe, {
        "base_code_version": base, "config": config_dict(config), "architecture": "Linear-GELU-LayerNorm-Linear",
        "loss": "supervised contrastive", "train_images": len(train), "train_patients": len(split.train),
        "heldout_patients": len(split.heldout), "corrected_labels": corrected, "final_loss": losses[-1],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds")})
    version = adapted_version(base, str(meta["sha256"]))
    adapted = model.apply(vectors)
    build_or_extend(IndexFiles.for_version(Path(settings.indexes), version, "image"), adapted, keys, version)
    push(settings, settings.indexes)  # the files before the rows that name their version
    classes = [by_sop.get(s) for s in sops]  # None: unlabelled, in no target
    lesion = [t if c is not None else None for t, c in zip(
        lesion_labels([c or "" for c in classes], [lesion_of.get(s, False) for s in sops]), classes, strict=True)]
    metrics = heldout_metrics(vectors, adapted, classes, lesion, patients, series, split)
    now = datetime.now(UTC)
    rows = [row for (name, target), m in sorted(metrics.items())
            for row in metric_rows(m, "image", HELDOUT_TARGETS[target], None, version if name == "adapted" else base,
                                   run_id, now)]
    evaluations = pa.Table.from_pylist(rows, schema=EVALUATIONS)
    for target in HELDOUT_TARGETS.values():
        tables.EVALUATIONS.write(settings, evaluations.filter(pa.compute.field("target") == target),
                                 match={"run_id": run_id, "target": target})
    return AdapterRun(version=version, file=path.relative_to(Path(settings.indexes)).as_posix(),
                      sha256=str(meta["sha256"]), train_images=len(train), train_patients=len(split.train),
                      heldout_patients=len(split.heldout), corrected=corrected, seconds=seconds, losses=losses,
                      metrics=metrics, evaluations=evaluations)


def overall(metrics: dict[tuple[str, str], RetrievalMetrics]) -> list[tuple[str, str, float, float]]:
    """(target, base | adapted, P@1, P@5) for a table in metadata or a report."""
    return [(target, name, m.overall["P@1"], m.overall["P@5"])
            for (name, target), m in sorted(metrics.items(), key=lambda kv: (kv[0][1], kv[0][0] != "base"))]

