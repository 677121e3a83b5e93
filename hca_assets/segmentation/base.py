"""The segmenter protocol: a volume (or planar image) and text prompts in, one boolean mask or an explicit
``UNSUPPORTED`` per prompt out, on the input's grid.

Orientation contract: a 3D ``volume`` is indexed (x, y, z) in RAS+ voxel order — axis 0 towards the patient's
right, axis 1 anterior, axis 2 superior (slices) — as ``to_canonical`` returns it; a 2D image is (rows, columns)
as displayed. ``spacing_mm`` gives one spacing per axis. ``from_canonical`` maps masks back to the source grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import nibabel as nib
import numpy as np
from nibabel import orientations
from pydicom.dataset import Dataset

__all__ = ["CT_AIR_HU", "UNSUPPORTED", "BackendFailure", "Mask", "Outcome", "Segmenter", "Unsupported", "axial_view",
           "from_axial_view", "from_canonical", "looks_like_ct", "outcomes", "planar_pixels", "to_canonical", "well_formed"]


class Unsupported(Enum):
    """The backend cannot serve this prompt (on this input): no mask, never a guess."""

    UNSUPPORTED = "unsupported"


UNSUPPORTED = Unsupported.UNSUPPORTED
CT_AIR_HU = -500.0  # at or below: air in Hounsfield units, so the input is CT


@dataclass(frozen=True)
class Mask:
    """A boolean mask on the input grid; ``confidence`` in [0, 1] where the backend has one, else None."""

    mask: np.ndarray
    confidence: float | None = None

    def __post_init__(self) -> None:
        if self.mask.dtype != np.bool_:
            raise TypeError(f"a mask must be boolean, got {self.mask.dtype}")


Outcome = Mask | Unsupported


class BackendFailure(RuntimeError):
    """The backend failed on this input (an endpoint refused it, a reply or model output broke its contract): that
    series fails, the batch goes on. The message is PHI-free (HTTP status and reason, shapes), never pixel data."""


class Segmenter(Protocol):
    """``segment(volume, spacing_mm, prompts) -> {prompt: Mask | UNSUPPORTED}``, one entry per prompt."""

    name: str
    version: str

    def segment(self, volume: np.ndarray, spacing_mm: Sequence[float], prompts: Sequence[str]) -> dict[str, Outcome]: ...


_RAS = orientations.axcodes2ornt(("R", "A", "S"))


def to_canonical(image: nib.Nifti1Image) -> tuple[np.ndarray, tuple[float, ...]]:
    """The volume's voxels reoriented to RAS+ (the protocol's 3D order) and their spacing in mm."""
    ornt = orientations.ornt_transform(orientations.io_orientation(image.affine), _RAS)
    data = orientations.apply_orientation(np.asanyarray(image.dataobj), ornt)
    zooms = image.header.get_zooms()[:3]
    spacing = tuple(float(zooms[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    return np.ascontiguousarray(data), spacing


def from_canonical(mask: np.ndarray, image: nib.Nifti1Image) -> np.ndarray:
    """A mask on the RAS+ grid of ``to_canonical(image)`` mapped back onto ``image``'s own voxel grid."""
    ornt = orientations.ornt_transform(_RAS, orientations.io_orientation(image.affine))
    return np.ascontiguousarray(orientations.apply_orientation(mask, ornt))


def axial_view(volume: np.ndarray) -> np.ndarray:
    """A RAS+ volume (x, y, z) as its axial slices in radiological display, (z, rows, columns): row 0 anterior,
    column 0 the patient's right (seen from the feet) — the array SimpleITK gives for an LPS-oriented image."""
    return np.flip(volume, (0, 1)).transpose(2, 1, 0)


def from_axial_view(stack: np.ndarray) -> np.ndarray:
    """Slices stacked as :func:`axial_view` gives them back on the RAS+ grid (its exact inverse)."""
    return np.ascontiguousarray(np.flip(stack.transpose(2, 1, 0), (0, 1)))


def well_formed(data: np.ndarray, spacing_mm: Sequence[float]) -> bool:
    """A 2D or 3D input with one spacing per axis and at least one voxel: anything else is unsupported."""
    return data.ndim in (2, 3) and len(spacing_mm) == data.ndim and data.size > 0


def looks_like_ct(data: np.ndarray) -> bool:
    """CT is recognised by outside air in Hounsfield units (≤ -500); no other modality has such values."""
    return float(data.min()) <= CT_AIR_HU


def outcomes(masks: Mapping[str, np.ndarray], ndim: int, prompts: Sequence[str]) -> dict[str, Outcome]:
    """Masks stacked as the input's frames (one frame for 2D, :func:`axial_view` slices for 3D) back on the
    input's grid, one outcome per prompt: those without a mask are ``UNSUPPORTED``."""
    grids = {p: m[0] if ndim == 2 else from_axial_view(m) for p, m in masks.items()}
    return {p: Mask(grids[p]) if p in grids else UNSUPPORTED for p in prompts}


def planar_pixels(ds: Dataset) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A single-frame greyscale image as displayed (MONOCHROME1 inverted) and its pixel spacing in mm, if any."""
    if int(ds.get("SamplesPerPixel", 1)) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError("only single-frame greyscale images can be segmented as planar images")
    pixels = ds.pixel_array.astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        pixels = pixels.max() - pixels
    raw = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    spacing = (float(raw[0]), float(raw[1])) if raw else None
    return pixels, spacing
