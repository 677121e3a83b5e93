"""Render one batch of published de-identified instances: a 1024² PNG per frame, a NIfTI per 3D series."""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pydicom
from PIL import Image

from hca_assets._parallel import ItemFailed, Progress, ordered_map
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.pixels import PREPROCESSING_VERSION, display_frames, letterbox
from hca_assets.dicom.volumes import VOLUME_MODALITIES, build_volume, slice_positions_ras, volume_order
from hca_assets.ingest import lost_reason, quarantine_row, quarantine_table
from hca_assets.lake.schemas import IMAGES, VOLUMES

__all__ = ["RenderOutcome", "check_volume_affine", "render_batch"]

MIN_VOLUME_SLICES = 8


@dataclass(frozen=True)
class RenderOutcome:
    images: pa.Table
    volumes: pa.Table
    failed: list[tuple[str, str]]  # (sop instance uid, PHI-free reason)
    lost: dict[str, str] = field(default_factory=dict)  # sop instance uid → timeout / worker_died, for those failures


def _atomic_png(array: np.ndarray, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, target)


def _render_one(args: tuple[str, str, str, dict[str, object]]) -> list[dict[str, object]] | str:
    source, images_root, batch, row = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(source)
            modality, body_part = str(ds.get("Modality", "")), (str(ds.get("BodyPartExamined", "")) or None)
            window, images = display_frames(ds)
            spacing = [float(v) for v in ds.get("PixelSpacing", [])] or [None, None]
            out = []
            for i, image in enumerate(images):
                rel = f"{batch}/{row['sop_instance_uid']}_{i:04d}.png"
                _atomic_png(letterbox(image), Path(images_root) / rel)
                out.append({
                    **row, "batch": batch, "frame": i, "modality": modality, "body_part": body_part, "path": rel,
                    "rows": int(ds.Rows), "columns": int(ds.Columns), "spacing_row_mm": spacing[0],
                    "spacing_col_mm": spacing[1], "window": window.name if window else None,
                    "constant": bool(image.min() == image.max()), "preprocessing_version": PREPROCESSING_VERSION,
                })
            return out
        except Exception as exc:  # noqa: BLE001 - reported per instance, the batch goes on
            return f"cannot render ({type(exc).__name__})"


def render_batch(
    batch: str, instances: list[dict[str, object]], deid_root: Path, images_root: Path, *, workers: int = 1,
    progress: Progress | None = None, timeout: float | None = None,
) -> RenderOutcome:
    """``instances``: rows of ``deid_instances`` for the batch. Replaces earlier renderings of the batch.
    An instance whose rendering overruns ``timeout`` seconds (or kills its worker) fails, the others go on."""
    keep = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "patient_pseudonym")
    args = [(str(deid_root / str(r["path"])), str(images_root), batch, {k: r[k] for k in keep}) for r in instances]
    rows: list[dict[str, object]] = []
    failed: list[tuple[str, str]] = []
    lost: dict[str, str] = {}
    results = ordered_map(_render_one, args, workers=workers, progress=progress, timeout=timeout)
    for r, result in zip(instances, results, strict=True):
        if isinstance(result, ItemFailed):
            lost[str(r["sop_instance_uid"])] = lost_reason(result)
            failed.append((str(r["sop_instance_uid"]), result.message))
        elif isinstance(result, str):
            failed.append((str(r["sop_instance_uid"]), result))
        else:
            rows.extend(result)
    volumes = _volumes(batch, instances, deid_root, images_root)
    return RenderOutcome(pa.Table.from_pylist(rows, schema=IMAGES), pa.Table.from_pylist(volumes, schema=VOLUMES), failed,
                         lost)


RENDER_STAGE = "images"


def render_quarantine(batch: str, failed: list[tuple[str, str]], instances: list[dict[str, object]],
                      lost: dict[str, str] | None = None) -> pa.Table:
    """Quarantine rows for instances that could not be rendered (the de-identified file stays where it is);
    ``lost`` (:attr:`RenderOutcome.lost`) gives the reason of those stopped at the timeout or by a dead worker."""
    now = datetime.now(UTC)
    by_sop = {str(r["sop_instance_uid"]): r for r in instances}
    lost = lost or {}
    rows = [quarantine_row(batch, RENDER_STAGE, str(by_sop[sop]["sha256"]), lost.get(sop, QuarantineReason.UNRENDERABLE),
                           reason, f"deid/{by_sop[sop]['path']}", now) for sop, reason in failed]
    return quarantine_table(rows)


def _volumes(batch: str, instances: list[dict[str, object]], deid_root: Path, images_root: Path) -> list[dict[str, object]]:
    by_series: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in instances:
        if r["modality"] in VOLUME_MODALITIES:
            by_series[str(r["series_instance_uid"])].append(r)
    out = []
    for series, members in sorted(by_series.items()):
        if len(members) < MIN_VOLUME_SLICES:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slices = [pydicom.dcmread(deid_root / str(m["path"])) for m in members]
            if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in slices):
                continue
            try:
                volume = build_volume(slices)
            except (ValueError, AttributeError):
                continue  # not one regular volume: its slices stay 2D images
        rel = f"{batch}/{series}.nii.gz"
        target = images_root / rel
        tmp = target.with_name(f".{series}.{os.getpid()}.tmp.nii.gz")
        nib.save(volume.image, tmp)
        os.replace(tmp, target)
        out.append({"batch": batch, "series_instance_uid": series, "modality": str(members[0]["modality"]),
                    "path": rel, "slices": len(slices), "shape": list(volume.image.shape),
                    "affine": [float(v) for v in volume.image.affine.ravel()], "preprocessing_version": PREPROCESSING_VERSION})
    return out


def check_volume_affine(nifti_path: Path, slice_paths: list[Path], tolerance_mm: float = 0.01) -> float:
    """Largest distance (mm) between a slice's DICOM position and where the NIfTI affine puts it."""
    image = nib.load(nifti_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slices = [pydicom.dcmread(p, stop_before_pixels=True) for p in slice_paths]
    expected = slice_positions_ras(slices)
    normal_order = volume_order(slices)
    placed = np.array([(image.affine @ np.array([0, 0, k, 1.0]))[:3] for k in range(image.shape[2])])
    return float(np.max(np.linalg.norm(placed - expected[normal_order], axis=1)))
