"""The retrieval adapter's and the reviewer feedback's runs over the lake (no Dagster here): what the
``retrieval_adapter`` and ``feedback`` assets and ``hca feedback`` call."""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from hca_assets._infra.storage import pull, push
from hca_assets.config import Settings
from hca_assets.evaluation.feedback import (
    MAX_CSV_BYTES,
    FeedbackError,
    csv_source,
    feedback_table,
    read_csv,
    reviewed_rows,
    training_labels,
    validate,
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
from hca_assets.segmentation.backends import segmenter_code_version

__all__ = ["AdapterRun", "FeedbackRun", "ingest_feedback", "known_ids", "overall", "record_feedback", "run_adapter"]


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


def known_ids(settings: Settings) -> tuple[set[str], set[tuple[str, str]]]:
    """Published pseudonymous SOP UIDs and segmented (series, structure) pairs: what a verdict may name."""
    instances = set(tables.DEID_INSTANCES.read(settings, columns=["sop_instance_uid"]).column(0).to_pylist())
    segs = tables.SEGMENTATIONS.read(settings, columns=["series_instance_uid", "structure"]).to_pylist()
    return instances, {(r["series_instance_uid"], r["structure"]) for r in segs}


def _versions(settings: Settings) -> dict[str, str]:
    return {"search_hit": embedder_code_version(settings), "mask": segmenter_code_version(settings)}


def record_feedback(settings: Settings, row: dict[str, object]) -> dict[str, object]:
    """Validate one verdict (``row`` from :func:`~hca_assets.evaluation.feedback.feedback_row`) against the lake
    and write it; :class:`FeedbackError` if it names an unknown id."""
    validate([row], *known_ids(settings))
    row = {**row, "code_version": row.get("code_version") or _versions(settings)[str(row["kind"])]}
    tables.FEEDBACK.write(settings, feedback_table([row]), match={"feedback_id": str(row["feedback_id"])})
    return row


@dataclass(frozen=True)
class FeedbackRun:
    """Drop-folder files taken (content digest → verdicts) and refused (digest, or ``entry N`` of the sorted
    listing for what is not a readable file → a one-line reason without values), and the evaluation rows."""

    taken: dict[str, int]
    refused: dict[str, str]
    evaluations: pa.Table


def ingest_feedback(settings: Settings, run_id: str) -> FeedbackRun:
    """Read every ``*.csv`` directly in the drop folder (a file is taken whole or refused whole, alone: the others
    go on; taking the same content again replaces its rows, a changed file adds its verdicts — the latest per
    item counts), then write the accuracy on reviewed items into ``evaluations`` (target ``reviewed``). Files
    are named in the report by content digest, never by name; links, sub-folders and other entries are refused."""
    from hca_assets.evaluation.feedback import REVIEWED_TARGET

    folder = Path(settings.feedback)
    pull(settings, folder)
    instances, masks = known_ids(settings)
    taken: dict[str, int] = {}
    refused: dict[str, str] = {}
    for n, path in enumerate(sorted(folder.iterdir()) if folder.is_dir() else []):
        if path.name.startswith("."):
            continue  # being written by its uploader
        try:
            data = _drop_file(path)
        except FeedbackError as exc:
            refused[f"entry {n + 1}"] = str(exc)
            continue
        label = csv_source(data)
        try:
            rows = read_csv(data, _versions(settings))
            validate(rows, instances, masks)
        except FeedbackError as exc:
            refused[label] = str(exc)
            continue
        tables.FEEDBACK.write(settings, feedback_table(rows), match={"source": label})
        taken[label] = len(rows)
    evaluations = reviewed_rows(tables.FEEDBACK.read(settings).to_pylist(), run_id)
    tables.EVALUATIONS.write(settings, evaluations, match={"run_id": run_id, "target": REVIEWED_TARGET})
    return FeedbackRun(taken, refused, evaluations)


def _drop_file(path: Path) -> bytes:
    """A regular ``.csv`` file's bytes, opened without following a link or blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise FeedbackError("a symbolic link (never followed)" if path.is_symlink() else
                            f"cannot be opened ({type(exc).__name__})") from None
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        raise FeedbackError("a sub-folder (only files directly in the drop folder are read)" if stat.S_ISDIR(kind)
                            else "not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if path.suffix.lower() != ".csv":
            raise FeedbackError("not a .csv file")
        return fh.read(MAX_CSV_BYTES + 1)


def overall(metrics: dict[tuple[str, str], RetrievalMetrics]) -> list[tuple[str, str, float, float]]:
    """(target, base | adapted, P@1, P@5) for a table in metadata or a report."""
    return [(target, name, m.overall["P@1"], m.overall["P@5"])
            for (name, target), m in sorted(metrics.items(), key=lambda kv: (kv[0][1], kv[0][0] != "base"))]

