"""Mask measurements from voxel spacing: voxels, area in mm² (planar masks), volume in mL (3D masks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Measurement", "measure"]


@dataclass(frozen=True)
class Measurement:
    """``area_mm2`` only for 2D masks and ``volume_ml`` only for 3D; None also when spacing is unknown."""

    voxels: int
    area_mm2: float | None
    volume_ml: float | None


def measure(mask: np.ndarray, spacing_mm: Sequence[float] | None) -> Measurement:
    """Count ``mask``'s voxels and scale by the voxel size (one spacing per axis, in mm)."""
    if mask.ndim not in (2, 3):
        raise ValueError(f"a mask must be 2D or 3D, got {mask.ndim} dimensions")
    if spacing_mm is not None and len(spacing_mm) != mask.ndim:
        raise ValueError(f"{mask.ndim}D mask needs {mask.ndim} spacings, got {len(spacing_mm)}")
    voxels = int(np.count_nonzero(mask))
    size = float(np.prod(spacing_mm)) if spacing_mm is not None else None
    if size is None:
        return Measurement(voxels, None, None)
    return Measurement(voxels, voxels * size if mask.ndim == 2 else None, voxels * size / 1000.0 if mask.ndim == 3 else None)
