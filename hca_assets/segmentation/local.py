"""The weight-free default segmenter: classical intensity ranges, connected components, anatomical position
priors and morphology. No model, no network, deterministic.

- CT (recognised by outside air at <= -500 HU): body = largest non-air component; lungs = air inside the
  body, the one or two largest components; abdominal organs from a soft-tissue-only smoothed image
  (normalised convolution, so fat, air and bone never bleed into organ boundaries): liver = the largest
  > 50 HU component on the patient's right, lesion = voxels of the liver's closed outline deviating from the
  liver's median HU, spleen = the largest > 43.5 HU component on the left below the lungs, kidneys = the largest
  18–35.5 HU posterior component each side, its border with liver or spleen moved to the HU midpoint; each mask is smoothed by a majority filter and hole-filled.
- Brain MR (any other 3D input): intensities relative to the brain's modal intensity; enhancing tumour =
  the largest bright component, tumour core = its filled outline, non-enhancing tumour = core minus
  enhancing, edema = the mildly hyperintense shell touching the core.
- Planar (2D) radiographs: lungs = dark regions inside the body (each lung's convex hull, so the
  retrocardiac lung counts), heart = the central band between soft tissue and bone (its convex hull).

Limits: tuned on clean phantoms (sharp, homogeneous organs); real anatomy (touching organs, contrast
phases, bowel gas, pathology) defeats fixed HU ranges. A prompt outside these lists, a 2D CT slice or a
3D CT prompt on MR (and the reverse) is ``UNSUPPORTED``, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from hca_assets.segmentation.base import UNSUPPORTED, Mask, Outcome

__all__ = ["CT_PROMPTS", "CXR_PROMPTS", "MR_PROMPTS", "LocalSegmenter"]

CT_PROMPTS = ("liver", "spleen", "left kidney", "right kidney", "lung", "lesion")
MR_PROMPTS = ("tumor core", "enhancing tumor", "non-enhancing tumor", "edema")
CXR_PROMPTS = ("lung", "heart")

_SMOOTH = (2.0, 2.0, 0.5)  # voxels: noise down ~10×, boundaries kept (slices are thick)
_MAJORITY = (7, 7, 1)
_SLICE = np.zeros((3, 3, 3), dtype=bool)
_SLICE[:, :, 1] = ndi.generate_binary_structure(2, 1)


def _largest(mask: np.ndarray, keep: Callable[[np.ndarray], bool] = lambda _: True) -> np.ndarray:
    """The largest connected component of ``mask`` whose voxel indices (n, ndim) pass ``keep``."""
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    for idx in np.argsort(-sizes):
        component = labels == idx + 1
        if keep(np.argwhere(component)):
            return component
    return np.zeros(mask.shape, dtype=bool)


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    """Holes filled within each axial slice (structures open at the top or bottom slice included)."""
    return ndi.binary_fill_holes(mask, structure=_SLICE)


def _tidy(mask: np.ndarray, majority: tuple[int, ...]) -> np.ndarray:
    """Majority-filter the outline (random boundary noise averages out), keep the largest part, fill holes."""
    smooth = ndi.uniform_filter(mask.astype(np.float32), majority) > 0.5
    return _fill_slices(_largest(smooth)) if smooth.any() else smooth


def _close(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Morphological closing with a ball of ``radius_mm`` (via distance transforms: cost independent of radius)."""
    grown = ndi.distance_transform_edt(~mask, sampling=spacing) <= radius_mm
    return ndi.distance_transform_edt(grown, sampling=spacing) > radius_mm


