"""Shared metadata keys and small renderers for asset metadata (PHI-free values only)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from hca_assets.lake.delta import WriteResult

ROW_COUNT = "dagster/row_count"
TABLE_URI = "table_uri"
DELTA_VERSION = "delta_version"
NUM_RECEIVED = "num_received"
NUM_INGESTED = "num_instances"
NUM_QUARANTINED = "num_quarantined"
SECONDS = "seconds"


def written(result: WriteResult, *, rows: int | None = None) -> dict[str, object]:
    """The ``table_uri``, ``delta_version`` and row count of the Delta table an asset wrote (``rows`` when the
    asset counts something else than that table's rows, e.g. files staged)."""
    return {TABLE_URI: result.table_uri, DELTA_VERSION: result.delta_version,
            ROW_COUNT: result.row_count if rows is None else rows}


def md_counts(counts: Mapping[str, int], header: tuple[str, str]) -> dg.MetadataValue:
    """A two-column markdown table of counts, largest first."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return dg.MetadataValue.md("\n".join(lines) if counts else "_none_")


def md_table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> dg.MetadataValue:
    """A markdown table: first column text, the others right-aligned numbers."""
    if not rows:
        return dg.MetadataValue.md("_none_")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def md_png(png: bytes | None, caption: str) -> dg.MetadataValue:
    """A PNG shown inline in the UI (markdown image with a data URI)."""
    if png is None:
        return dg.MetadataValue.md("_none_")
    return dg.MetadataValue.md(f"![{caption}](data:image/png;base64,{base64.b64encode(png).decode()})")


def progress_logger(context: dg.AssetExecutionContext, what: str, steps: int = 10) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that logs about ``steps`` times per run."""

    def progress(done: int, total: int) -> None:
        stride = max(1, -(-total // steps))
        if done == total or done % stride == 0:
            context.log.info(f"{what}: {done}/{total}")

    return progress
