"""Query results (column names + rows of Python values) as a text table, CSV or JSON lines, with the standard
library only: ``hca sql`` starts without pyarrow, pandas or polars."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any

__all__ = ["FORMATS", "render"]

FORMATS = ("table", "csv", "json")
MAX_ROWS = 200  # a text table shows this many rows, then says how many more there are
MAX_TEXT = 80  # characters of one cell in a text table
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell beginning so (OWASP CSV injection)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """``rows`` in ``fmt`` (one of :data:`FORMATS`); nested values (lists, structs) become JSON text."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_inert(v, _text(v, csv=True)) for v in row] for row in rows)
        return out.getvalue()
    if fmt == "json":
        return "".join(json.dumps(dict(zip(columns, row, strict=True)), default=_json) + "\n" for row in rows)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    return _table(columns, rows)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_clip(_text(v)) for v in row] for row in rows[:MAX_ROWS]]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all((isinstance(r[i], int | float) and not isinstance(r[i], bool)) or r[i] is None
                                  for r in rows[:MAX_ROWS]) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "│ " + " │ ".join(v.rjust(w) if n else v.ljust(w)
                                  for v, w, n in zip(values, widths, numeric, strict=True)) + " │"

    rule = "─┼─".join("─" * w for w in widths)
    lines = [line(columns), f"├─{rule}─┤", *(line(r) for r in cells)]
    if len(rows) > MAX_ROWS:
        lines.append(f"… {len(rows) - MAX_ROWS} more rows (use --format csv or json for all)")
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _text(value: Any, *, csv: bool = False) -> str:
    if value is None:
        return "" if csv else "null"
    if isinstance(value, datetime | date | time):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=_json)
    if isinstance(value, float) and not csv:
        return f"{value:.6g}"
    return str(value)


def _inert(value: Any, text: str) -> str:
    """A text cell a spreadsheet would run as a formula, quoted with a leading apostrophe; numbers stay numbers."""
    return "'" + text if isinstance(value, str) and text.startswith(FORMULA_LEADS) else text


def _clip(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _json(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date | time) else str(value)
