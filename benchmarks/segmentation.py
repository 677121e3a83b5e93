"""Segmentation figures (issue 10, items 6 and 9), the "segmentation" part of ``python -m benchmarks.run``:
the local backend's Dice per organ on real CT with reference masks, next to a threshold + largest-component
baseline and the issue's goals, and local segmentation seconds per 100 CT slices (synthetic 512² and real).

Real cases (hca_assets_tests/data/real/PROVENANCE.md), both from the totalsegmentator 2.18.0 sdist (Apache-2.0),
whose reference masks are TotalSegmentator's own predictions:
A. its abdominal NIfTI test CT (3 mm, no contrast; committed); A′. the whole abdomen–pelvis CT that A was cut from
(scored on A's slices); B. its 20-slice 512² contrast CT in DICOM with liver and spleen masks. A′ and B come from
the sdist, downloaded once with pip into ``CACHE`` and checked against its sha256.
Both go through the pipeline's path: a NIfTI (B: ``standalone.load_input`` → ``build_volume``) → ``to_canonical``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from hca_assets.evaluation.segmentation import Score, score
from hca_assets.segmentation.base import Mask, to_canonical
from hca_assets.segmentation.local import LocalSegmenter
from hca_assets.segmentation.standalone import load_input
from hca_assets.synthetic.phantoms import ct_volume

SECTION = "## Segmentation (issue 10: local backend on real CT, seconds per 100 slices)"
REAL_DIR = Path(__file__).parents[1] / "hca_assets_tests" / "data" / "real"
CACHE = Path.home() / ".cache" / "hca_assets" / "benchmarks"
SDIST = "totalsegmentator==2.18.0"
SDIST_FILE = "totalsegmentator-2.18.0.tar.gz"
SDIST_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
CASE_B = "totalsegmentator-2.18.0/tests/reference_files/"
GOALS = {"lung": 0.95, "liver": 0.85, "spleen": 0.75, "right kidney": 0.75, "left kidney": 0.75}
# TotalSegmentator `total` class numbers (totalsegmentator/map_to_binary.py)
LABELS = {"liver": (5,), "spleen": (1,), "right kidney": (2,), "left kidney": (3,), "lung": (10, 11, 12, 13, 14)}
BASELINE_HU = {"liver": (40, 160), "spleen": (35, 160), "right kidney": (20, 250), "left kidney": (20, 250)}


@dataclass(frozen=True)
class Case:
    name: str
    volume: np.ndarray  # RAS+ canonical HU
    spacing: tuple[float, ...]
    truth: dict[str, np.ndarray]  # prompt → reference mask on the same grid (organs present in the reference)
    first: int = 0  # the first slice (last axis) the reference covers


def _canonical_labels(image: nib.Nifti1Image, seg: nib.Nifti1Image) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """CT and label map on one RAS+ grid (refused unless their canonical grids agree within 1e-3 mm)."""
    ct_grid, seg_grid = nib.as_closest_canonical(image), nib.as_closest_canonical(seg)
    if ct_grid.shape[:3] != seg_grid.shape[:3] or not np.allclose(ct_grid.affine, seg_grid.affine, atol=1e-3):
        raise ValueError("reference masks are not on the CT's grid")
    volume, spacing = to_canonical(nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine))
    labels, _ = to_canonical(seg)
    return volume, spacing, labels


def _case(name: str, image: nib.Nifti1Image, seg: nib.Nifti1Image, first: int = 0) -> Case:
    """A named case on its RAS+ grid; the name gains the grid's size and spacing."""
    volume, spacing, labels = _canonical_labels(image, seg)
    truth = {p: mask for p, v in LABELS.items() if (mask := np.isin(labels, v)).any()}
    grid = f"{'×'.join(map(str, volume.shape))} voxels of {'×'.join(f'{s:.2g}' for s in spacing)} mm"
    return Case(f"{name}, {grid}", volume, spacing, truth, first)


