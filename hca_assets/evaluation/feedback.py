"""Reviewer feedback: a verdict on a search hit or a mask (correct, wrong, or a corrected label), validated against
the lake's pseudonymous ids; accuracy on reviewed items; labels for training with the corrections applied.

PHI-free by construction: rows hold pseudonymous UIDs, a structure name, the verdict, the reviewer's name and the
time; the source of a drop-folder row is its file's content digest, never its name; a refusal names the field and
the line, never a value (a reviewer may paste an original UID or a name into the wrong column).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa

from hca_assets.lake.registry import REVIEWED_TARGET
from hca_assets.lake.schemas import EVALUATIONS, FEEDBACK

__all__ = ["KINDS", "REVIEWED_TARGET", "VERDICTS", "FeedbackError", "csv_source", "feedback_row", "feedback_table", "latest", "read_csv", "reviewed_rows",
           "training_labels", "validate"]

KINDS = ("search_hit", "mask")
VERDICTS = ("correct", "wrong", "corrected")
CSV_COLUMNS = ("kind", "sop_instance_uid", "series_instance_uid", "structure", "query_sop_instance_uid", "verdict",
               "corrected_label", "reviewer")
_SAFE = re.compile(r"^[A-Za-z0-9._:@+-]+$")
MAX_CSV_BYTES = 16 << 20  # one drop-folder file; far above any review session's verdicts
MAX_CELL = 1024  # characters in one cell: ids are ≤ 64, a reviewer's name is short
REVIEWER = re.compile(r"^[^=+\-@\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")  # no formula lead (CWE-1236), no control characters


class FeedbackError(ValueError):
    """A verdict refused: unknown id, missing or contradictory field (one line, PHI-free)."""


def feedback_row(*, kind: str, verdict: str, reviewer: str, source: str, sop_instance_uid: str | None = None,
                 series_instance_uid: str | None = None, structure: str | None = None,
                 query_sop_instance_uid: str | None = None, corrected_label: str | None = None,
                 code_version: str | None = None, reviewed_at: datetime | None = None) -> dict[str, object]:
    """One ``feedback`` row, its fields checked for shape (not yet against the lake: see :func:`validate`)."""
    if kind not in KINDS:
        raise FeedbackError(f"kind must be one of {', '.join(KINDS)}")
    if verdict not in VERDICTS:
        raise FeedbackError(f"verdict must be one of {', '.join(VERDICTS)}")
    if (verdict == "corrected") != bool(corrected_label):
        raise FeedbackError("a corrected label goes with the verdict 'corrected', and only with it")
    if not reviewer.strip():
        raise FeedbackError("a reviewer name is required")
    if not REVIEWER.match(reviewer.strip()):
        raise FeedbackError("the reviewer name may not begin with = + - @ (a spreadsheet formula) nor hold control characters")
    if kind == "search_hit" and not sop_instance_uid:
        raise FeedbackError("a search-hit verdict needs the hit's sop_instance_uid")
    if kind == "mask" and not (series_instance_uid and structure):
        raise FeedbackError("a mask verdict needs series_instance_uid and structure")
    for name, value in (("sop_instance_uid", sop_instance_uid), ("series_instance_uid", series_instance_uid),
                        ("query_sop_instance_uid", query_sop_instance_uid), ("corrected_label", corrected_label),
                        ("structure", structure)):
        if value and not _SAFE.match(value):
            raise FeedbackError(f"{name} holds characters outside [A-Za-z0-9._:@+-]")
    at = reviewed_at or datetime.now(UTC)
    row = {"kind": kind, "sop_instance_uid": sop_instance_uid or None, "series_instance_uid": series_instance_uid or None,
           "structure": structure or None, "query_sop_instance_uid": query_sop_instance_uid or None, "verdict": verdict,
           "corrected_label": corrected_label or None, "code_version": code_version, "reviewer": reviewer.strip(),
           "reviewed_at": at, "source": source}
    digest = "\x1f".join(str(row[k]) for k in ("kind", "sop_instance_uid", "series_instance_uid", "structure",
                                               "query_sop_instance_uid", "verdict", "corrected_label", "reviewer",
                                               "reviewed_at"))
    return {"feedback_id": hashlib.sha256(digest.encode()).hexdigest()[:16], **row}


def validate(rows: Iterable[dict[str, object]], instances: set[str], masks: set[tuple[str, str]]) -> None:
    """Refuse (:class:`FeedbackError`) the first row naming an instance not in ``instances`` (published
    pseudonymous SOP UIDs) or a mask not in ``masks`` ((series, structure) pairs that were segmented)."""
    for r in rows:
        for field in ("sop_instance_uid", "query_sop_instance_uid"):
            if r[field] and r[field] not in instances:
                raise FeedbackError(f"unknown {field} (not a published instance)")
        if r["kind"] == "mask" and (r["series_instance_uid"], r["structure"]) not in masks:
            raise FeedbackError("unknown mask (no such series and structure segmented)")


def csv_source(data: bytes) -> str:
    """``feedback.source`` of a drop-folder file: its content digest (its name may be a patient's)."""
    return "csv:" + hashlib.sha256(data).hexdigest()[:16]


def read_csv(data: bytes, code_versions: dict[str, str]) -> list[dict[str, object]]:
    """The rows of one drop-folder CSV's bytes (UTF-8, a BOM allowed; header :data:`CSV_COLUMNS`, ``reviewed_at``
    ISO 8601 optional); :class:`FeedbackError` naming the line of the first bad row, never its values.
    ``code_versions``: kind → version under review."""
    if len(data) > MAX_CSV_BYTES:
        raise FeedbackError(f"file is {len(data)} bytes, over the limit of {MAX_CSV_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedbackError("not UTF-8 text") from None
    if "\x00" in text:
        raise FeedbackError("holds NUL characters: not a text CSV")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = {"kind", "verdict", "reviewer"} - set(reader.fieldnames or ())
        if missing:
            raise FeedbackError(f"missing column(s) {', '.join(sorted(missing))}")
        return [_row(raw, reader.line_num, data, code_versions) for raw in reader]
    except csv.Error as exc:  # a cell over csv's field limit, a stray quote: no values in its message
        raise FeedbackError(f"line {reader.line_num}: not well-formed CSV ({exc})") from None


def _row(raw: dict[str | None, object], line: int, data: bytes, code_versions: dict[str, str]) -> dict[str, object]:
    if any(len(v) > MAX_CELL for v in raw.values() if isinstance(v, str)) or None in raw:
        raise FeedbackError(f"line {line}: a cell over {MAX_CELL} characters, or more cells than columns")
    values = {k: (str(raw.get(k) or "")).strip() or None for k in (*CSV_COLUMNS, "reviewed_at")}
    try:
        at = datetime.fromisoformat(values["reviewed_at"]) if values["reviewed_at"] else None
        return feedback_row(
            kind=values["kind"] or "", verdict=values["verdict"] or "", reviewer=values["reviewer"] or "",
            source=csv_source(data), sop_instance_uid=values["sop_instance_uid"],
            series_instance_uid=values["series_instance_uid"], structure=values["structure"],
            query_sop_instance_uid=values["query_sop_instance_uid"], corrected_label=values["corrected_label"],
            code_version=code_versions.get(values["kind"] or ""),
            reviewed_at=at.astimezone(UTC) if at and at.tzinfo else (at.replace(tzinfo=UTC) if at else None))
    except FeedbackError as exc:
        raise FeedbackError(f"line {line}: {exc}") from None
    except ValueError:  # fromisoformat quotes the value
        raise FeedbackError(f"line {line}: reviewed_at is not an ISO 8601 time") from None


def latest(rows: Iterable[dict[str, object]]) -> list[dict[str, object]]:
    """The latest verdict per reviewed item (a hit by its instance and query, a mask by series and structure)."""
    best: dict[tuple[object, ...], dict[str, object]] = {}
    for r in sorted(rows, key=lambda r: (r["reviewed_at"], r["feedback_id"])):
        best[(r["kind"], r["sop_instance_uid"], r["query_sop_instance_uid"], r["series_instance_uid"], r["structure"])] = r
    return list(best.values())


def reviewed_rows(feedback: list[dict[str, object]], run_id: str) -> pa.Table:
    """``evaluations`` rows: per kind (search hits at level image, masks at level series) and code_version under
    review, the fraction of reviewed items judged correct (metric ``reviewed_accuracy``, target ``reviewed``)."""
    now = datetime.now(UTC)
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in latest(feedback):
        groups[(str(r["kind"]), str(r["code_version"] or "unknown"))].append(r["verdict"] == "correct")
    rows = [{"run_id": run_id, "metric": "reviewed_accuracy", "value": sum(v) / len(v),
             "level": "image" if kind == "search_hit" else "series", "target": REVIEWED_TARGET, "label": "overall",
             "aggregation": None, "queries": len(v), "code_version": version, "evaluated_at": now}
            for (kind, version), v in sorted(groups.items())]
    return pa.Table.from_pylist(rows, schema=EVALUATIONS)


def training_labels(labels: list[dict[str, object]], feedback: list[dict[str, object]]) -> dict[str, str]:
    """Class label per instance for training: the ``labels`` table's, replaced by the latest label a reviewer
    corrected it to (a hit judged merely wrong keeps its label: the verdict is on the match, not the label)."""
    out = {str(r["sop_instance_uid"]): str(r["class_label"]) for r in labels}
    corrections = [f for f in feedback if f["kind"] == "search_hit" and f["verdict"] == "corrected"]
    for r in sorted(corrections, key=lambda r: (r["reviewed_at"], r["feedback_id"])):
        out[str(r["sop_instance_uid"])] = str(r["corrected_label"])
    return out


def feedback_table(rows: list[dict[str, object]]) -> pa.Table:
    """``rows`` as a ``feedback`` table."""
    return pa.Table.from_pylist(rows, schema=FEEDBACK)
