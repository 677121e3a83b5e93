"""The weight-free default segmenter: classical intensity ranges, connected components, anatomical position
priors and morphology. No model, no network, deterministic.

- CT (recognised by outside air at <= -500 HU): body = largest non-air component; lungs = air inside the body
  that looks like parenchyma (not mostly pure air, as bowel gas is), the one or two largest plus nearby basal
  islands. Abdominal organs come from a soft-tissue-only smoothed image (normalised convolution, so fat, air and
  bone never bleed into organ boundaries) with HU levels measured on each volume, so contrast phase and scanner
  calibration matter less: tissue = the paraspinal muscles' median, liver level = the most common soft tissue on
  the patient's right ≥ 8 HU above it. Each organ is a range between those levels, cut from touching neighbours by
  an in-plane erosion (5 mm; kidneys 4 mm), its part passing a position prior kept and regrown: liver = above
  tissue + 40% of the step to the liver level, on the right; lesion = voxels of the liver's closed outline deviating
  from the liver's median HU; spleen = above tissue + 15% of the step, over 1 cm from bowel gas (stomach and colon
  touch it), on the left, below the lungs, at the liver's levels; kidneys = below tissue (−105% to −17% of the
  step), posterior on each side, centred at most 2 cm below the liver, their border with liver or spleen moved to
  the HU midpoint. Each mask is smoothed by a majority filter (±2.2 mm) and hole-filled.
- Brain MR (any other 3D input): intensities relative to the brain's modal intensity; enhancing tumour =
  the largest bright component, tumour core = its filled outline, non-enhancing tumour = core minus
  enhancing, edema = the mildly hyperintense shell touching the core.
- Planar (2D) radiographs: lungs = dark regions inside the body (each lung's convex hull, so the
  retrocardiac lung counts), heart = the central band between soft tissue and bone (its convex hull).

Limits: reaches the synthetic phantoms' goals; on real CT (TotalSegmentator's test cases, benchmarks/RESULTS.md)
the liver's and kidneys' goals, the spleen's only where HU separates it from the stomach (with contrast), lung bases
below 0.95 Dice. The kidney range assumes no contrast (an enhancing kidney is brighter than it: not found); pathology,
bowel touching organs and unusual anatomy defeat HU ranges.
A prompt outside these lists, a 2D CT slice or a 3D CT prompt on MR (and the reverse) is ``UNSUPPORTED``, never a
guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from hca_assets.segmentation.base import UNSUPPORTED, Mask, Outcome, looks_like_ct, well_formed

__all__ = ["CT_PROMPTS", "CXR_PROMPTS", "MR_PROMPTS", "LocalSegmenter"]

CT_PROMPTS = ("liver", "spleen", "left kidney", "right kidney", "lung", "lesion")
MR_PROMPTS = ("tumor core", "enhancing tumor", "non-enhancing tumor", "edema")
CXR_PROMPTS = ("lung", "heart")

_SMOOTH = (2.0, 2.0, 0.5)  # voxels: noise down ~10×, boundaries kept (slices are thick)
_MAJORITY_MM = 2.2  # in-plane half-width of the majority filter that smooths an organ's outline
_KIDNEY_CUT_MM = 4.0
_GAS_MARGIN_MM = 10.0  # the spleen is no closer to bowel gas than this (the stomach and colon touch it)
_CUT_MM = 5.0  # liver and spleen: bridges to neighbours thinner than 1 cm are cut
_SLICE = np.zeros((3, 3, 3), dtype=bool)
_SLICE[:, :, 1] = ndi.generate_binary_structure(2, 1)


def _largest(mask: np.ndarray, keep: Callable[[np.ndarray], bool] = lambda _: True) -> np.ndarray:
    """The largest connected component of ``mask`` whose voxel indices (n, ndim) pass ``keep``."""
    labels, n = ndi.label(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if n == 0:
        return out
    sizes = np.bincount(labels.ravel())[1:]
    boxes = ndi.find_objects(labels)
    for idx in np.argsort(-sizes):
        box = boxes[idx]
        component = labels[box] == idx + 1
        if keep(np.argwhere(component) + [b.start for b in box]):
            out[box] = component
            return out
    return out


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    """Holes filled within each axial slice (structures open at the top or bottom slice included)."""
    return ndi.binary_fill_holes(mask, structure=_SLICE)


def _local(op: Callable[[np.ndarray], np.ndarray], mask: np.ndarray, margin: Sequence[int]) -> np.ndarray:
    """``op`` applied to ``mask``'s bounding box grown by ``margin`` voxels per axis (where the rest of the array is
    False and ``op`` cannot reach: the same result, at a fraction of the cost)."""
    out = np.zeros(mask.shape, dtype=bool)
    box = []
    for axis, m in enumerate(margin):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return out
        box.append(slice(max(int(hit[0]) - m, 0), int(hit[-1]) + m + 1))
    out[tuple(box)] = op(mask[tuple(box)])
    return out


def _tidy(mask: np.ndarray, majority: tuple[int, ...]) -> np.ndarray:
    """Majority-filter the outline (random boundary noise averages out), keep the largest part, fill holes."""
    smooth = _local(lambda m: ndi.uniform_filter(m.astype(np.float32), majority) > 0.5, mask, majority)
    return _fill_slices(_largest(smooth)) if smooth.any() else smooth


def _close(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Morphological closing with a ball of ``radius_mm`` (via distance transforms: cost independent of radius)."""
    def closing(m: np.ndarray) -> np.ndarray:
        grown = ndi.distance_transform_edt(~m, sampling=spacing) <= radius_mm
        return ndi.distance_transform_edt(grown, sampling=spacing) > radius_mm

    return _local(closing, mask, [int(radius_mm / s) + 2 for s in spacing])