def _sdist_files() -> Path:
    """The sdist's tests/reference_files/ (the files cases A′ and B need), extracted in CACHE; the sdist is
    downloaded with pip once and checked against its sha256."""
    files = CACHE / CASE_B
    wanted = ("example_ct.nii.gz", "example_seg_dicom.nii.gz", "example_ct_dicom/")
    if all((files / name).exists() for name in wanted):
        return files
    tarball = CACHE / SDIST_FILE
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", SDIST,
                        "-d", str(CACHE)], check=True)
    if hashlib.sha256(tarball.read_bytes()).hexdigest() != SDIST_SHA256:
        raise ValueError(f"{SDIST_FILE} differs from the recorded sha256")
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and any(m.name.startswith(CASE_B + w) for w in wanted)]
        tar.extractall(CACHE, members=members, filter="data")
    return files


def _whole_of_a(files: Path, ct: nib.Nifti1Image, seg: nib.Nifti1Image) -> Case:
    """Case A′: the sdist's 112-slice abdomen–pelvis CT whose top slices are case A voxel for voxel (checked), so
    the reference covers those slices only; segmented whole, scored there."""
    whole = nib.load(files / "example_ct.nii.gz")
    data, top = np.asarray(whole.dataobj), whole.shape[2] - ct.shape[2]
    if nib.aff2axcodes(whole.affine) != ("R", "A", "S") or not np.array_equal(data[:, :, top:], np.asarray(ct.dataobj)):
        raise ValueError("case A is not the top of the sdist's example_ct.nii.gz")
    labels = np.zeros(whole.shape, dtype=np.uint8)
    labels[:, :, top:] = np.asarray(seg.dataobj)
    return _case("A′: the whole abdomen–pelvis CT that A is the top of (scored on A's slices; NIfTI)", whole,
                 nib.Nifti1Image(labels, whole.affine), top)


def real_cases() -> list[Case]:
    """Case A (committed NIfTI), A′ (its whole volume) and B (a DICOM series, read as the pipeline reads one)."""
    ct, seg = nib.load(REAL_DIR / "totalsegmentator_example_ct_sm.nii.gz"), nib.load(REAL_DIR / "totalsegmentator_example_seg.nii.gz")
    files = _sdist_files()
    b = _case("B: upper abdomen, contrast (DICOM)", load_input(files / "example_ct_dicom").image,
              nib.load(files / "example_seg_dicom.nii.gz"))
    return [_case("A: abdomen, no contrast (NIfTI)", ct, seg), _whole_of_a(files, ct, seg), b]