def _lesion(sm: np.ndarray, soft: np.ndarray, liver: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Regions of the liver's closed outline ≥ 30 HU below or ≥ 15 HU above the liver's median, mostly walled
    by liver; their edge is then set halfway between liver and lesion HU, near the detected core only."""
    level = float(np.median(sm[liver]))
    labels, n = ndi.label(outline & soft & ((sm < level - 30) | (sm > level + 15)))
    lesion = np.zeros_like(liver)
    for i in range(1, n + 1):
        core = labels == i
        shell = ndi.binary_dilation(core, _SLICE, iterations=2) & ~core
        if core.sum() < 20 or liver[shell].mean() < 0.4:
            continue
        inner = float(np.median(sm[core & soft])) if (core & soft).any() else level - 60
        edge = (level + inner) / 2
        near = ndi.binary_dilation(core, _SLICE, iterations=3) & outline
        lesion |= near & ((sm < edge) if inner < level else (sm > edge))
    return _tidy(lesion, (5, 5, 1)) if lesion.any() else lesion


def _ct(hu: np.ndarray, spacing: Sequence[float], prompts: set[str]) -> dict[str, np.ndarray]:
    body = _fill_slices(_largest(hu > -500))
    air = ndi.binary_opening((hu < -400) & body, _SLICE)
    labels, n = ndi.label(air)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, dtype=int)
    order = np.argsort(-sizes)[:2]
    lungs = np.isin(labels, [i + 1 for i in order if sizes[i] >= 0.2 * sizes[order[0]]]) if n else np.zeros_like(air)
    out: dict[str, np.ndarray] = {"lung": _fill_slices(lungs)}
    if not prompts - {"lung"}:
        return out
    weight = ndi.binary_opening((hu > -30) & (hu < 150) & body & ~lungs, np.ones((3, 3, 1))).astype(np.float32)
    sm = ndi.gaussian_filter(hu * weight, _SMOOTH) / np.maximum(ndi.gaussian_filter(weight, _SMOOTH), 1e-3)
    soft = weight > 0
    centre = np.argwhere(body).mean(axis=0)
    lung_floor = np.argwhere(lungs)[:, 2].mean() if lungs.any() else np.inf
    right = lambda idx: idx[:, 0].mean() > centre[0]  # noqa: E731 - axis 0 points to the patient's right
    liver = _tidy(_largest(soft & (sm > 50) & (sm < 200), right), _MAJORITY)
    outline = _fill_slices(_close(liver, 20.0, spacing)) & body & ~lungs if liver.any() else liver
    lesion = _lesion(sm, soft, liver, outline) if liver.any() else np.zeros_like(liver)
    liver = _fill_slices(liver | lesion)
    out |= {"liver": liver, "lesion": lesion}
    taken = liver | lesion
    below_lungs = lambda idx: idx[:, 2].mean() < lung_floor  # noqa: E731
    out["spleen"] = _tidy(_largest(soft & ~taken & (sm > 43.5) & (sm < 200),
                                   lambda idx: not right(idx) and below_lungs(idx)), _MAJORITY)
    kidneys = soft & ~lesion & ~out["spleen"] & (sm > 18) & (sm < 35.5)
    posterior = lambda idx: idx[:, 1].mean() < centre[1]  # noqa: E731 - axis 1 points anterior
    for prompt, side in (("right kidney", right), ("left kidney", lambda idx: not right(idx))):
        kidney = _tidy(_largest(kidneys, lambda idx, side=side: side(idx) and posterior(idx)), _MAJORITY)
        out[prompt] = _grow_into(kidney, sm, [out["liver"], out["spleen"]])
    return out


def _grow_into(organ: np.ndarray, sm: np.ndarray, neighbours: list[np.ndarray]) -> np.ndarray:
    """Move ``organ``'s border with each brighter neighbour organ to the midpoint of their median HU (its range
    was cut halfway to plain soft tissue, which is too early against a brighter organ)."""
    if not organ.any():
        return organ
    level = float(np.median(sm[organ]))
    ring = ndi.binary_dilation(organ, _SLICE, iterations=3) & ~organ
    grown = organ.copy()
    for other in neighbours:
        near = ring & ndi.binary_dilation(other, _SLICE, iterations=3)
        if near.any():
            grown |= near & (sm < (level + float(np.median(sm[other]))) / 2)
    return _tidy(grown, (3, 3, 1))


def _mr(img: np.ndarray, prompts: set[str]) -> dict[str, np.ndarray]:
    sm = ndi.gaussian_filter(img, (1.0, 1.0, 0.0))
    head = _fill_slices(_largest(sm > 0.25 * float(np.percentile(sm, 99.5))))
    hist, edges = np.histogram(sm[head], bins=256)
    mode = float(edges[np.argmax(hist)] + (edges[1] - edges[0]) / 2)
    rel = sm / max(mode, 1e-6)
    enhancing = _largest(head & (rel > 1.47))
    core = _fill_slices(ndi.binary_fill_holes(enhancing)) if enhancing.any() else enhancing
    necrotic = core & ~enhancing & (rel < 1.095)
    core = core & (enhancing | necrotic)
    near = ndi.binary_dilation(core, iterations=2)
    shell = head & ~core & (rel > 1.095) & (rel <= 1.47)
    labels, _ = ndi.label(shell)
    touching = np.unique(labels[near & shell])
    edema = np.isin(labels, touching[touching > 0]) if core.any() else np.zeros_like(core)
    return {"tumor core": core, "enhancing tumor": enhancing, "non-enhancing tumor": necrotic,
            "edema": _fill_slices(edema | core) & ~core}


def _hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of a 2D mask (the mask itself when it is degenerate)."""
    points = np.argwhere(mask)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return mask
    canvas = Image.new("1", (mask.shape[1], mask.shape[0]))
    ImageDraw.Draw(canvas).polygon([(float(c), float(r)) for r, c in points[hull.vertices]], fill=1)
    return np.asarray(canvas, dtype=bool) | mask


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
    m1 = (np.sum(hist * mids) - np.cumsum(hist * mids)) / np.maximum(w1, 1)
    return float(mids[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def _planar(img: np.ndarray) -> dict[str, np.ndarray]:
    sm = ndi.gaussian_filter(img, 2.0)
    dense = sm > _otsu(sm)
    body = ndi.binary_fill_holes(dense)
    dark = ndi.binary_opening(body & ~dense, iterations=2)
    labels, n = ndi.label(dark)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, dtype=int)
    fields = np.zeros(img.shape, dtype=bool)  # what is seen of the lungs (nodules filled in)
    lungs = np.zeros(img.shape, dtype=bool)
    for i in np.argsort(-sizes)[:2]:
        if sizes[i] >= 0.2 * sizes.max():
            field = ndi.binary_fill_holes(labels == i + 1)
            fields |= field
            lungs |= _hull(field)
    tissue = sm[dense & ~lungs]
    soft, bone = (float(np.median(tissue)), float(np.percentile(tissue, 99))) if tissue.size else (0.0, 0.0)
    band = dense & ~fields & (sm > soft + 0.25 * (bone - soft)) & (sm < soft + 0.75 * (bone - soft))
    labels, n = ndi.label(ndi.binary_opening(band, iterations=2))
    heart = np.zeros(img.shape, dtype=bool)
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        cols = img.shape[1]
        for i in np.flatnonzero(sizes >= 0.1 * sizes.max()):
            part = labels == i + 1
            if abs(np.argwhere(part)[:, 1].mean() - cols / 2) < cols / 4:
                heart |= part
    return {"lung": lungs, "heart": _hull(heart) if heart.any() else heart}


class LocalSegmenter:
    """Classical segmentation of the phantom-like anatomy the synthetic generator draws (see module doc)."""

    name = "local"
    version = "classical-1"

    def segment(self, volume: np.ndarray, spacing_mm: Sequence[float], prompts: Sequence[str]) -> dict[str, Outcome]:
        data = np.asarray(volume, dtype=np.float32)
        if data.ndim not in (2, 3) or len(spacing_mm) != data.ndim or data.size == 0 or np.ptp(data) == 0:
            return dict.fromkeys(prompts, UNSUPPORTED)
        is_ct = float(data.min()) <= -500
        if data.ndim == 2:
            served, run = (() if is_ct else CXR_PROMPTS), (lambda: _planar(data))
        elif is_ct:
            served, run = CT_PROMPTS, (lambda: _ct(data, spacing_mm, set(prompts)))
        else:
            served, run = MR_PROMPTS, (lambda: _mr(data, set(prompts)))
        masks = run() if any(p in served for p in prompts) else {}
        return {p: Mask(masks[p].astype(bool)) if p in served and p in masks else UNSUPPORTED for p in prompts}
