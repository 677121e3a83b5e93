"""`hca segment` on a DICOM series folder, one DICOM file and a NIfTI volume: masks on the input's grid, a SEG
that reads back, volumes printed; user mistakes are one line with exit code 2 and foreign files are never touched."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from hca_assets.dicom.volumes import build_volume
from hca_assets.segmentation.standalone import MARKER
from hca_assets_tests.builders import assert_one_line_user_error
from hca_assets_tests.segmentation.conftest import run_segment


def _printed(output: str) -> dict[str, tuple[float, str]]:
    """structure → (size, unit) from the command's lines."""
    found = re.findall(r"^(\S+)\s+([\d.]+) (mL|mm²)\s+\d+ voxels", output, flags=re.MULTILINE)
    return {name: (float(size), unit) for name, size, unit in found}


def test_series_folder_gives_masks_on_the_volume_grid_and_a_seg(patient: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_segment(patient / "ct", "--prompt", "liver", "--prompt", "lung", "--out", out)
    assert result.exit_code == 0, result.output
    slices = [pydicom.dcmread(p) for p in sorted((patient / "ct").glob("*.dcm"))]
    volume = build_volume(slices)
    printed = _printed(result.stdout)
    assert set(printed) == {"liver", "lung"} and all(unit == "mL" for _, unit in printed.values())
    for name in ("liver", "lung"):
        mask = nib.load(out / f"{name}.nii.gz")
        assert mask.shape == volume.image.shape and np.allclose(mask.affine, volume.image.affine)
        data = np.asarray(mask.dataobj).astype(bool)
        voxel_ml = float(np.prod(volume.image.header.get_zooms()[:3])) / 1000
        assert data.any() and printed[name][0] == pytest.approx(data.sum() * voxel_ml, abs=0.06)
    seg = hd.seg.segread(out / "seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "lung"]
    assert {uid for _, _, uid in seg.get_source_image_uids()} == set(volume.sop_instance_uids)
    pixels = seg.get_pixels_by_source_instance(volume.sop_instance_uids, ignore_spatial_locations=True,
                                               assert_missing_frames_are_empty=True)
    lung = np.asarray(nib.load(out / "lung.nii.gz").dataobj).astype(bool)
    assert np.array_equal(pixels[..., 1].astype(bool), lung.transpose(2, 1, 0))


def test_default_prompts_and_a_rerun_replaces_only_its_own_files(patient: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_segment(patient / "ct", "--out", out).exit_code == 0  # the abdominal CT strategy's six prompts
    names = {"liver", "spleen", "kidney_left", "kidney_right", "lung", "lesion"}
    assert {p.name for p in out.iterdir()} == {MARKER, "seg.dcm", *(f"{n}.nii.gz" for n in names)}
    again = run_segment(patient / "ct", "--prompt", "spleen", "--out", out)
    assert again.exit_code == 0, again.output
    assert {p.name for p in out.iterdir()} == {MARKER, "seg.dcm", "spleen.nii.gz"}
    assert json.loads((out / MARKER).read_text())["files"] == ["seg.dcm", "spleen.nii.gz"]


def test_single_planar_file_prints_areas(patient: Path, tmp_path: Path) -> None:
    (cxr,) = (patient / "cxr").glob("*.dcm")
    out = tmp_path / "out"
    result = run_segment(cxr, "--out", out)
    assert result.exit_code == 0, result.output
    printed = _printed(result.stdout)
    assert set(printed) == {"lung", "heart"} and all(unit == "mm²" for _, unit in printed.values())
    ds = pydicom.dcmread(cxr)
    spacing = [float(v) for v in ds.get("PixelSpacing") or ds.ImagerPixelSpacing]
    lung = nib.load(out / "lung.nii.gz")
    assert lung.shape == (ds.Columns, ds.Rows, 1)
    assert printed["lung"][0] == pytest.approx(np.asarray(lung.dataobj).sum() * spacing[0] * spacing[1], abs=0.06)
    seg = hd.seg.segread(out / "seg.dcm")
    frame = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID)], ignore_spatial_locations=True)[0, ..., 0]
    assert np.array_equal(frame.astype(bool), np.asarray(lung.dataobj)[:, :, 0].T.astype(bool))