def _largest(mask: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` whose centroid lies in ``where``."""
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    centroids = ndi.center_of_mass(mask, labels, range(1, n + 1))
    for i in np.argsort(-sizes):
        if where[tuple(round(c) for c in centroids[i])]:
            return labels == i + 1
    return np.zeros(mask.shape, dtype=bool)


def threshold_baseline(hu: np.ndarray, prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """Textbook HU windows (lung < -400; liver 40–160, spleen 35–160, kidney 20–250) on a lightly smoothed CT, then
    the largest component on the organ's side (kidneys: posterior half), in order liver, spleen, kidneys."""
    sm = ndi.gaussian_filter(hu, 1.0)
    body = ndi.binary_fill_holes(_largest(sm > -500, np.ones(hu.shape, dtype=bool)))
    x, y = np.indices(hu.shape[:2])
    centre = np.argwhere(body).mean(axis=0)
    right = np.broadcast_to((x > centre[0])[..., None], hu.shape)
    posterior = np.broadcast_to((y < centre[1])[..., None], hu.shape)
    air = (sm < -400) & body
    lungs = _largest(air, right) | _largest(air, ~right)
    out = {"lung": lungs}
    taken = lungs.copy()
    for prompt, where in (("liver", right), ("spleen", ~right), ("right kidney", right & posterior),
                          ("left kidney", ~right & posterior)):
        lo, hi = BASELINE_HU[prompt]
        out[prompt] = _largest((sm > lo) & (sm < hi) & body & ~taken, where)
        taken |= out[prompt]
    return {p: out[p] for p in prompts}


def _local(volume: np.ndarray, spacing: Sequence[float], prompts: Sequence[str]) -> dict[str, np.ndarray]:
    out = LocalSegmenter().segment(volume, spacing, list(prompts))
    return {p: o.mask if isinstance(o, Mask) else np.zeros(volume.shape, dtype=bool) for p, o in out.items()}


def _fmt(s: Score) -> str:
    hd = "–" if s.hd95_mm is None else f"{s.hd95_mm:.1f}"
    return f"{s.dice:.3f} | {hd}"


def dice_rows(cases: Sequence[Case]) -> list[str]:
    rows = ["| case | organ | goal | local Dice | local HD95 mm | baseline Dice | baseline HD95 mm | local meets goal |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for case in cases:
        prompts = list(case.truth)
        local, base = _local(case.volume, case.spacing, prompts), threshold_baseline(case.volume, prompts)
        z = slice(case.first, None)
        for p in prompts:
            sl = score(local[p][..., z], case.truth[p][..., z], case.spacing, p, "reference")
            sb = score(base[p][..., z], case.truth[p][..., z], case.spacing, p, "reference")
            rows.append(f"| {case.name.split(':', 1)[0]} | {p} | {GOALS[p]:.2f} | {_fmt(sl)} | {_fmt(sb)} | "
                        f"{'yes' if sl.dice >= GOALS[p] else '**no**'} |")
    return rows


def _ras(a: np.ndarray) -> np.ndarray:
    """Phantom (z, y, x), x to the patient's left and y posterior → the protocol's RAS+ (x, y, z)."""
    return np.ascontiguousarray(a.transpose(2, 1, 0)[::-1, ::-1, :])


def seconds_per_100_slices(volume: np.ndarray, spacing: Sequence[float], repeats: int) -> float:
    """Best-of-``repeats`` wall time of the local backend on every CT prompt, scaled to 100 slices."""
    prompts = ["lung", "liver", "spleen", "left kidney", "right kidney", "lesion"]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        LocalSegmenter().segment(volume, spacing, prompts)
        times.append(time.perf_counter() - start)
    return min(times) * 100 / volume.shape[2]


def bench_segmentation(repeats: int = 3) -> list[str]:
    """The section's lines: Dice per organ (local vs baseline vs goal) on the real cases, synthetic Dice, speed."""
    cases = real_cases()
    phantom = ct_volume(np.random.default_rng(2), slices=48, size=512, lesion=True)
    syn_spacing = (380 / 512, 380 / 512, 2.5)
    syn = Case("synthetic", _ras(phantom.pixels).astype(np.float32), syn_spacing,
               {"lung": _ras(phantom.masks["lung_right"] | phantom.masks["lung_left"]), "liver": _ras(phantom.masks["liver"]),
                "spleen": _ras(phantom.masks["spleen"]), "right kidney": _ras(phantom.masks["kidney_right"]),
                "left kidney": _ras(phantom.masks["kidney_left"])})
    syn_local = _local(syn.volume, syn.spacing, list(syn.truth))
    syn_dice = ", ".join(f"{p} {score(syn_local[p], t, syn.spacing, p).dice:.3f}" for p, t in syn.truth.items())
    speed = [("synthetic 512² (generator phantom, 48 slices)", syn.volume, syn.spacing)]
    speed += [(c.name, c.volume, c.spacing) for c in cases]
    lines = [SECTION, "",
             f"Local backend `{LocalSegmenter.version}` (`hca_assets/segmentation/local.py`) against reference organ masks "
             "on real CTs of two patients from the totalsegmentator 2.18.0 sdist (Apache-2.0; the reference masks are "
             "**TotalSegmentator's own predictions**, not manual annotations — `hca_assets_tests/data/real/PROVENANCE.md`):",
             *(f"- {c.name}" for c in cases),
             "",
             "Baseline: textbook HU window per organ on a σ = 1 voxel smoothed CT + the largest connected component on "
             "the organ's side (kidneys: posterior half). Dice and HD95 from `hca_assets/evaluation/segmentation.py`; "
             "goals from issue 10. Only organs present in a case's reference are scored (B has liver and spleen).",
             "", *dice_rows(cases), "",
             f"Synthetic (generator phantom seed 2, 512²×48, the `test_local.py` case): {syn_dice}.",
             "", "Local segmentation speed (every CT prompt; best of "
             f"{repeats}; one process):", "", "| volume | s per 100 slices |", "|---|---:|"]
    lines += [f"| {name} | {seconds_per_100_slices(v, s, repeats):.1f} |" for name, v, s in speed]
    return [*lines, "", f"Load average when done: {os.getloadavg()[0]:.1f} (2 cores; times are wall-clock).", ""]


if __name__ == "__main__":
    print("\n".join(bench_segmentation()))
