"""Segment one input outside the pipeline (``hca segment``): a DICOM series folder, one DICOM file (a planar
image) or a NIfTI volume → a NIfTI mask per structure on the input's grid, a DICOM SEG for DICOM input, and
each structure's volume (mL) or area (mm²).

The output folder is only ever written if it is empty or holds nothing but an earlier run's files, listed in
its ``.hca-segment`` marker: files this module did not create are never overwritten or deleted.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from hca_assets.dicom.volumes import build_volume
from hca_assets.segmentation.backends import code_version
from hca_assets.segmentation.base import UNSUPPORTED, Segmenter, from_canonical, planar_pixels, to_canonical
from hca_assets.segmentation.export import (
    planar_affine,
    planar_grid,
    volume_to_frames,
    write_nifti,
    write_seg,
)
from hca_assets.segmentation.measure import Measurement, measure
from hca_assets.segmentation.strategies import pick_strategy, structure

__all__ = ["MARKER", "InputError", "Loaded", "SegmentResult", "StructureResult", "load_input", "segment_input"]

MARKER = ".hca-segment"
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


class InputError(ValueError):
    """A user mistake (input, prompt, backend or output folder), explained in one line without a traceback."""


@dataclass(frozen=True)
class Loaded:
    """An input ready to segment: a NIfTI ``image`` (3D) or a planar ``ds``; ``source`` are the DICOM instances
    a SEG references, in the masks' frame order (empty for NIfTI input)."""

    kind: str  # "volume" | "planar"
    modality: str | None
    body_part: str | None
    image: nib.Nifti1Image | None
    source: list[Dataset]


def _read(path: Path) -> Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError):
            return None


def _planar(ds: Dataset) -> Loaded:
    return Loaded("planar", str(ds.get("Modality", "")) or None, ds.get("BodyPartExamined"), None, [ds])


def load_input(path: Path) -> Loaded:
    """Read a NIfTI volume, one DICOM file (planar) or a folder holding one DICOM series (a volume, or planar
    if it has a single instance); :class:`InputError` for anything else."""
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_file() and path.name.lower().endswith(_NIFTI_SUFFIXES):
        try:
            image = nib.load(path)
        except Exception as exc:  # nibabel raises many types for a broken file
            raise InputError(f"{path.name} is not a readable NIfTI volume ({type(exc).__name__})") from exc
        if len(image.shape) != 3 or min(image.shape) < 2:
            raise InputError(f"{path.name}: a NIfTI input must be a 3D volume, got shape {tuple(image.shape)}")
        return Loaded("volume", None, None, nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine),
                      [])
    if path.is_file():
        ds = _read(path)
        if ds is None or "PixelData" not in ds:
            raise InputError(f"{path.name} is neither a DICOM image nor a NIfTI volume (.nii, .nii.gz)")
        return _planar(ds)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink() and not p.name.startswith("."))
    slices = [ds for ds in map(_read, files) if ds is not None and "PixelData" in ds]
    if not slices:
        raise InputError(f"no DICOM image in {path}")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in slices}
    if len(series) > 1:
        raise InputError(f"{path} holds {len(series)} DICOM series: give the folder of one series")
    if len(slices) == 1:
        return _planar(slices[0])
    if any("ImageOrientationPatient" not in ds or "ImagePositionPatient" not in ds for ds in slices):
        raise InputError(f"{path}: the series' images lack the patient geometry a volume needs")
    try:
        volume = build_volume(slices)
    except (ValueError, AttributeError) as exc:
        raise InputError(f"{path} is not one regular volume: {exc}") from exc
    except Exception as exc:  # pixel decoding (missing codec, truncated data) raises many types
        raise InputError(f"{path}: the images' pixels cannot be decoded ({type(exc).__name__})") from exc
    by_uid = {str(ds.SOPInstanceUID): ds for ds in slices}
    first = slices[0]
    return Loaded("volume", str(first.get("Modality", "")) or None, first.get("BodyPartExamined"), volume.image,
                  [by_uid[u] for u in volume.sop_instance_uids])


@dataclass(frozen=True)
class StructureResult:
    prompt: str
    structure: str
    measurement: Measurement
    path: Path


@dataclass(frozen=True)
class SegmentResult:
    """What ``segment_input`` wrote: per structure its measurement and NIfTI, and the SEG for DICOM input."""

    kind: str
    structures: list[StructureResult]
    seg_path: Path | None
    seg_skipped: str | None = None  # why DICOM input got no SEG (one line), e.g. empty UIDs in the source


def _prompts(loaded: Loaded, prompts: Sequence[str]) -> tuple[str, ...]:
    if not prompts:
        if loaded.modality is None:
            raise InputError("a NIfTI volume names no modality: choose the structures with --prompt")
        prompts = pick_strategy(loaded.modality, loaded.body_part).prompts
        if not prompts:
            raise InputError(f"no default prompts for {loaded.modality} (body part {loaded.body_part or 'unknown'}): "
                             "choose the structures with --prompt")
    for p in prompts:
        try:
            structure(p)
        except KeyError:
            raise InputError(f"unknown prompt `{p}`") from None
    return tuple(dict.fromkeys(prompts))


