"""Numerical phantoms with ground-truth masks: CT abdomen/chest volume, chest X-ray, brain MR, ultrasound.

Shapes are ellipsoids in normalised coordinates ([-1, 1] across the field of view), filled with
plausible intensities (Hounsfield units for CT). Every function takes an explicit generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["Phantom", "brain_mr", "chest_xray", "ct_volume", "ultrasound_with_text"]


@dataclass
class Phantom:
    """Pixels (z, y, x) or (y, x), boolean masks per structure, and labels."""

    pixels: np.ndarray
    masks: dict[str, np.ndarray]
    lesion_type: str | None = None
    text_boxes: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)


def _ellipsoid(grid: tuple[np.ndarray, ...], center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    acc = np.zeros(np.broadcast_shapes(*(g.shape for g in grid)), dtype=np.float32)
    for g, c, r in zip(grid, center, radii, strict=True):
        acc += ((g - c) / r) ** 2
    return acc <= 1.0


def _jitter(rng: np.random.Generator) -> Callable[[float], float]:
    """A function drawing a uniform offset in [-s, s] from ``rng`` (anatomical variation)."""
    return lambda s: float(rng.uniform(-s, s))


def _grid3(nz: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    y = np.linspace(-1, 1, n, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, n, dtype=np.float32)[None, None, :]
    return z, y, x


def ct_volume(rng: np.random.Generator, *, slices: int, size: int, lesion: bool) -> Phantom:
    """Chest-abdomen CT in HU (int16, z from feet to head): lungs above, liver/spleen/kidneys below."""
    g = _grid3(slices, size)
    j = _jitter(rng)
    body = _ellipsoid(g, (0, 0.05, 0), (3.0, 0.62 + j(0.03), 0.85 + j(0.03)))
    fat = body & ~_ellipsoid(g, (0, 0.05, 0), (3.0, 0.56, 0.78))
    masks = {
        "lung_right": _ellipsoid(g, (0.65, -0.05, -0.38), (0.55, 0.34, 0.26)) & body,
        "lung_left": _ellipsoid(g, (0.65, -0.05, 0.38), (0.55, 0.34, 0.24)) & body,
        "liver": _ellipsoid(g, (-0.35 + j(0.05), 0.0, -0.32), (0.42, 0.34, 0.34)) & body,
        "spleen": _ellipsoid(g, (-0.25 + j(0.05), 0.12, 0.48), (0.22, 0.14, 0.1)) & body,
        "kidney_right": _ellipsoid(g, (-0.62, 0.32, -0.26), (0.22, 0.1, 0.08)),
        "kidney_left": _ellipsoid(g, (-0.55, 0.32, 0.26), (0.22, 0.1, 0.08)),
        "spine": _ellipsoid(g, (0, 0.43, 0), (3.0, 0.07, 0.07)),
    }
    hu = np.full(body.shape, -1000, dtype=np.float32)
    hu[body] = 40
    hu[fat] = -100
    for name, value in [("lung_right", -850), ("lung_left", -850), ("liver", 60), ("spleen", 48),
                        ("kidney_right", 32), ("kidney_left", 32), ("spine", 700)]:
        hu[masks[name]] = value
    lesion_type = None
    if lesion:
        lesion_type = "liver_cyst" if rng.random() < 0.5 else "liver_metastasis"
        zc, yc, xc = -0.35 + j(0.15), j(0.12), -0.32 + j(0.1)
        r = float(rng.uniform(0.06, 0.1))
        masks["lesion"] = _ellipsoid(g, (zc, yc, xc), (r * 2.5, r, r)) & masks["liver"]
        hu[masks["lesion"]] = 5 if lesion_type == "liver_cyst" else 95
    hu += rng.normal(0, 12, size=hu.shape).astype(np.float32)
    return Phantom(np.clip(hu, -1024, 3071).astype(np.int16), masks, lesion_type)


def chest_xray(rng: np.random.Generator, *, size: int, lesion: bool) -> Phantom:
    """PA chest radiograph, 12-bit MONOCHROME2 (bright = attenuating): dark lungs, bright heart/spine."""
    y = np.linspace(-1, 1, size, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, size, dtype=np.float32)[None, :]
    j = _jitter(rng)
    body = _ellipsoid((y, x), (0.1, 0), (1.1, 0.85))
    lungs = {
        "lung_right": _ellipsoid((y, x), (-0.05 + j(0.03), -0.38), (0.58, 0.27 + j(0.02))),
        "lung_left": _ellipsoid((y, x), (-0.05 + j(0.03), 0.38), (0.56, 0.25 + j(0.02))),
    }
    heart = _ellipsoid((y, x), (0.25, 0.1 + j(0.03)), (0.3 + j(0.04), 0.3 + j(0.04)))
    masks = {**lungs, "heart": heart}
    img = np.full((size, size), 200.0, dtype=np.float32)
    img[body] = 2200
    img[lungs["lung_right"] | lungs["lung_left"]] = 900
    img[heart] = 2600
    img[:, np.abs(x[0]) < 0.06] = 3000  # spine / mediastinum
    lesion_type = None
    if lesion:
        lesion_type = "lung_nodule"
        side = "lung_right" if rng.random() < 0.5 else "lung_left"
        cy, cx = np.argwhere(masks[side])[int(rng.integers(masks[side].sum()))] / (size - 1) * 2 - 1
        r = float(rng.uniform(0.04, 0.07))
        masks["lesion"] = _ellipsoid((y, x), (float(cy), float(cx)), (r, r)) & masks[side]
        img[masks["lesion"]] = 2400
    img += rng.normal(0, 40, size=img.shape).astype(np.float32)
    return Phantom(np.clip(img, 0, 4095).astype(np.uint16), masks, lesion_type)


def brain_mr(rng: np.random.Generator, *, slices: int, size: int, tumour: bool) -> Phantom:
    """T1-post-contrast-like brain MR (uint16), with BraTS-style tumour sub-regions when ``tumour``."""
    g = _grid3(slices, size)
    j = _jitter(rng)
    head = _ellipsoid(g, (0, 0, 0), (1.1, 0.9, 0.75))
    brain = _ellipsoid(g, (0, 0, 0), (0.95, 0.8, 0.65))
    ventricles = _ellipsoid(g, (0.05, -0.05, 0), (0.35, 0.25, 0.12))
    masks = {"brain": brain, "ventricles": ventricles}
    img = np.zeros(head.shape, dtype=np.float32)
    img[head] = 500
    img[brain] = 800
    img[ventricles] = 250
    lesion_type = None
    if tumour:
        lesion_type = "glioma"
        c = (j(0.3), j(0.3), 0.35 * (1 if rng.random() < 0.5 else -1))
        r = float(rng.uniform(0.14, 0.2))
        edema = _ellipsoid(g, c, (r * 2.2, r * 1.8, r * 1.8)) & brain
        core = _ellipsoid(g, c, (r * 1.2, r, r)) & brain
        necrotic = _ellipsoid(g, c, (r * 0.7, r * 0.55, r * 0.55)) & brain
        masks |= {
            "edema": edema & ~core,
            "tumor_core": core,
            "enhancing_tumor": core & ~necrotic,
            "non_enhancing_tumor": necrotic,
        }
        img[masks["edema"]] = 950
        img[masks["enhancing_tumor"]] = 1400
        img[masks["non_enhancing_tumor"]] = 350
    img += rng.normal(0, 15, size=img.shape).astype(np.float32)
    return Phantom(np.clip(img, 0, 4095).astype(np.uint16), masks, lesion_type)


def ultrasound_with_text(rng: np.random.Generator, *, lines: list[str], rows: int = 480, cols: int = 640) -> Phantom:
    """8-bit ultrasound sector (speckle) with ``lines`` burned into the pixels, white on black, top left."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    ang = np.arctan2(xx - cols / 2, yy + 40)
    rad = np.hypot(xx - cols / 2, yy + 40)
    sector = (np.abs(ang) < 0.6) & (rad > 80) & (rad < rows + 10)
    img = np.zeros((rows, cols), dtype=np.float32)
    img[sector] = rng.rayleigh(45, size=int(sector.sum()))
    cy = 0.35 + float(rng.uniform(-0.1, 0.1))
    organ = _ellipsoid((yy / rows * 2 - 1, xx / cols * 2 - 1), (cy, 0.0), (0.25, 0.2)) & sector
    img[organ] *= 0.35
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=18)
    boxes: list[tuple[str, tuple[int, int, int, int]]] = []
    y = 8
    for line in lines:
        box = draw.textbbox((10, y), line, font=font)
        draw.rectangle(box, fill=0)
        draw.text((10, y), line, fill=255, font=font)
        boxes.append((line, (int(box[0]), int(box[1]), int(box[2]), int(box[3]))))
        y = box[3] + 8
    return Phantom(np.asarray(pil), {"organ": organ}, None, boxes)
