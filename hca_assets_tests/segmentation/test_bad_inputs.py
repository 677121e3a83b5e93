"""Bad input for segmentation — one slice, non-square pixels, RGB ultrasound, a wrong prompt, a backend that
crashes on one series — gets a clear one-line message (``hca segment``) or an ``unsupported`` / ``failed`` row
(``segment_batch``), never a crash of the batch."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from hca_assets.segmentation.base import Outcome
from hca_assets.segmentation.local import LocalSegmenter
from hca_assets.stages.segmentation import segment_batch
from hca_assets.synthetic.phantoms import ct_volume
from hca_assets_tests.builders import assert_one_line_user_error
from hca_assets_tests.conftest import public_test_files
from hca_assets_tests.segmentation.conftest import run_segment


def _public(name: str) -> Path:
    return next(p for p in public_test_files() if p.name == name)


def test_rgb_ultrasound_is_refused_in_one_line(tmp_path: Path) -> None:
    us = _public("examples_rgb_color.dcm")  # a real RGB ultrasound frame (pydicom's test files)
    assert pydicom.dcmread(us).SamplesPerPixel == 3
    result = run_segment(us, "--prompt", "lung", "--out", tmp_path / "out")
    assert_one_line_user_error(result)
    assert "greyscale" in result.stderr and not (tmp_path / "out").exists()


def test_one_ct_slice_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(_public("CT_small.dcm"), folder / "slice.dcm")  # a real CT slice, alone in its folder
    result = run_segment(folder, "--prompt", "liver", "--out", tmp_path / "out")
    assert_one_line_user_error(result)
    assert "cannot segment `liver` on this CT planar image" in result.stderr


def test_wrong_prompt_names_it(patient: Path, tmp_path: Path) -> None:
    result = run_segment(patient / "ct", "--prompt", "liverr", "--out", tmp_path / "out")
    assert_one_line_user_error(result)
    assert "unknown prompt `liverr`" in result.stderr


def test_non_square_pixels_measure_in_mm(patient: Path, tmp_path: Path) -> None:
    """Pixel spacing 0.6 mm (rows) × 0.9 mm (columns): the NIfTI carries it and volumes/areas use it."""
    for kind, spacing in (("ct", [0.6, 0.9]), ("cxr", [0.5, 1.0])):
        (tmp_path / kind).mkdir()
        for path in sorted((patient / kind).glob("*.dcm")):
            ds = pydicom.dcmread(path)
            ds.PixelSpacing = spacing
            ds.save_as(tmp_path / kind / path.name)
    ct = run_segment(tmp_path / "ct", "--prompt", "lung", "--out", tmp_path / "ct_out")
    assert ct.exit_code == 0, ct.output
    mask = nib.load(tmp_path / "ct_out" / "lung.nii.gz")
    zooms = mask.header.get_zooms()
    assert zooms[:2] == pytest.approx((0.9, 0.6))
    voxels = int(np.asarray(mask.dataobj).sum())
    (ml,) = re.findall(r"^lung\s+([\d.]+) mL\s+(\d+) voxels", ct.stdout, flags=re.MULTILINE)
    assert int(ml[1]) == voxels > 0
    assert float(ml[0]) == pytest.approx(voxels * 0.9 * 0.6 * zooms[2] / 1000, abs=0.06)
    (cxr,) = (tmp_path / "cxr").glob("*.dcm")
    planar = run_segment(cxr, "--prompt", "lung", "--out", tmp_path / "cxr_out")
    assert planar.exit_code == 0, planar.output
    (area,) = re.findall(r"^lung\s+([\d.]+) mm²\s+(\d+) voxels", planar.stdout, flags=re.MULTILINE)
    assert float(area[0]) == pytest.approx(int(area[1]) * 0.5 * 1.0, abs=0.06)
    assert nib.load(tmp_path / "cxr_out" / "lung.nii.gz").header.get_zooms()[:2] == pytest.approx((1.0, 0.5))


class _CrashesOnSevenSlices(LocalSegmenter):
    """The local backend, except that it raises on a 7-slice volume: a backend bug on one series."""

    def segment(self, volume: np.ndarray, spacing_mm: Sequence[float], prompts: Sequence[str]) -> dict[str, Outcome]:
        if volume.ndim == 3 and volume.shape[2] == 7:
            raise RuntimeError("the model fell over")
        return super().segment(volume, spacing_mm, prompts)


def test_a_series_that_fails_or_cannot_be_stacked_does_not_stop_the_batch(tmp_path: Path) -> None:
    images = tmp_path / "images"
    volumes = []
    for name, slices in (("good", 12), ("bad", 7)):
        hu = ct_volume(np.random.default_rng(0), slices=slices, size=64, lesion=False).pixels  # (slice, row, col)
        path = images / "b1" / f"{name}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(hu.transpose(2, 1, 0)[::-1, ::-1].astype(np.float32), np.diag([6.0, 6.0, 2.5, 1])), path)
        volumes.append({"series_instance_uid": f"2.25.{len(volumes) + 1}", "study_instance_uid": "2.25.9",
                        "modality": "CT", "path": str(path.relative_to(images))})
    one_slice = {"series_instance_uid": "2.25.3", "study_instance_uid": "2.25.9", "sop_instance_uid": "2.25.31",
                 "modality": "CT", "path": "unused.dcm"}  # a CT series of one slice: no volume was built
    parts = {"2.25.1": "ABDOMEN", "2.25.2": "ABDOMEN", "2.25.3": "ABDOMEN"}
    out = segment_batch("b1", volumes, [one_slice], parts, tmp_path / "deid", images, tmp_path / "seg",
                        _CrashesOnSevenSlices())
    rows = out.rows.to_pylist()
    status = {(r["series_instance_uid"], r["status"]) for r in rows}
    assert ("2.25.1", "segmented") in status
    assert {s for u, s in status if u == "2.25.2"} == {"failed"}
    assert {s for u, s in status if u == "2.25.3"} == {"unsupported"}
    assert out.failed == [("2.25.2", "RuntimeError while segmenting the volume")]  # the reason quotes no value
    prompts = {r["prompt"] for r in rows if r["series_instance_uid"] == "2.25.2"}
    assert prompts == {r["prompt"] for r in rows if r["series_instance_uid"] == "2.25.1"}  # one row per prompt
    assert all(r["mask_path"] is None and r["voxels"] is None for r in rows if r["status"] != "segmented")


def test_a_real_ct_slab_with_empty_uids_gets_masks_and_a_one_line_reason(tmp_path: Path) -> None:
    """As some anonymising exports leave them: a slab of the real pydicom-data CT_small slice whose Study, Series,
    SOP Instance and SOP Class UIDs are empty. The masks are written, the SEG is skipped with one line (it once
    ended in ``KeyError: ''`` inside highdicom), and the folder's marker lists only what was written."""
    import json

    slab = tmp_path / "slab"
    slab.mkdir()
    for i in range(8):
        ds = pydicom.dcmread(_public("CT_small.dcm"))
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], 5.0 * i]
        ds.SliceThickness, ds.InstanceNumber = 5.0, i + 1
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            setattr(ds, kw, "")
        ds.save_as(slab / f"{i}.dcm")
    result = run_segment(slab, "--prompt", "liver", "--out", tmp_path / "out")
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "no DICOM SEG: the source has empty SOPClassUID, SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID" \
        in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".hca-segment", "liver.nii.gz"]
    assert json.loads((tmp_path / "out" / ".hca-segment").read_text())["files"] == ["liver.nii.gz"]
