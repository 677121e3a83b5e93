"""Segment one batch: every 3D series (its NIfTI volume from the images stage) and every planar radiograph,
with the prompts its strategy names. Per series a NIfTI mask per structure on the source grid and one DICOM
SEG referencing the de-identified source instances; one ``segmentations`` row per structure.
:func:`run_segmentation` is the stage the ``segmentations`` asset calls (reads, files pushed, table written)."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pydicom

from hca_assets._infra.files import atomic_write
from hca_assets._infra.storage import pull, push
from hca_assets.config import Settings
from hca_assets.dicom.volumes import VOLUME_MODALITIES, volume_order
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.lake.schemas import SEGMENTATIONS
from hca_assets.segmentation.backends import code_version
from hca_assets.segmentation.base import (
    UNSUPPORTED,
    BackendFailure,
    Segmenter,
    from_canonical,
    planar_pixels,
    to_canonical,
)
from hca_assets.segmentation.export import (
    planar_affine,
    planar_grid,
    volume_to_frames,
    write_nifti,
    write_seg,
)
from hca_assets.segmentation.measure import measure
from hca_assets.segmentation.strategies import pick_strategy, structure

__all__ = ["PLANAR_MODALITIES", "SegmentOutcome", "SegmentationRun", "code_version", "run_segmentation", "segment_batch"]

PLANAR_MODALITIES = frozenset({"CR", "DX"})


@dataclass(frozen=True)
class SegmentOutcome:
    """Rows of the ``segmentations`` table (status ``failed`` for the prompts of a series that could not be
    segmented), and those series (uid, PHI-free reason)."""

    rows: pa.Table
    failed: list[tuple[str, str]] = field(default_factory=list)


def segment_batch(
    batch: str,
    volumes: Sequence[Mapping[str, object]],
    instances: Sequence[Mapping[str, object]],
    body_parts: Mapping[str, str | None],
    deid_root: Path,
    images_root: Path,
    out_root: Path,
    segmenter: Segmenter,
) -> SegmentOutcome:
    """Segment the batch's volumes (``volumes`` table rows) and planar radiographs (``deid_instances`` rows of
    CR/DX); ``body_parts`` maps a series to its body part (``images`` table). A CT/MR series with no volume
    (one slice, irregular spacing) gets ``unsupported`` rows. Masks and SEGs go to
    ``out_root/<code_version>/<batch>/<series>/`` (radiographs: ``.../<series>/<sop>/``): re-running replaces them,
    another version's stay."""
    version = code_version(segmenter)
    by_series: dict[str, list[Mapping[str, object]]] = {}
    for r in instances:
        by_series.setdefault(str(r["series_instance_uid"]), []).append(r)
    rows: list[dict[str, object]] = []
    failed: list[tuple[str, str]] = []
    for v in volumes:
        series = str(v["series_instance_uid"])
        try:
            rows += _volume(batch, v, body_parts.get(series), by_series.get(series, []), deid_root, images_root,
                            out_root, segmenter, version)
        except Exception as exc:  # noqa: BLE001 - one series must not stop the batch; the reason names no value
            failed.append((series, _reason(exc, "volume")))
            rows += _unsegmented(batch, v, None, body_parts.get(series), segmenter, version, "failed")
    for r in (r for r in instances if r["modality"] in PLANAR_MODALITIES):
        series = str(r["series_instance_uid"])
        try:
            rows += _planar(batch, r, body_parts.get(series), deid_root, out_root, segmenter, version)
        except Exception as exc:  # noqa: BLE001
            failed.append((series, _reason(exc, "image")))
            rows += _unsegmented(batch, r, str(r["sop_instance_uid"]), body_parts.get(series), segmenter, version, "failed")
    stacked = {str(v["series_instance_uid"]) for v in volumes}
    for series, members in by_series.items():  # one slice, irregular spacing, a scout: no volume to segment
        if members[0]["modality"] in VOLUME_MODALITIES and series not in stacked:
            rows += _unsegmented(batch, members[0], None, body_parts.get(series), segmenter, version, "unsupported")
    return SegmentOutcome(pa.Table.from_pylist(rows, schema=SEGMENTATIONS), failed)


def _folder(out_root: Path, version: str, batch: str, series: str) -> Path:
    return out_root / re.sub(r"[^A-Za-z0-9_.@+-]", "_", version) / batch / series


def _volume(batch: str, v: Mapping[str, object], body_part: str | None, members: Sequence[Mapping[str, object]],
            deid_root: Path, images_root: Path, out_root: Path, segmenter: Segmenter, version: str) -> list[dict[str, object]]:
    image = nib.load(images_root / str(v["path"]))
    strategy = pick_strategy(str(v["modality"]), body_part)
    if not strategy.prompts:
        return []
    canonical, spacing = to_canonical(image)
    outcomes = segmenter.segment(canonical, spacing, strategy.prompts)
    folder = _folder(out_root, version, batch, str(v["series_instance_uid"]))
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    masks: dict[str, np.ndarray] = {}
    rows = []
    for prompt, outcome in outcomes.items():
        row = _row(batch, members[0] if members else v, None, prompt, segmenter, version)
        if outcome is not UNSUPPORTED:
            grid = from_canonical(outcome.mask, image)
            masks[prompt] = grid
            rel = write_nifti(grid, image.affine, folder / f"{structure(prompt).name}.nii.gz").relative_to(out_root)
            m = measure(grid, zooms)
            row |= {"status": "segmented", "voxels": m.voxels, "volume_ml": m.volume_ml, "confidence": outcome.confidence,
                    "mask_path": str(rel)}
        rows.append(row)
    if masks and members:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slices = [pydicom.dcmread(deid_root / str(m["path"])) for m in members]
        source = [slices[k] for k in volume_order(slices)]  # the SEG's frames in the NIfTI's slice order
        _seg(source, {p: volume_to_frames(g) for p, g in masks.items()}, folder, out_root, rows, segmenter, version)
    return rows


