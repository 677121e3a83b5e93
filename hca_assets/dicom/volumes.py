"""3D series → NIfTI: slices sorted along the slice normal, affine from DICOM geometry (LPS → RAS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

__all__ = ["VOLUME_MODALITIES", "Volume", "build_volume", "slice_positions_ras", "volume_order"]

VOLUME_MODALITIES = frozenset({"CT", "MR", "PT"})  # series of these are stacked into volumes (rendering, segmentation)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    image: nib.Nifti1Image
    sop_instance_uids: list[str]  # in volume (slice) order


def _normal(ds: Dataset) -> np.ndarray:
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return np.cross(iop[:3], iop[3:])


def volume_order(slices: Sequence[Dataset]) -> list[int]:
    """Indices of ``slices`` in volume order: by position along the first slice's normal (as NIfTI stacks them)."""
    normal = _normal(slices[0])
    return sorted(range(len(slices)), key=lambda k: float(np.dot(normal, np.asarray(slices[k].ImagePositionPatient, float))))


def build_volume(slices: Sequence[Dataset], pixels: Sequence[np.ndarray] | None = None) -> Volume:
    """Stack single-frame slices of one series into a NIfTI volume (modality LUT applied, float32).
    ``pixels``: each slice's modality values when the caller already decoded them (``slices`` may then be
    header-only), so that a renderer reads every file once.

    Raises ``ValueError`` when the slices do not form one regular volume (orientation, size, spacing).
    """
    if len(slices) < 2:
        raise ValueError(f"a volume needs at least 2 slices, got {len(slices)}")
    iops = {tuple(round(float(v), 4) for v in ds.ImageOrientationPatient) for ds in slices}
    if len(iops) != 1:
        raise ValueError(f"slices have {len(iops)} different orientations")
    if len({(int(ds.Rows), int(ds.Columns)) for ds in slices}) != 1:
        raise ValueError("slices have different sizes")
    normal = _normal(slices[0])
    order = volume_order(slices)
    ordered = [slices[k] for k in order]
    positions = np.array([np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float)) for ds in ordered])
    gaps = np.diff(positions)
    if np.any(gaps <= 0) or np.ptp(gaps) > 0.01 * max(1.0, float(np.mean(gaps))):
        raise ValueError("slice positions are not evenly spaced along the normal")
    first = ordered[0]
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_spacing  # i: along a row (increasing column)
    lps[:3, 1] = iop[3:] * row_spacing  # j: down a column (increasing row)
    lps[:3, 2] = normal * float(np.mean(gaps))
    lps[:3, 3] = np.asarray(first.ImagePositionPatient, dtype=float)
    # (i, j, k) in Fortran order, as NIfTI stores it: each slice is one contiguous copy, the writer none
    data = np.empty((int(first.Columns), int(first.Rows), len(order)), dtype=np.float32, order="F")
    for k, index in enumerate(order):
        values = pixels[index] if pixels is not None else apply_modality_lut(slices[index].pixel_array, slices[index])
        data[:, :, k] = np.asarray(values).T
    image = nib.Nifti1Image(data, _LPS_TO_RAS @ lps)
    image.header.set_xyzt_units("mm")
    return Volume(image, [str(ds.SOPInstanceUID) for ds in ordered])


def slice_positions_ras(slices: list[Dataset]) -> np.ndarray:
    """ImagePositionPatient of each slice converted to RAS (for checking an affine)."""
    return np.array([(_LPS_TO_RAS @ np.r_[np.asarray(ds.ImagePositionPatient, dtype=float), 1.0])[:3] for ds in slices])
