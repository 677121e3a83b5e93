"""The segmentation backends by name, and the code_version their masks carry (no Dagster here)."""

from __future__ import annotations

from hca_assets.dicom.pixels import PREPROCESSING_VERSION
from hca_assets.segmentation import BACKENDS
from hca_assets.segmentation.base import Segmenter
from hca_assets.segmentation.strategies import STRATEGIES_VERSION

__all__ = ["BACKENDS", "BackendError", "code_version", "segmenter_for"]


class BackendError(ValueError):
    """A backend that is unknown, not available, or not configured; the message names what to set."""


def code_version(segmenter: Segmenter) -> str:
    """Backend, its version, the prompt strategies and the preprocessing: a change to any re-segments."""
    return f"{segmenter.name}@{segmenter.version}+{STRATEGIES_VERSION}+{PREPROCESSING_VERSION}"


def segmenter_for(backend: str) -> Segmenter:
    """The segmenter named ``backend``; :class:`BackendError` for one that is not available (yet)."""
    if backend == "local":
        from hca_assets.segmentation.local import LocalSegmenter

        return LocalSegmenter()
    if backend in BACKENDS:
        raise BackendError(f"backend `{backend}` is not available yet (use --backend local)")
    raise BackendError(f"unknown backend `{backend}` (one of {', '.join(BACKENDS)})")
