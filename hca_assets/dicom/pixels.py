"""From stored pixel values to model-ready 8-bit images: modality LUT, window / VOI LUT / percentiles,
MONOCHROME1 inversion, aspect-preserving resize and black padding to a square (1024² by default).

One pipeline for every consumer: rendering (``images``), search queries and segmentation call
:func:`display_frames` / :func:`scale_to_uint8` and :class:`Letterbox`; a model's mask on the padded square
maps back onto the source pixel grid with :meth:`Letterbox.to_source`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

__all__ = ["IMAGE_SIZE", "PREPROCESSING_VERSION", "WINDOWS", "Letterbox", "Window", "choose_window", "display_frames",
           "frames", "letterbox", "scale_to_uint8", "to_uint8"]

PREPROCESSING_VERSION = "pre-2"  # pre-2: an automatic window where the chosen one or the VOI LUT shows nothing
IMAGE_SIZE = 1024  # side of the square every image is letterboxed to (rendering, queries, model input)


@dataclass(frozen=True)
class Window:
    """A CT display window in Hounsfield units."""

    name: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.high <= self.low:
            raise ValueError(f"window `{self.name}` must have high > low, got {self.low}..{self.high}")


WINDOWS = {
    w.name: w
    for w in (
        Window("soft_tissue", -160, 240),  # abdomen
        Window("liver", -25, 230),
        Window("lung", -1000, 1000),
        Window("brain", 0, 80),
        Window("bone", -450, 1050),
    )
}


def choose_window(modality: str, body_part: str | None) -> Window | None:
    """The CT preset for a body part (None for non-CT: those use VOI LUT or percentiles)."""
    if modality.upper() != "CT":
        return None
    part = (body_part or "").upper()
    if part in ("HEAD", "BRAIN", "SKULL"):
        return WINDOWS["brain"]
    if part in ("CHEST", "LUNG", "THORAX"):
        return WINDOWS["lung"]
    return WINDOWS["soft_tissue"]


def frames(ds: Dataset) -> np.ndarray:
    """Decoded pixels as (frames, rows, cols[, samples])."""
    pixels = ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return pixels if n > 1 else pixels[np.newaxis]


def to_uint8(ds: Dataset, frame: np.ndarray, window: Window | None) -> np.ndarray:
    """One frame as 8-bit grey (or RGB): modality LUT → window, else VOI LUT, else 1st/99th percentiles — and, as a
    viewer does, an automatic window where the chosen one shows nothing of values that vary (stored 0–255 with a
    CT rescale shown through a soft-tissue window; a VOI LUT that maps the whole range to one value): the output is
    constant only when the stored values are."""
    if frame.ndim == 3:  # colour: already RGB after decoding
        return _scale(frame.astype(np.float32), *np.percentile(frame, (0, 100)))
    values = apply_modality_lut(frame, ds).astype(np.float32)
    if window is None and "VOILUTSequence" in ds:
        voi = apply_voi_lut(values, ds).astype(np.float32)
        out = _scale(voi, float(voi.min()), float(voi.max()))
    else:
        out = scale_to_uint8(values, window)
    if out.min() == out.max() and values.min() != values.max():
        out = _automatic(values)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 255 - out
    return out


def scale_to_uint8(values: np.ndarray, window: Window | None) -> np.ndarray:
    """Modality values (HU for CT) as 8-bit grey: the window where one applies, else the 1st/99th percentiles;
    the step volumes share with single frames (a slice of a NIfTI volume has no DICOM header left)."""
    if window is not None:
        return _scale(values, window.low, window.high)
    low, high = np.percentile(values, (1, 99))
    return _scale(values, float(low), float(high))


def display_frames(ds: Dataset) -> tuple[Window | None, Iterator[np.ndarray]]:
    """The window chosen for the instance and its frames as displayed (8-bit, before letterboxing)."""
    window = choose_window(str(ds.get("Modality", "")), str(ds.get("BodyPartExamined", "")) or None)
    return window, (to_uint8(ds, frame, window) for frame in frames(ds))


def _automatic(values: np.ndarray) -> np.ndarray:
    """The 1st–99th percentile window, or the full range where those coincide (a small bright object on a
    uniform background)."""
    out = scale_to_uint8(values, None)
    return out if out.min() != out.max() else _scale(values, float(values.min()), float(values.max()))


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return (np.clip((values - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)


@dataclass(frozen=True)
class Letterbox:
    """Where a ``rows``×``cols`` image sits in the padded ``size``² frame: the longer side scaled to ``size``,
    centred on black. One geometry for the forward resize and for mapping masks back."""

    rows: int
    cols: int
    size: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1 or self.size < 1:
            raise ValueError(f"cannot letterbox a {self.rows}×{self.cols} image into {self.size}²")

    @classmethod
    def of(cls, image: np.ndarray, size: int = IMAGE_SIZE) -> Letterbox:
        """The geometry for ``image`` (rows, cols[, samples])."""
        return cls(int(image.shape[0]), int(image.shape[1]), size)

    @property
    def inner(self) -> tuple[int, int]:
        """(rows, cols) of the resized image inside the frame."""
        scale = self.size / max(self.rows, self.cols)
        return max(1, round(self.rows * scale)), max(1, round(self.cols * scale))

    @property
    def offset(self) -> tuple[int, int]:
        """(top, left) of the resized image inside the frame."""
        rows, cols = self.inner
        return (self.size - rows) // 2, (self.size - cols) // 2

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (uint8 grey or RGB) resized bilinearly into the padded square frame."""
        if image.shape[:2] != (self.rows, self.cols):
            raise ValueError(f"image is {image.shape[0]}×{image.shape[1]}, this letterbox is for {self.rows}×{self.cols}")
        rows, cols = self.inner
        resized = np.asarray(Image.fromarray(image).resize((cols, rows), Image.Resampling.BILINEAR))
        out = np.zeros((self.size, self.size, *image.shape[2:]), dtype=np.uint8)
        top, left = self.offset
        out[top:top + rows, left:left + cols] = resized
        return out

    def to_frame(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask on the source grid placed into the frame (nearest neighbour; padding is False)."""
        if mask.shape != (self.rows, self.cols):
            raise ValueError(f"mask is {mask.shape}, this letterbox is for {self.rows}×{self.cols}")
        rows, cols = self.inner
        inner = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((cols, rows), Image.Resampling.NEAREST))
        out = np.zeros((self.size, self.size), dtype=bool)
        top, left = self.offset
        out[top:top + rows, left:left + cols] = inner > 127
        return out

    def to_source(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask on the padded frame mapped back onto the source pixel grid. Upscaled images: each
        source pixel takes the frame pixel under its centre (inverts :meth:`to_frame` exactly); downscaled
        ones: a source pixel belongs to the mask when at least half of its area does."""
        if mask.shape != (self.size, self.size):
            raise ValueError(f"mask is {mask.shape}, expected {self.size}×{self.size}")
        rows, cols = self.inner
        top, left = self.offset
        inner = mask[top:top + rows, left:left + cols]
        if self.size >= max(self.rows, self.cols):
            sampled = Image.fromarray(inner.astype(np.uint8) * 255).resize((self.cols, self.rows), Image.Resampling.NEAREST)
            return np.asarray(sampled) > 127
        area = Image.fromarray(inner.astype(np.float32), "F").resize((self.cols, self.rows), Image.Resampling.BOX)
        return np.asarray(area) >= 0.5


def letterbox(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize preserving aspect ratio so the longer side is ``size``, centred on black padding."""
    return Letterbox.of(image, size).apply(image)
