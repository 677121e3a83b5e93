"""Render one batch of published de-identified instances: a 1024² PNG per frame, a NIfTI per 3D series
(:func:`run_images` is the stage the ``images`` asset calls)."""

from __future__ import annotations

import shutil
import struct
import time
import warnings
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pydicom
from isal import igzip, isal_zlib
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from hca_assets._infra.files import atomic_write
from hca_assets._infra.parallel import ItemFailed, Progress, ordered_map
from hca_assets._infra.storage import prune, pull, push
from hca_assets.config import Settings
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.pixels import PREPROCESSING_VERSION, display_frames, letterbox
from hca_assets.dicom.volumes import VOLUME_MODALITIES, build_volume, slice_positions_ras, volume_order
from hca_assets.lake import registry
from hca_assets.lake.delta import WriteResult
from hca_assets.lake.schemas import IMAGES, VOLUMES
from hca_assets.stages.ingest import lost_reason, quarantine_row, quarantine_table

__all__ = ["ImagesRun", "RenderOutcome", "check_volume_affine", "encode_png", "render_batch", "run_images"]

MIN_VOLUME_SLICES = 8


@dataclass(frozen=True)
class RenderOutcome:
    images: pa.Table
    volumes: pa.Table
    failed: list[tuple[str, str]]  # (sop instance uid, PHI-free reason)
    lost: dict[str, str] = field(default_factory=dict)  # sop instance uid → timeout / worker_died, for those failures


