"""From stored pixel values to model-ready 8-bit images: modality LUT, window / VOI LUT / percentiles,
MONOCHROME1 inversion, aspect-preserving resize and black padding to a square (1024² by default)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

__all__ = ["IMAGE_SIZE", "PREPROCESSING_VERSION", "WINDOWS", "Window", "choose_window", "frames", "letterbox", "to_uint8"]

PREPROCESSING_VERSION = "pre-1"
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
    """One frame as 8-bit grey (or RGB): modality LUT → window, else VOI LUT, else 1st/99th percentiles."""
    if frame.ndim == 3:  # colour: already RGB after decoding
        return _scale(frame.astype(np.float32), *np.percentile(frame, (0, 100)))
    values = apply_modality_lut(frame, ds).astype(np.float32)
    if window is not None:
        out = _scale(values, window.low, window.high)
    elif "VOILUTSequence" in ds:
        voi = apply_voi_lut(values, ds).astype(np.float32)
        out = _scale(voi, float(voi.min()), float(voi.max()))
    else:
        low, high = np.percentile(values, (1, 99))
        out = _scale(values, float(low), float(high))
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 255 - out
    return out


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return (np.clip((values - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)


def letterbox(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize preserving aspect ratio so the longer side is ``size``, centred on black padding."""
    rows, cols = image.shape[:2]
    scale = size / max(rows, cols)
    new = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    resized = np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BILINEAR))
    out = np.zeros((size, size, *image.shape[2:]), dtype=np.uint8)
    top, left = (size - new[1]) // 2, (size - new[0]) // 2
    out[top:top + new[1], left:left + new[0]] = resized
    return out