def _owned(out: Path) -> list[str]:
    """The files an earlier run wrote into ``out`` (from its marker); :class:`InputError` if ``out`` holds
    anything else, so nothing foreign is ever overwritten."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"--out {out} is not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.exists() else []
    if not entries:
        return []
    marker = out / MARKER
    try:
        owned = [str(n) for n in json.loads(marker.read_text())["files"]] if marker.is_file() and not marker.is_symlink() else None
    except (ValueError, KeyError, TypeError, OSError):
        owned = None
    if owned is None or not set(entries) <= {MARKER, *owned}:
        raise InputError(f"--out {out} is not empty and was not written by `hca segment`: choose an empty or new folder")
    return [n for n in owned if n in entries]  # only names found in the folder: a marker cannot point outside it


def _mark(out: Path, files: Sequence[str]) -> None:
    tmp = out / f"{MARKER}.tmp"
    tmp.write_text(json.dumps({"written_by": "hca segment", "files": sorted(set(files))}) + "\n")
    tmp.replace(out / MARKER)


def segment_input(path: Path, out: Path, prompts: Sequence[str], segmenter: Segmenter) -> SegmentResult:
    """Segment ``path`` with ``prompts`` (none: its strategy's) into ``out``. Raises :class:`InputError` for a
    user mistake, including a prompt the backend cannot serve on this input; then nothing is written."""
    owned = _owned(out)
    loaded = load_input(path)
    chosen = _prompts(loaded, prompts)
    if loaded.kind == "volume":
        assert loaded.image is not None
        canonical, spacing = to_canonical(loaded.image)
        outcomes = segmenter.segment(canonical, spacing, chosen)
        affine = loaded.image.affine
        measured: Sequence[float] | None = tuple(float(z) for z in loaded.image.header.get_zooms()[:3])
    else:
        try:
            pixels, measured = planar_pixels(loaded.source[0])
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        except Exception as exc:  # pixel decoding (missing codec, truncated data) raises many types
            raise InputError(f"the image's pixels cannot be decoded ({type(exc).__name__})") from exc
        outcomes = segmenter.segment(pixels, measured or (1.0, 1.0), chosen)
        affine = planar_affine(measured)  # type: ignore[arg-type]
    refused = [p for p in chosen if outcomes[p] is UNSUPPORTED]
    if refused:
        what = f"{loaded.modality or 'NIfTI'} {'volume' if loaded.kind == 'volume' else 'planar image'}"
        raise InputError(f"backend `{segmenter.name}` cannot segment {', '.join(f'`{p}`' for p in refused)} "
                         f"on this {what}")
    grids = {p: from_canonical(o.mask, loaded.image) if loaded.image is not None else o.mask  # type: ignore[union-attr]
             for p, o in outcomes.items()}
    seg_skipped = _seg_refusal(loaded.source) if loaded.source else None
    names = [f"{structure(p).name}.nii.gz" for p in chosen] + (["seg.dcm"] if loaded.source and not seg_skipped else [])
    out.mkdir(parents=True, exist_ok=True)
    _mark(out, [*owned, *names])  # claimed before written: an interrupted run leaves a folder it may reuse
    for name in owned:
        (out / name).unlink(missing_ok=True)
    results = []
    for p in chosen:
        grid = grids[p]
        target = out / f"{structure(p).name}.nii.gz"
        write_nifti(grid if grid.ndim == 3 else planar_grid(grid), affine, target)
        results.append(StructureResult(p, structure(p).name, measure(grid, measured), target))
    seg_path = None
    if loaded.source and not seg_skipped:
        frames = {p: volume_to_frames(g) if g.ndim == 3 else g[np.newaxis] for p, g in grids.items()}
        try:
            seg_path = write_seg(loaded.source, frames, out / "seg.dcm", algorithm=f"hca_assets {segmenter.name}",
                                 version=code_version(segmenter))
        except Exception as exc:  # noqa: BLE001 - highdicom refuses sources in many ways; the masks stand
            (out / "seg.dcm").unlink(missing_ok=True)
            seg_skipped = f"the DICOM SEG cannot be built from this source ({type(exc).__name__})"
            names.remove("seg.dcm")
    _mark(out, names)
    return SegmentResult(loaded.kind, results, seg_path, seg_skipped)


_SEG_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def _seg_refusal(source: Sequence[Dataset]) -> str | None:
    """Why no SEG can reference ``source`` (a SEG names its source instances by UID), or None."""
    empty = sorted({kw for ds in source for kw in _SEG_UIDS if not str(ds.get(kw, "") or "").strip()})
    return f"the source has empty {', '.join(empty)}: a SEG must reference it by UID" if empty else None
