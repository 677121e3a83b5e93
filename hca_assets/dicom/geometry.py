"""Slice geometry QA of one series: missing or duplicate slice positions, gantry tilt, localizers mixed in,
irregular spacing, inconsistent orientation — from header values only (no pixels)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["TILT_TOLERANCE_DEG", "Frame", "Geometry", "series_geometry"]

POSITION_TOLERANCE_MM = 0.01  # two slices closer than this along the normal sit at the same position
SPACING_TOLERANCE = 0.05  # a gap within 5 % of the median spacing is regular
MISSING_FACTOR = 1.5  # a gap of at least 1.5 median spacings is a missing slice (k spacings: k - 1 missing)
TILT_TOLERANCE_DEG = 0.5  # shear of the slice stack (or GantryDetectorTilt) beyond this is a tilted series
ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ by more are another orientation


@dataclass(frozen=True)
class Frame:
    """One frame's geometry as its header states it (any of it may be missing)."""

    position: tuple[float, float, float] | None = None  # ImagePositionPatient
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (row, column direction cosines)
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    localizer: bool = False  # ImageType says LOCALIZER (a scout)
    gantry_tilt: float | None = None  # GantryDetectorTilt, degrees


@dataclass(frozen=True)
class Geometry:
    """The QA of a series' slice stack; ``issues`` names every finding (empty: the geometry is clean)."""

    slices: int = 0
    slice_spacing_mm: float | None = None
    missing_slices: int = 0
    duplicate_positions: int = 0
    gantry_tilt_deg: float | None = None
    localizers: int = 0
    spacing_irregular: bool = False
    orientation_inconsistent: bool = False
    issues: list[str] = field(default_factory=list)


def series_geometry(frames: Sequence[Frame]) -> Geometry:
    """QA of the frames of one series: the frames that are not localizers and have a position and orientation
    form the stack; positions are measured along the normal of its most common orientation."""
    localizers = sum(f.localizer for f in frames)
    stack = [f for f in frames if not f.localizer and f.position is not None and f.orientation is not None]
    header_tilt = next((abs(f.gantry_tilt) for f in frames if f.gantry_tilt), None)
    spacings = {tuple(round(v, 4) for v in f.pixel_spacing) for f in frames if f.pixel_spacing and not f.localizer}
    if len(stack) < 2:
        return _finish(Geometry(slices=len(stack), localizers=localizers, gantry_tilt_deg=header_tilt,
                                spacing_irregular=len(spacings) > 1))
    orientations = [np.asarray(f.orientation, dtype=float) for f in stack]
    common = Counter(tuple(np.round(o, 3)) for o in orientations).most_common(1)[0][0]
    reference = next(o for o in orientations if tuple(np.round(o, 3)) == common)
    inconsistent = any(np.abs(o - reference).max() > ORIENTATION_TOLERANCE for o in orientations)
    normal = np.cross(reference[:3], reference[3:])
    points = np.array([f.position for f in stack], dtype=float)
    projected = points @ normal
    order = np.argsort(projected)
    along = projected[order]
    gaps = np.diff(along)
    duplicates = int((gaps < POSITION_TOLERANCE_MM).sum())
    gaps = gaps[gaps >= POSITION_TOLERANCE_MM]
    spacing = float(np.median(gaps)) if gaps.size else None
    missing, irregular = 0, len(spacings) > 1
    if spacing:
        ratios = gaps / spacing
        missing = int(sum(round(r) - 1 for r in ratios if r >= MISSING_FACTOR))
        regular = np.abs(ratios - np.round(ratios)) <= SPACING_TOLERANCE
        irregular = irregular or not bool(regular.all())
    span = points[order[-1]] - points[order[0]]
    shear = None
    if np.linalg.norm(span) > POSITION_TOLERANCE_MM:
        cosine = abs(float(span @ normal)) / float(np.linalg.norm(span))
        shear = float(np.degrees(np.arccos(min(1.0, cosine))))
    tilt = max(t for t in (shear, header_tilt) if t is not None) if shear is not None or header_tilt else None
    return _finish(Geometry(slices=len(stack), slice_spacing_mm=None if spacing is None else round(spacing, 4),
                            missing_slices=missing, duplicate_positions=duplicates,
                            gantry_tilt_deg=None if tilt is None else round(tilt, 3), localizers=localizers,
                            spacing_irregular=irregular, orientation_inconsistent=inconsistent))


def _finish(g: Geometry) -> Geometry:
    issues = [name for name, found in (
        ("missing_slices", g.missing_slices > 0), ("duplicate_positions", g.duplicate_positions > 0),
        ("gantry_tilt", (g.gantry_tilt_deg or 0.0) > TILT_TOLERANCE_DEG), ("localizers", g.localizers > 0),
        ("irregular_spacing", g.spacing_irregular), ("inconsistent_orientation", g.orientation_inconsistent),
    ) if found]
    return replace(g, issues=issues)