def test_nifti_input_keeps_its_grid(patient: Path, tmp_path: Path) -> None:
    volume = build_volume([pydicom.dcmread(p) for p in sorted((patient / "ct").glob("*.dcm"))])
    # the same anatomy on another voxel grid: reoriented to RAS and flipped along x, with the matching affine
    flipped = nib.as_closest_canonical(volume.image).slicer[::-1, :, :]
    nib.save(flipped, tmp_path / "ct.nii.gz")
    result = run_segment(tmp_path / "ct.nii.gz", "--prompt", "liver", "--out", tmp_path / "nifti")
    assert result.exit_code == 0, result.output
    mask = nib.load(tmp_path / "nifti" / "liver.nii.gz")
    assert mask.shape == flipped.shape and np.allclose(mask.affine, flipped.affine)
    assert not (tmp_path / "nifti" / "seg.dcm").exists()
    dicom = run_segment(patient / "ct", "--prompt", "liver", "--out", tmp_path / "dicom")
    assert dicom.exit_code == 0, dicom.output
    from_dicom = nib.load(tmp_path / "dicom" / "liver.nii.gz")
    assert not np.allclose(from_dicom.affine, mask.affine)
    canonical = [np.asarray(nib.as_closest_canonical(m).dataobj) for m in (mask, from_dicom)]
    assert canonical[0].any() and np.array_equal(*canonical)  # one anatomy, one mask, whichever grid it came on
    assert _printed(result.stdout)["liver"] == _printed(dicom.stdout)["liver"]


@pytest.mark.parametrize("case", ["unsupported_on_input", "unknown_prompt", "missing_input", "no_dicom", "mixed_series",
                                  "backend", "nifti_without_prompt", "no_default_prompts"])
def test_user_mistakes_are_one_line_exit_2(case: str, patient: Path, tmp_path: Path) -> None:
    (cxr,) = (patient / "cxr").glob("*.dcm")
    (us,) = (patient / "us").glob("*.dcm")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("not DICOM")
    nifti = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), nifti)
    args = {"unsupported_on_input": [cxr, "--prompt", "liver"], "unknown_prompt": [patient / "ct", "--prompt", "pancreas"],
            "missing_input": [tmp_path / "nope"], "no_dicom": [tmp_path / "empty"], "mixed_series": [patient],
            "backend": [patient / "ct", "--backend", "onnx"], "nifti_without_prompt": [nifti],
            "no_default_prompts": [us]}[case]
    result = run_segment(*args, "--out", tmp_path / "out")
    assert_one_line_user_error(result)
    assert not (tmp_path / "out").exists()  # nothing written for a refused request
    expected = {"unsupported_on_input": "cannot segment `liver`", "unknown_prompt": "unknown prompt `pancreas`",
                "backend": "needs HCA_SEG_ONNX_MODEL", "mixed_series": "series"}.get(case, "")
    assert expected in result.stderr


def test_a_foreign_folder_is_refused_and_left_alone(patient: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "liver.nii.gz").write_bytes(b"someone else's mask")
    assert_one_line_user_error(run_segment(patient / "ct", "--prompt", "liver", "--out", out))
    assert (out / "liver.nii.gz").read_bytes() == b"someone else's mask"
    shutil.rmtree(out)
    assert run_segment(patient / "ct", "--prompt", "liver", "--out", out).exit_code == 0
    (out / "notes.txt").write_text("mine")  # a file the earlier run did not write: the folder is no longer ours
    assert_one_line_user_error(run_segment(patient / "ct", "--prompt", "liver", "--out", out))
    assert (out / "notes.txt").read_text() == "mine" and (out / "liver.nii.gz").exists()