def _lesion(sm: np.ndarray, soft: np.ndarray, liver: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Regions of the liver's closed outline ≥ 30 HU below or ≥ 15 HU above the liver's median, mostly walled
    by liver; their edge is then set halfway between liver and lesion HU, near the detected core only."""
    level = float(np.median(sm[liver]))
    labels, n = ndi.label(outline & soft & ((sm < level - 30) | (sm > level + 15)))
    lesion = np.zeros_like(liver)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if sizes[i] < 20:
            continue
        grown = tuple(slice(max(b.start - 3, 0), b.stop + 3) if k < 2 else b for k, b in enumerate(box))  # in-plane
        core = labels[grown] == i
        shell = ndi.binary_dilation(core, _SLICE, iterations=2) & ~core
        if liver[grown][shell].mean() < 0.4:
            continue
        local = sm[grown]
        inner = float(np.median(local[core & soft[grown]])) if (core & soft[grown]).any() else level - 60
        edge = (level + inner) / 2
        near = ndi.binary_dilation(core, _SLICE, iterations=3) & outline[grown]
        lesion[grown] |= near & ((local < edge) if inner < level else (local > edge))
    return _tidy(lesion, (5, 5, 1)) if lesion.any() else lesion


def _lungs(hu: np.ndarray, body: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Air inside the body whose components look like lung parenchyma — under a quarter of their voxels below
    -950 HU (bowel gas is mostly pure air) — the one or two largest if the largest is ≥ 0.5% of the body or
    10 mL, plus parenchyma islands (under 5% pure air, ≥ 0.05% of the body or 1 mL) within 15 mm of them (bases
    cut apart by the diaphragm), then the thin rims the opening took back."""
    air = (hu < -400) & body
    labels, n = ndi.label(ndi.binary_opening(air, _SLICE))
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n + 1)[1:]
    share = sizes / max(int(body.sum()), 1)
    pure = np.bincount(flat, weights=(hu < -950).ravel(), minlength=n + 1)[1:] / np.maximum(sizes, 1)
    big = np.where(pure < 0.25, sizes, 0)
    largest = int(np.argmax(big))
    enough = share[largest] >= 0.005 or sizes[largest] * float(np.prod(spacing)) >= 10_000  # or ≥ 10 mL
    order = [i + 1 for i in np.argsort(-big)[:2] if big[i] > 0 and big[i] >= 0.2 * big[largest] and enough]
    lungs = np.isin(labels, order)
    if order:
        near = _grow(lungs, 15.0, spacing)
        touching = np.bincount(flat, weights=near.ravel(), minlength=n + 1)[1:] > 0
        islands = touching & (pure < 0.05) & ((share >= 0.0005) | (sizes * float(np.prod(spacing)) >= 1000))
        lungs |= np.isin(labels, np.flatnonzero(islands) + 1)
        lungs |= _local(lambda m: ndi.binary_dilation(m, _SLICE, iterations=2), lungs, (2, 2, 0)) & air  # thin rims
    return _fill_slices(lungs)


