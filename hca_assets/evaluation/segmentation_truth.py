"""Stored segmentation masks scored against references brought onto the mask's own grid.

Two references: the synthetic generator's truth (restricted, per series in its own voxel order, keyed by original
UIDs, joined to the pseudonymous slices through the crosswalk in memory, as ``labels`` are), and masks a user
supplies as ``<reference_dir>/<series_instance_uid>/<structure>.nii.gz`` (pseudonymous series UID; for a radiograph
``<series_instance_uid>/<sop_instance_uid>/<structure>.nii.gz``), which must already be on the mask's grid: never
resampled. Radiographs are scored as 2D images (level ``image``). Whatever cannot be scored is a skip with a PHI-free reason.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

from hca_assets.dicom.volumes import volume_order
from hca_assets.evaluation.segmentation import Score, score
from hca_assets.segmentation.strategies import structure

__all__ = ["GRID_ATOL", "SegmentationEval", "evaluate_segmentations", "present_dice", "truth_on_grid"]

GRID_ATOL = 1e-3  # a reference mask's affine may differ from the mask's by this much (mm) and still share its grid


@dataclass(frozen=True)
class SegmentationEval:
    """Scores per (series, structure, reference), and what was skipped: (series, structure, PHI-free reason)."""

    scores: list[tuple[str, Score]]
    skipped: list[tuple[str, str, str]]


def truth_on_grid(masks: Mapping[str, np.ndarray], names: Sequence[str], slice_order: Sequence[int]) -> np.ndarray:
    """The union of the generator's masks ``names`` — (slice, row, column) arrays in its slice order — on
    ``build_volume``'s NIfTI grid (column, row, slice), whose k-th slice is the generator's ``slice_order[k]``.
    A name the generator did not draw (no lesion in this study) adds nothing."""
    shapes = {m.shape for m in masks.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"truth masks must share one 3D shape, got {sorted(shapes)}")
    union = np.zeros(next(iter(shapes)), dtype=bool)
    for name in names:
        if name in masks:
            union |= masks[name].astype(bool)
    return np.ascontiguousarray(union[list(slice_order)].transpose(2, 1, 0))


def present_dice(scores: Sequence[tuple[str, Score]], reference: str = "synthetic_truth") -> dict[str, float]:
    """Mean Dice per structure over the cases whose ``reference`` mask is not empty; radiograph structures are
    named ``<structure> (image)`` so a chest X-ray's lungs do not average with a CT's."""
    by_structure: dict[str, list[float]] = {}
    for _, s in scores:
        if s.reference == reference and s.truth_present:
            name = s.structure if s.level == "series" else f"{s.structure} ({s.level})"
            by_structure.setdefault(name, []).append(s.dice)
    return {name: float(np.mean(values)) for name, values in sorted(by_structure.items())}


def evaluate_segmentations(
    rows: Sequence[Mapping[str, object]],
    instances: Sequence[Mapping[str, object]],
    crosswalk: Sequence[Mapping[str, object]],
    *,
    seg_root: Path,
    deid_root: Path,
    truth_dir: Path | None,
    reference_dir: Path | None,
) -> SegmentationEval:
    """Score every stored mask (``segmentations`` rows with a ``mask_path``: volumes and radiographs) against the
    synthetic truth of its series or image (when the generator made it) and the user's reference (when one exists)."""
    truth = _truth_rows(truth_dir / "instances.jsonl") if truth_dir else {}
    original_of = {str(r["pseudonym"]): str(r["original"]) for r in crosswalk if r["kind"] == "instance"}
    members: dict[str, list[Mapping[str, object]]] = {}
    for i in instances:
        members.setdefault(str(i["series_instance_uid"]), []).append(i)
    series_truth: dict[str, tuple[dict[str, np.ndarray], list[int]] | None] = {}
    scores: list[tuple[str, Score]] = []
    skipped: list[tuple[str, str, str]] = []
    for r in rows:
        if r["status"] != "segmented" or not r["mask_path"]:
            continue
        series, name = str(r["series_instance_uid"]), str(r["structure"])
        image = nib.load(seg_root / str(r["mask_path"]))
        pred = np.asanyarray(image.dataobj) > 0
        spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
        if r["sop_instance_uid"]:  # a radiograph: scored as an image, against the truth of that instance
            sop = str(r["sop_instance_uid"])
            found_row = truth.get(original_of.get(sop, ""))
            if found_row is not None and truth_dir is not None:
                reference = _planar_truth(truth_dir / str(found_row["mask_file"]), structure(str(r["prompt"])).truth)
                pred2d = pred[:, :, 0].T
                if reference.shape == pred2d.shape:
                    scores.append((sop, score(pred2d, reference, (spacing[1], spacing[0]), name)))
                else:
                    skipped.append((sop, name, f"synthetic truth {reference.shape} is not on the mask's grid {pred2d.shape}"))
            path = reference_dir / series / sop / f"{name}.nii.gz" if reference_dir else None
            if path is not None and path.is_file():
                scores += _against_reference(series, name, pred, image, nib.load(path), spacing, skipped)
            continue
        if truth:
            if series not in series_truth:
                series_truth[series] = _synthetic(members.get(series, []), deid_root, original_of, truth, truth_dir)
            found = series_truth[series]
            if found is not None:
                reference = truth_on_grid(found[0], structure(str(r["prompt"])).truth, found[1])
                if reference.shape == pred.shape:
                    scores.append((series, score(pred, reference, spacing, name)))
                else:
                    skipped.append((series, name, f"synthetic truth {reference.shape} is not on the mask's grid {pred.shape}"))
        path = reference_dir / series / f"{name}.nii.gz" if reference_dir else None
        if path is not None and path.is_file():
            scores += _against_reference(series, name, pred, image, nib.load(path), spacing, skipped)
    return SegmentationEval(scores, skipped)