# PNG: every row "Up"-filtered, then ISA-L's deflate. Pillow's encoder tries every filter on every row and
# spends ~90 ms per 1024² frame (level 6; 20 ms at level 1); this one ~2 ms for a file of the same size.
# ISA-L also gzips a 512²×48 float32 volume in ~0.15 s (zlib level 1, nibabel's default: ~1 s) into a smaller file.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_UP = 2
_LEVEL = 1  # ISA-L's levels are 0-3; 1 compresses as well as 2 here, and faster
# what a volume needs of each slice, copied into a header-only dataset that goes back to the parent
_GEOMETRY = ("Modality", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns", "SOPInstanceUID")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray) -> bytes:
    """An 8-bit grey (rows, cols) or RGB (rows, cols, 3) image as PNG bytes (lossless: any decoder returns ``image``)."""
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"cannot encode a {image.dtype} image of shape {image.shape} as PNG")
    rows, cols = image.shape[:2]
    flat = image.reshape(rows, -1)
    filtered = np.empty((rows, flat.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = _PNG_UP
    filtered[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG defines the filter
    data = isal_zlib.compress(filtered.tobytes(), _LEVEL)
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0 if image.ndim == 2 else 2, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _atomic_write(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: tmp.write_bytes(data))


def _render_one(args: tuple[str, str, str, dict[str, object], str | None]) -> tuple[list[dict[str, object]], Dataset | None] | str:
    """PNGs and image rows of one instance; with a ``slices`` folder (its series becomes a volume) also the
    slice's modality values saved there and its geometry returned, so that the file is read only once."""
    source, images_root, batch, row, slices = args
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
                _atomic_write(encode_png(letterbox(image)), Path(images_root) / rel)
                out.append({
                    **row, "batch": batch, "frame": i, "modality": modality, "body_part": body_part, "path": rel,
                    "rows": int(ds.Rows), "columns": int(ds.Columns), "spacing_row_mm": spacing[0],
                    "spacing_col_mm": spacing[1], "window": window.name if window else None,
                    "constant": bool(image.min() == image.max()), "preprocessing_version": PREPROCESSING_VERSION,
                })
            geometry = None
            if slices is not None and int(ds.get("NumberOfFrames", 1) or 1) == 1:
                np.save(Path(slices) / f"{row['sop_instance_uid']}.npy", apply_modality_lut(ds.pixel_array, ds).astype(np.float32))
                geometry = Dataset()
                for keyword in _GEOMETRY:
                    if keyword in ds:
                        geometry[keyword] = ds[keyword]
            return out, geometry
        except Exception as exc:  # noqa: BLE001 - reported per instance, the batch goes on
            return f"cannot render ({type(exc).__name__})"


def render_batch(
    batch: str, instances: list[dict[str, object]], deid_root: Path, images_root: Path, *, workers: int = 1,
    progress: Progress | None = None, timeout: float | None = None,
) -> RenderOutcome:
    """``instances``: rows of ``deid_instances`` for the batch. Replaces earlier renderings of the batch.
    An instance whose rendering overruns ``timeout`` seconds (or kills its worker) fails, the others go on.
    Every file is read once; the volumes are then stacked and written by the same ``workers``."""
    keep = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "patient_pseudonym")
    series_of = _volume_series(instances)
    scratch = images_root / f".{batch}.slices"  # modality values of volume slices, between the two passes
    shutil.rmtree(scratch, ignore_errors=True)
    if series_of:
        scratch.mkdir(parents=True)
    args = [(str(deid_root / str(r["path"])), str(images_root), batch, {k: r[k] for k in keep},
             str(scratch) if str(r["sop_instance_uid"]) in series_of else None) for r in instances]
    rows: list[dict[str, object]] = []
    failed: list[tuple[str, str]] = []
    lost: dict[str, str] = {}
    members: dict[str, list[Dataset | None]] = defaultdict(list)
    try:
        results = ordered_map(_render_one, args, workers=workers, progress=progress, timeout=timeout)
        for r, result in zip(instances, results, strict=True):
            sop = str(r["sop_instance_uid"])
            if isinstance(result, ItemFailed):
                lost[sop] = lost_reason(result)
                failed.append((sop, result.message))
            elif isinstance(result, str):
                failed.append((sop, result))
            else:
                rows.extend(result[0])
            if sop in series_of:
                members[series_of[sop]].append(None if isinstance(result, (ItemFailed, str)) else result[1])
        volumes = _volumes(batch, members, scratch, images_root, workers)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return RenderOutcome(pa.Table.from_pylist(rows, schema=IMAGES), pa.Table.from_pylist(volumes, schema=VOLUMES), failed,
                         lost)


RENDER_STAGE = registry.RENDER_STAGE  # quarantine.stage of what this stage sets aside


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


def _volume_series(instances: list[dict[str, object]]) -> dict[str, str]:
    """sop instance uid → series instance uid, for the instances of series that may form a volume."""
    by_series: dict[str, list[str]] = defaultdict(list)
    for r in instances:
        if r["modality"] in VOLUME_MODALITIES:
            by_series[str(r["series_instance_uid"])].append(str(r["sop_instance_uid"]))
    return {sop: series for series, sops in by_series.items() if len(sops) >= MIN_VOLUME_SLICES for sop in sops}


def _volumes(batch: str, members: dict[str, list[Dataset | None]], scratch: Path, images_root: Path,
             workers: int) -> list[dict[str, object]]:
    """One NIfTI per series whose slices all rendered as single frames and form one regular volume."""
    items = [(batch, series, slices, str(scratch), str(images_root)) for series, slices in sorted(members.items())
             if all(ds is not None for ds in slices)]
    written = ordered_map(_write_volume, items, workers=workers)
    return [row for row in written if isinstance(row, dict)]


def _write_volume(args: tuple[str, str, list[Dataset], str, str]) -> dict[str, object] | None:
    """Stack one series' slices (values saved by :func:`_render_one`) and write its ``.nii.gz`` (None: not one
    regular volume, its slices stay 2D images)."""
    batch, series, slices, scratch, images_root = args
    try:
        volume = build_volume(slices, [np.load(Path(scratch) / f"{ds.SOPInstanceUID}.npy") for ds in slices])
    except (ValueError, AttributeError):
        return None
    rel = f"{batch}/{series}.nii.gz"
    _atomic_write(igzip.compress(volume.image.to_bytes(), _LEVEL, mtime=0), Path(images_root) / rel)
    return {"batch": batch, "series_instance_uid": series, "modality": str(slices[0].get("Modality", "")),
            "path": rel, "slices": len(slices), "shape": list(volume.image.shape),
            "affine": [float(v) for v in volume.image.affine.ravel()], "preprocessing_version": PREPROCESSING_VERSION}


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


@dataclass(frozen=True)
class ImagesRun:
    """One batch rendered: the outcome, the seconds it took and the write of ``images``."""

    outcome: RenderOutcome
    seconds: float
    written: WriteResult


def run_images(settings: Settings, batch: str, progress: Progress | None = None) -> ImagesRun:
    """Render the published instances of ``batch``; ``images`` and ``volumes`` written after their files reached the
    store, what could not be rendered quarantined (its de-identified file stays where it is)."""
    instances = registry.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist()
    start = time.perf_counter()
    pull(settings, Path(settings.deid) / batch)
    out = render_batch(batch, instances, Path(settings.deid), Path(settings.images), workers=settings.workers,
                       progress=progress, timeout=settings.limits.timeout)
    push(settings, Path(settings.images) / batch)
    written = registry.IMAGES.write(settings, out.images, match={"batch": batch})
    registry.VOLUMES.write(settings, out.volumes, match={"batch": batch})
    prune(settings, Path(settings.images) / batch)
    registry.QUARANTINE.write(settings, render_quarantine(batch, out.failed, instances, out.lost),
                              match={"batch": batch, "stage": RENDER_STAGE})
    return ImagesRun(out, time.perf_counter() - start, written)