def _planar(batch: str, r: Mapping[str, object], body_part: str | None, deid_root: Path, out_root: Path,
            segmenter: Segmenter, version: str) -> list[dict[str, object]]:
    strategy = pick_strategy(str(r["modality"]), body_part)
    if not strategy.prompts:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(deid_root / str(r["path"]))
    pixels, spacing = planar_pixels(ds)
    outcomes = segmenter.segment(pixels, spacing or (1.0, 1.0), strategy.prompts)
    folder = _folder(out_root, version, batch, str(r["series_instance_uid"]))
    masks: dict[str, np.ndarray] = {}
    rows = []
    sop = str(r["sop_instance_uid"])
    for prompt, outcome in outcomes.items():
        row = _row(batch, r, sop, prompt, segmenter, version)
        if outcome is not UNSUPPORTED:
            masks[prompt] = outcome.mask
            target = folder / sop / f"{structure(prompt).name}.nii.gz"  # a series may hold several radiographs
            rel = write_nifti(planar_grid(outcome.mask), planar_affine(spacing), target).relative_to(out_root)
            m = measure(outcome.mask, spacing)
            row |= {"status": "segmented", "voxels": m.voxels, "area_mm2": m.area_mm2, "confidence": outcome.confidence,
                    "mask_path": str(rel)}
        rows.append(row)
    if masks:
        _seg([ds], {p: m[np.newaxis] for p, m in masks.items()}, folder / sop, out_root, rows, segmenter, version)
    return rows


def _seg(source: Sequence[pydicom.Dataset], frames: Mapping[str, np.ndarray], folder: Path, out_root: Path,
         rows: list[dict[str, object]], segmenter: Segmenter, version: str) -> None:
    """Write ``folder/seg.dcm`` (replaced whole) and point the segmented ``rows`` at it."""
    target = folder / "seg.dcm"
    atomic_write(target, lambda tmp: write_seg(source, frames, tmp, algorithm=f"hca_assets {segmenter.name}",
                                               version=version))
    for row in rows:
        row["seg_path"] = str(target.relative_to(out_root)) if row["status"] == "segmented" else None


def _row(batch: str, source: Mapping[str, object], sop: str | None, prompt: str, segmenter: Segmenter,
         version: str) -> dict[str, object]:
    return {"batch": batch, "study_instance_uid": source.get("study_instance_uid"),
            "series_instance_uid": str(source["series_instance_uid"]), "sop_instance_uid": sop,
            "modality": str(source["modality"]), "structure": structure(prompt).name, "prompt": prompt,
            "backend": segmenter.name, "status": "unsupported", "voxels": None, "area_mm2": None, "volume_ml": None,
            "confidence": None, "mask_path": None, "seg_path": None, "code_version": version,
            "segmented_at": datetime.now(UTC)}


def _unsegmented(batch: str, source: Mapping[str, object], sop: str | None, body_part: str | None,
                 segmenter: Segmenter, version: str, status: str) -> list[dict[str, object]]:
    """One row per prompt of the source's strategy, none segmented: ``unsupported`` or ``failed``."""
    prompts = pick_strategy(str(source["modality"]), body_part).prompts
    return [_row(batch, source, sop, p, segmenter, version) | {"status": status} for p in prompts]


def _reason(exc: Exception, what: str) -> str:
    """Why a series failed, naming no value: the exception type, and a backend failure's own PHI-free text
    (HTTP status and reason, shapes)."""
    detail = f" ({exc})" if isinstance(exc, BackendFailure) else ""
    return f"{type(exc).__name__}{detail} while segmenting the {what}"



@dataclass(frozen=True)
class SegmentationRun:
    """One batch segmented: the outcome, each series' mask files and rendered volume (for the overlay sheet), the
    number of volumes, seconds and the write."""

    outcome: SegmentOutcome
    masks: dict[str, list[Path]]
    volumes: dict[str, Path]
    seconds: float
    written: WriteResult


def run_segmentation(settings: Settings, batch: str, segmenter: Segmenter, version: str) -> SegmentationRun:
    """Segment ``batch`` with ``segmenter`` as code_version ``version``: its files pushed (other versions' files
    stay: nothing is pruned), then this version's slice of ``segmentations`` replaced."""
    volumes = tables.VOLUMES.read(settings, where={"batch": batch}).to_pylist()
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist()
    body_parts = {r["series_instance_uid"]: r["body_part"] for r in
                  tables.IMAGES.read(settings, where={"batch": batch}, columns=["series_instance_uid", "body_part"])
                  .to_pylist()}
    start = time.perf_counter()
    pull(settings, Path(settings.deid) / batch, Path(settings.images) / batch)
    out = segment_batch(batch, volumes, instances, body_parts, Path(settings.deid), Path(settings.images),
                        Path(settings.segmentations), segmenter)
    push(settings, Path(settings.segmentations) / batch)
    written = tables.SEGMENTATIONS.write(settings, out.rows, match={"batch": batch, "code_version": version})
    masks: dict[str, list[Path]] = {}
    for r in out.rows.to_pylist():
        if r["mask_path"]:
            masks.setdefault(r["series_instance_uid"], []).append(Path(settings.segmentations) / r["mask_path"])
    paths = {str(v["series_instance_uid"]): Path(settings.images) / str(v["path"]) for v in volumes}
    return SegmentationRun(out, masks, paths, time.perf_counter() - start, written)