def _against_reference(case: str, name: str, pred: np.ndarray, image: nib.Nifti1Image, ref: nib.Nifti1Image,
                       spacing: tuple[float, ...], skipped: list[tuple[str, str, str]]) -> list[tuple[str, Score]]:
    """The score against a user's reference mask on the mask's own grid; a skip (never a resampling) otherwise."""
    if ref.shape != pred.shape or not np.allclose(ref.affine, image.affine, atol=GRID_ATOL):
        skipped.append((case, name, "reference mask is not on the mask's grid (shape or affine differ); it is not resampled"))
        return []
    return [(case, score(pred, np.asanyarray(ref.dataobj) > 0, spacing, name, "reference"))]


def _planar_truth(npz: Path, names: Sequence[str]) -> np.ndarray:
    """The union of a radiograph's generator masks ``names`` (rows, columns)."""
    with np.load(npz) as masks:
        shape = masks[masks.files[0]].shape
        union = np.zeros(shape, dtype=bool)
        for n in names:
            if n in masks.files:
                union |= masks[n].astype(bool)
    return union


def _truth_rows(path: Path) -> dict[str, dict[str, object]]:
    if not path.is_file():
        return {}
    with path.open() as fh:
        return {row["sop_instance_uid"]: row for row in map(json.loads, fh)}


def _synthetic(members: Sequence[Mapping[str, object]], deid_root: Path, original_of: Mapping[str, str],
               truth: Mapping[str, Mapping[str, object]], truth_dir: Path | None,
               ) -> tuple[dict[str, np.ndarray], list[int]] | None:
    """The generator's masks of a series and, per volume slice, its slice index there; None if not synthetic."""
    rows = [truth.get(original_of.get(str(m["sop_instance_uid"]), "")) for m in members]
    if truth_dir is None or not rows or any(t is None for t in rows):
        return None
    files = {str(t["mask_file"]) for t in rows if t is not None}
    if len(files) != 1:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        headers = [pydicom.dcmread(deid_root / str(m["path"]), stop_before_pixels=True,
                                   specific_tags=["ImageOrientationPatient", "ImagePositionPatient"]) for m in members]
    order = volume_order(headers)
    with np.load(truth_dir / files.pop()) as npz:
        masks = {k: npz[k] for k in npz.files}
    return masks, [int(rows[k]["slice_index"]) for k in order]  # type: ignore[index]
