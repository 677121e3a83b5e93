"""The ``series`` and ``studies`` tables of one batch: attributes an analyst filters by, promoted from the
published de-identified headers (read without pixels), and each series' slice geometry QA."""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pydicom
from pydicom.dataset import Dataset

from hca_assets._infra.storage import pull
from hca_assets.config import Settings
from hca_assets.dicom.geometry import Frame, series_geometry
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.lake.schemas import SERIES, STUDIES

__all__ = ["CatalogRun", "run_series", "run_studies", "series_table", "studies_table"]


def series_table(batch: str, instances: Sequence[Mapping[str, Any]], deid_root: Path) -> pa.Table:
    """One row per series of the batch's ``deid_instances`` rows, from their files under ``deid_root``."""
    members: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in instances:
        members[str(row["series_instance_uid"])].append(row)
    return pa.Table.from_pylist([_series_row(batch, uid, rows, deid_root) for uid, rows in sorted(members.items())],
                                schema=SERIES)


def studies_table(batch: str, series: Iterable[Mapping[str, Any]]) -> pa.Table:
    """One row per study of a batch's ``series`` rows."""
    by_study: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in series:
        by_study[str(row["study_instance_uid"])].append(row)
    rows = [{
        "batch": batch, "study_instance_uid": uid, "patient_pseudonym": group[0]["patient_pseudonym"],
        "study_date": min((r["study_date"] for r in group if r["study_date"]), default=None),
        "modalities": sorted({r["modality"] for r in group}),
        "body_parts": sorted({r["body_part"] for r in group if r["body_part"]}),
        "manufacturers": sorted({r["manufacturer"] for r in group if r["manufacturer"]}),
        "series": len(group), "instances": sum(r["instances"] for r in group),
        "series_with_geometry_issues": sum(bool(r["geometry_issues"]) for r in group),
    } for uid, group in sorted(by_study.items())]
    return pa.Table.from_pylist(rows, schema=STUDIES)


def _series_row(batch: str, uid: str, rows: list[Mapping[str, Any]], deid_root: Path) -> dict[str, Any]:
    headers = [_header(deid_root / str(r["path"])) for r in rows]
    headers.sort(key=lambda ds: _int(ds.get("InstanceNumber")) or 0)
    frames = [f for ds in headers for f in _frames(ds)]
    geometry = series_geometry(frames)
    first = headers[0]
    spacing = Counter(f.pixel_spacing for f in frames if f.pixel_spacing and not f.localizer).most_common(1)
    thickness = [_float(ds.get("SliceThickness")) for ds in headers]
    return {
        "batch": batch, "series_instance_uid": uid, "study_instance_uid": rows[0]["study_instance_uid"],
        "patient_pseudonym": rows[0]["patient_pseudonym"], "modality": rows[0]["modality"],
        "body_part": _text(first, "BodyPartExamined"), "manufacturer": _text(first, "Manufacturer"),
        "model_name": _text(first, "ManufacturerModelName"), "study_date": _date(first.get("StudyDate")),
        "series_date": _date(first.get("SeriesDate")), "instances": len(headers),
        "frames": sum(_int(ds.get("NumberOfFrames")) or 1 for ds in headers),
        "rows": _int(first.get("Rows")), "columns": _int(first.get("Columns")),
        "slice_thickness_mm": Counter(t for t in thickness if t is not None).most_common(1)[0][0]
        if any(t is not None for t in thickness) else None,
        "pixel_spacing_row_mm": spacing[0][0][0] if spacing else None,
        "pixel_spacing_col_mm": spacing[0][0][1] if spacing else None,
        "slice_spacing_mm": geometry.slice_spacing_mm, "slices": geometry.slices,
        "missing_slices": geometry.missing_slices, "duplicate_positions": geometry.duplicate_positions,
        "gantry_tilt_deg": geometry.gantry_tilt_deg, "localizers": geometry.localizers,
        "spacing_irregular": geometry.spacing_irregular, "orientation_inconsistent": geometry.orientation_inconsistent,
        "geometry_issues": geometry.issues,
    }


def _header(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True)


def _frames(ds: Dataset) -> list[Frame]:
    """The instance's geometry: one frame from its own attributes, or each frame of an enhanced multi-frame from its
    per-frame and shared functional groups."""
    localizer = "LOCALIZER" in [str(v).upper() for v in _values(ds.get("ImageType"))]
    tilt = _float(ds.get("GantryDetectorTilt"))
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [Frame(_floats(ds.get("ImagePositionPatient"), 3), _floats(ds.get("ImageOrientationPatient"), 6),
                      _floats(ds.get("PixelSpacing"), 2), localizer, tilt)]
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else Dataset()
    out = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        def attribute(sequence: str, name: str, item: Dataset = item) -> Any:
            for group in (item, shared_item):
                if sequence in group and group[sequence].value and name in group[sequence][0]:
                    return group[sequence][0].get(name)
            return None

        out.append(Frame(_floats(attribute("PlanePositionSequence", "ImagePositionPatient"), 3),
                         _floats(attribute("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                         _floats(attribute("PixelMeasuresSequence", "PixelSpacing"), 2), localizer, tilt))
    return out


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, pydicom.multival.MultiValue | list | tuple) else [value]


def _floats(value: Any, n: int) -> Any:
    try:
        numbers = tuple(float(v) for v in _values(value))
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n else None


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _text(ds: Dataset, keyword: str) -> str | None:
    value = str(ds.get(keyword) or "").strip()
    return value or None


def _date(value: Any) -> date | None:
    try:
        return datetime.strptime(str(value or "").strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


@dataclass(frozen=True)
class CatalogRun:
    """One batch's catalogue rows and their write."""

    table: pa.Table
    written: WriteResult


def run_series(settings: Settings, batch: str) -> CatalogRun:
    """The ``series`` rows of ``batch`` from its published headers (no pixels read)."""
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist()
    pull(settings, Path(settings.deid) / batch)
    table = series_table(batch, instances, Path(settings.deid))
    return CatalogRun(table, tables.SERIES.write(settings, table, match={"batch": batch}))


def run_studies(settings: Settings, batch: str) -> CatalogRun:
    """The ``studies`` rows of ``batch``, aggregated from its ``series`` rows."""
    table = studies_table(batch, tables.SERIES.read(settings, where={"batch": batch}).to_pylist())
    return CatalogRun(table, tables.STUDIES.write(settings, table, match={"batch": batch}))
