"""Attribute types (1, 1C, 2, 2C, 3) per IOD, to resolve PS3.15's combined actions (X/Z, Z/D, X/Z/D…).

The IOD → module → attribute tables are the DICOM standard's, as shipped (generated from PS3.3) in
highdicom's package data (``highdicom/_standard/*.json``). They are read as files, without importing
highdicom (whose import alone costs ~0.25 s of every worker start).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path as _FsPath
from typing import Any

__all__ = ["Path", "attribute_types"]

Path = tuple[str, ...]  # keywords of the enclosing sequences, outermost first
_RANK = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


def _standard_table(name: str) -> Any:
    """One of highdicom's standard tables, e.g. ``iod_module_map``."""
    spec = importlib.util.find_spec("highdicom")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("highdicom is not installed: its DICOM standard tables are needed")
    folder = _FsPath(next(iter(spec.submodule_search_locations))) / "_standard"
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


# loaded at import, so worker processes forked from a preloaded server share them instead of re-reading
_IODS = _standard_table("iod_module_map")
_ATTRIBUTES = _standard_table("module_attribute_map")
_SOP_CLASS_IOD = _standard_table("sop_class_iod_map")


def _merge(types: dict[tuple[Path, str], str], modules: list[str]) -> None:
    attributes = _ATTRIBUTES
    for module in modules:
        for a in attributes.get(module, []):
            key = (tuple(a["path"]), a["keyword"])
            if key not in types or _RANK[a["type"]] < _RANK[types[key]]:
                types[key] = a["type"]


@functools.cache
def attribute_types(sop_class_uid: str) -> dict[tuple[Path, str], str]:
    """(path, keyword) → the most demanding type of that attribute in the SOP class's IOD.

    For an unknown SOP class, the most demanding type over every IOD (keeps any file valid).
    """
    iods = _IODS
    iod = _SOP_CLASS_IOD.get(sop_class_uid)
    keys = [iod] if iod in iods else list(iods)
    types: dict[tuple[Path, str], str] = {}
    for key in keys:
        _merge(types, [m["key"] for m in iods[key]])
    return types
