"""DICOM PS3.15 Table E.1-1 (vendored in ``_standard/``, see its PROVENANCE.md), loaded once."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

__all__ = ["OPTION_COLUMNS", "ProfileRow", "by_keyword", "load_table"]

OPTION_COLUMNS = (
    "rtn_safe_priv", "rtn_uids", "rtn_dev_id", "rtn_inst_id", "rtn_pat_chars", "rtn_long_full_dates",
    "rtn_long_modif_dates", "clean_desc", "clean_struct_cont", "clean_graph",
)


@dataclass(frozen=True)
class ProfileRow:
    """One attribute of Table E.1-1: its tag as written, keyword, VR, Basic Profile action and option actions."""

    tag: str
    name: str
    keyword: str
    vr: str
    basic: str
    options: dict[str, str]


@functools.cache
def load_table() -> tuple[ProfileRow, ...]:
    """All 621 rows, in the table's order."""
    text = resources.files("hca_assets.dicom").joinpath("_standard/ps3.15_table_E.1-1.csv").read_text("utf-8")
    return tuple(
        ProfileRow(
            tag=r["tag"], name=r["name"], keyword=r["keyword"], vr=r["vr"], basic=r["basic_profile"],
            options={c: r[c] for c in OPTION_COLUMNS if r[c]},
        )
        for r in csv.DictReader(text.splitlines())
    )


@functools.cache
def by_keyword() -> dict[str, ProfileRow]:
    """Rows that have a PS3.6 keyword, by keyword."""
    return {r.keyword: r for r in load_table() if r.keyword}
