"""Slice geometry QA on header values: each fault found alone, a clean stack clean."""

from __future__ import annotations

import numpy as np

from hca_assets.dicom.geometry import Frame, series_geometry

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def stack(zs: list[float], orientation: tuple[float, ...] = AXIAL, **extra: object) -> list[Frame]:
    return [Frame((-100.0, -100.0, z), orientation, (0.7, 0.7), **extra) for z in zs]  # type: ignore[arg-type]


def test_clean_stack_in_any_order() -> None:
    g = series_geometry(stack([5.0, 0.0, 2.5, 7.5, 10.0]))
    assert (g.slices, g.slice_spacing_mm, g.issues, g.gantry_tilt_deg) == (5, 2.5, [], 0.0)


def test_each_fault_alone() -> None:
    assert series_geometry(stack([0, 2.5, 5, 12.5, 15])).missing_slices == 2  # 5 → 12.5: two slices missing
    g = series_geometry(stack([0, 2.5, 2.5, 5, 7.5]))
    assert g.duplicate_positions == 1 and g.issues == ["duplicate_positions"]
    irregular = series_geometry(stack([0, 2.5, 5, 6.5, 9, 11.5]))
    assert irregular.spacing_irregular and irregular.missing_slices == 0 and irregular.issues == ["irregular_spacing"]
    scout = Frame((0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (1.0, 1.0), localizer=True)
    g = series_geometry([*stack([0, 2.5, 5]), scout])
    assert g.localizers == 1 and g.slices == 3 and g.issues == ["localizers"]  # the scout is not part of the stack
    mixed = series_geometry([*stack([0, 2.5, 5]), Frame((0.0, 0.0, 7.5), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (0.7, 0.7))])
    assert mixed.orientation_inconsistent and "inconsistent_orientation" in mixed.issues
    spacing = series_geometry([*stack([0, 2.5]), Frame((-100.0, -100.0, 5.0), AXIAL, (0.8, 0.8))])
    assert spacing.spacing_irregular and spacing.missing_slices == 0


def test_gantry_tilt_from_the_sheared_stack_and_from_the_header() -> None:
    t = np.radians(15.0)
    tilted = (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t)))  # slices tilted, the table moves along z
    g = series_geometry(stack([0, 3, 6, 9], tilted))
    assert abs(g.gantry_tilt_deg - 15.0) < 1e-3 and g.issues == ["gantry_tilt"]
    assert g.missing_slices == 0 and not g.spacing_irregular  # spacing measured along the normal: regular
    header = series_geometry([Frame((0.0, 0.0, 0.0), AXIAL, (1.0, 1.0), gantry_tilt=-12.0)])
    assert header.gantry_tilt_deg == 12.0 and header.issues == ["gantry_tilt"]


def test_planar_image_has_no_stack() -> None:
    g = series_geometry([Frame(pixel_spacing=(0.35, 0.35))])
    assert (g.slices, g.slice_spacing_mm, g.issues) == (0, None, [])