def _upper_abdomen(lungs: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The slices where the liver can be (a (1, 1, z) mask): from 15 cm below the lungs' lowest slice to 8 cm
    above it; the top 15 cm of the volume when it holds no lung."""
    z = np.arange(lungs.shape[2])
    floor = np.flatnonzero(lungs.any(axis=(0, 1)))
    lowest = floor[0] if floor.size else lungs.shape[2] - 1
    return ((z >= lowest - 100 / spacing[2]) & (z <= lowest + 80 / spacing[2]))[None, None, :]


def _mode(values: np.ndarray) -> float | None:
    """The most common value of a smoothed-HU sample within [-30, 150) HU (2 HU bins, lightly smoothed)."""
    hist, edges = np.histogram(values, bins=90, range=(-30, 150))
    if not hist.any():
        return None
    return float(edges[int(np.argmax(ndi.gaussian_filter1d(hist.astype(float), 1.5)))] + 1)


def _levels(hu: np.ndarray, sm: np.ndarray, soft: np.ndarray, body: np.ndarray, right: np.ndarray,
            spacing: Sequence[float]) -> tuple[float, float]:
    """(tissue, liver) HU levels. Tissue: the paraspinal muscles' median (soft tissue behind the spine's middle,
    within 6 cm of its midline), else the body's most common soft tissue. Liver: the most common soft tissue on
    the patient's right at least 8 HU brighter than that (the liver is the largest organ there)."""
    tissue = None
    bone = np.argwhere((hu > 250) & body)
    if len(bone):
        mid = np.median(bone, axis=0)
        spine = bone[np.abs(bone[:, 0] - mid[0]) < 0.1 * np.ptp(bone[:, 0]) + 1]
        x = np.arange(hu.shape[0])[:, None, None]
        y = np.arange(hu.shape[1])[None, :, None]
        muscle = soft & (y < np.median(spine[:, 1])) & (np.abs(x - np.median(spine[:, 0])) * spacing[0] < 60)
        if muscle.sum() >= 100:
            tissue = float(np.median(sm[muscle]))
    if tissue is None:
        tissue = _mode(sm[soft]) or 40.0
    values = sm[soft & right]
    liver = _mode(values[values >= tissue + 8])
    return tissue, liver if liver is not None else tissue + 20


def _box(radius_mm: float, spacing: Sequence[float], slices: int) -> tuple[int, ...]:
    """In-plane, the odd voxel count spanning ±``radius_mm`` per axis; ``slices`` along z (slices are thick)."""
    return (*(2 * round(radius_mm / s) + 1 for s in spacing[:2]), slices)


