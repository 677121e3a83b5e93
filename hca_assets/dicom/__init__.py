"""DICOM I/O, validation, de-identification and pixel processing — no Dagster here.

Names are loaded on first use (PEP 562): importing a light submodule (``dicom.enum``) does not import pydicom.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"InstanceInfo": "io", "InvalidInstance": "io", "QuarantineReason": "enum", "inspect_bytes": "io",
          "inspect_file": "io"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
