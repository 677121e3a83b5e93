"""Reviewer verdicts into the lake: one from ``hca feedback``, or every CSV of the drop folder (the ``feedback``
asset), and the accuracy on reviewed items."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from hca_assets._infra.storage import pull
from hca_assets.config import Settings
from hca_assets.evaluation.feedback import (
    MAX_CSV_BYTES,
    FeedbackError,
    csv_source,
    feedback_table,
    read_csv,
    reviewed_rows,
    validate,
)
from hca_assets.lake import registry as tables
from hca_assets.lake.registry import REVIEWED_TARGET
from hca_assets.models import embedder_code_version
from hca_assets.segmentation.backends import segmenter_code_version

__all__ = ["FeedbackRun", "ingest_feedback", "known_ids", "record_feedback"]


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