def _grow(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Dilation by ±``radius_mm`` in-plane and ±1 slice (a separable box: cheap at any radius)."""
    box = _box(radius_mm, spacing, 3)
    return _local(lambda m: ndi.uniform_filter(m.astype(np.float32), box) > 1e-3, mask, box)


def _shrink(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """In-plane erosion by a square of ±``radius_mm``."""
    box = _box(radius_mm, spacing, 1)
    return _local(lambda m: ndi.uniform_filter(m.astype(np.float32), box) > 1 - 1e-3, mask, box)


def _organ(cand: np.ndarray, keep: Callable[[np.ndarray], bool], spacing: Sequence[float],
           erode_mm: float) -> np.ndarray:
    """The largest part of ``cand`` passing ``keep`` once bridges thinner than 2×``erode_mm`` are cut, regrown
    inside ``cand`` by one voxel more than was cut and into the next slices (organs' tips)."""
    seed = _largest(_shrink(cand, erode_mm, spacing), keep)
    if not seed.any():
        return seed
    return _tidy(_largest(cand & _grow(seed, erode_mm + max(spacing[:2]), spacing)), _box(_MAJORITY_MM, spacing, 1))


def _ct(hu: np.ndarray, spacing: Sequence[float], prompts: set[str]) -> dict[str, np.ndarray]:
    body = _fill_slices(_largest(hu > -500))
    lungs = _lungs(hu, body, spacing)
    out: dict[str, np.ndarray] = {"lung": lungs}
    if not prompts - {"lung"}:
        return out
    weight = ndi.binary_opening((hu > -30) & (hu < 150) & body & ~lungs, np.ones((3, 3, 1))).astype(np.float32)
    sm = ndi.gaussian_filter(hu * weight, _SMOOTH) / np.maximum(ndi.gaussian_filter(weight, _SMOOTH), 1e-3)
    soft = weight > 0
    centre = np.argwhere(body).mean(axis=0)
    on_right = (np.arange(hu.shape[0]) > centre[0])[:, None, None]
    tissue, level = _levels(hu, sm, soft & _upper_abdomen(lungs, spacing), body, on_right, spacing)
    lung_floor = np.argwhere(lungs)[:, 2].mean() if lungs.any() else np.inf
    right = lambda idx: idx[:, 0].mean() > centre[0]  # noqa: E731 - axis 0 points to the patient's right
    liver = _organ(soft & (sm > tissue + 0.4 * (level - tissue)) & (sm < level + 40), right, spacing, _CUT_MM)
    outline = _fill_slices(_close(liver, 20.0, spacing)) & body & ~lungs if liver.any() else liver
    lesion = _lesion(sm, soft, liver, outline) if liver.any() else np.zeros_like(liver)
    liver = _fill_slices(liver | lesion)
    out |= {"liver": liver, "lesion": lesion}
    taken = liver | lesion
    step = level - tissue
    levels = np.flatnonzero(liver.any(axis=(0, 1)))  # slices the liver spans: the upper abdomen
    bottom, top = (levels[0], levels[-1]) if levels.size else (-np.inf, np.inf)
    height = lambda idx: idx[:, 2].mean()  # noqa: E731
    gas = _grow((hu < -400) & body & ~lungs, _GAS_MARGIN_MM, spacing)
    out["spleen"] = _organ(soft & ~taken & ~gas & (sm > tissue + 0.15 * step) & (sm < level + 40),
                           lambda idx: not right(idx) and bottom <= height(idx) <= min(top, lung_floor),
                           spacing, _CUT_MM)
    kidneys = soft & ~lesion & ~out["spleen"] & (sm > tissue - 1.05 * step) & (sm < tissue - 0.17 * step)
    posterior = lambda idx: idx[:, 1].mean() < centre[1]  # noqa: E731 - axis 1 points anterior
    reach = 20 / spacing[2]  # a kidney's middle lies at most 2 cm below the liver's lowest slice
    beside_liver = lambda idx: bottom - reach <= height(idx) <= top  # noqa: E731
    for prompt, side in (("right kidney", right), ("left kidney", lambda idx: not right(idx))):
        kidney = _organ(kidneys, lambda idx, side=side: side(idx) and posterior(idx) and beside_liver(idx), spacing,
                        _KIDNEY_CUT_MM)
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
    version = "classical-2"

    def segment(self, volume: np.ndarray, spacing_mm: Sequence[float], prompts: Sequence[str]) -> dict[str, Outcome]:
        data = np.asarray(volume, dtype=np.float32)
        if not well_formed(data, spacing_mm) or np.ptp(data) == 0:
            return dict.fromkeys(prompts, UNSUPPORTED)
        is_ct = looks_like_ct(data)
        if data.ndim == 2:
            served, run = (() if is_ct else CXR_PROMPTS), (lambda: _planar(data))
        elif is_ct:
            served, run = CT_PROMPTS, (lambda: _ct(data, spacing_mm, set(prompts)))
        else:
            served, run = MR_PROMPTS, (lambda: _mr(data, set(prompts)))
        masks = run() if any(p in served for p in prompts) else {}
        return {p: Mask(masks[p].astype(bool)) if p in served and p in masks else UNSUPPORTED for p in prompts}
