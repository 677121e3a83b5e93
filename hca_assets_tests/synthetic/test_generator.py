"""The generator: deterministic, valid DICOM, PHI in ≥ 40 Table E.1-1 attributes, a complete PHI manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import highdicom
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from hca_assets.dicom.io import inspect_file
from hca_assets.dicom.ps315 import by_keyword
from hca_assets.synthetic import GeneratorOptions, generate
from hca_assets.synthetic.generator import PRIVATE_CREATOR
from hca_assets_tests.conftest import SMALL

TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "DA", "TM", "DT", "UI", "AE", "CS", "AS"}


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def walk(ds: Dataset):  # type: ignore[no-untyped-def]
    for elem in ds:
        if elem.VR == "SQ":
            yield elem
            for item in elem.value:
                yield from walk(item)
        else:
            yield elem


def test_deterministic_per_seed(tmp_path: Path) -> None:
    opts = GeneratorOptions(patients=2, seed=3, ct_slices=8, ct_size=32, cxr_size=64, mr_slices=8, mr_size=32)
    a = generate(tmp_path / "a" / "dicom", tmp_path / "a" / "truth", opts)
    generate(tmp_path / "b" / "dicom", tmp_path / "b" / "truth", opts)
    generate(tmp_path / "c" / "dicom", tmp_path / "c" / "truth", GeneratorOptions(**{**opts.__dict__, "seed": 4}))
    assert a.instances == 2 * opts.instances_per_patient
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    c = digest_tree(tmp_path / "c" / "dicom")
    assert set(c.values()).isdisjoint(digest_tree(tmp_path / "a" / "dicom").values())


def test_default_study_shapes_and_geometry(tmp_path: Path) -> None:
    generate(tmp_path / "d", tmp_path / "t", GeneratorOptions(patients=1, seed=0))
    ct = sorted(tmp_path.glob("d/*/ct/*.dcm"))
    assert len(ct) >= 48
    first, second = (pydicom.dcmread(p) for p in ct[:2])
    assert (first.Rows, first.Columns) == (512, 512)
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    dz = float(second.ImagePositionPatient[2]) - float(first.ImagePositionPatient[2])
    assert dz == pytest.approx(float(first.SliceThickness))
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert {pydicom.dcmread(p).Modality for p in tmp_path.glob("d/*/*/0001.dcm")} >= {"CT", "MR", "US"}


def test_every_instance_is_valid_and_readable(small_study: tuple[Path, Path]) -> None:
    files = sorted(small_study[0].rglob("*.dcm"))
    assert len(files) == SMALL.instances_per_patient
    for path in files:
        info = inspect_file(path, b"k" * 16)
        assert info.rows > 0 and info.sop_instance_uid
    image = highdicom.Image.from_file(files[0])  # highdicom's strict reader accepts our files too
    assert image.SOPInstanceUID == pydicom.dcmread(files[0]).SOPInstanceUID


def test_phi_in_at_least_40_profile_attributes_with_nesting(small_study: tuple[Path, Path]) -> None:
    table = by_keyword()
    files = sorted(small_study[0].rglob("*.dcm"))
    assert len(files) >= 10
    for path in files:
        ds = pydicom.dcmread(path)
        phi_keywords = {e.keyword for e in walk(ds) if e.keyword in table and table[e.keyword].basic != "K" and e.value not in (None, "")}
        assert len(phi_keywords) >= 40, (path.name, len(phi_keywords))
        for seq in ("OtherPatientIDsSequence", "RequestAttributesSequence", "ReferencedStudySequence"):
            assert len(ds[seq].value) >= 1
        assert ds.PatientName.family_name.title() in ds.StudyDescription.title()
        assert ds.private_block(0x0011, PRIVATE_CREATOR)[0x11].value == ds.PatientID


def test_manifest_lists_every_identifying_value(small_study: tuple[Path, Path]) -> None:
    manifest = json.loads((small_study[1] / "phi_manifest.json").read_text())
    listed = {e["value"] for p in manifest["patients"] for e in p["values"]}
    table = by_keyword()
    checked = 0
    for path in sorted(small_study[0].rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        for elem in walk(ds):
            in_profile = elem.keyword in table and table[elem.keyword].basic != "K"
            if (in_profile or elem.tag.is_private) and elem.VR in TEXT_VRS and not elem.tag.is_private_creator:
                values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
                for v in values:
                    if elem.keyword in ("PatientSex", "PatientAge", "PatientSize", "PatientWeight") or str(v) == "":
                        continue  # patient characteristics: kept by the default option, not identifiers
                    assert str(v) in listed, (elem.keyword or str(elem.tag), str(v))
                    checked += 1
    assert checked > 100
    assert set(manifest["strings"]) <= listed


def test_burned_in_text_is_in_the_pixels_and_the_truth(small_study: tuple[Path, Path]) -> None:
    rows = [json.loads(line) for line in (small_study[1] / "instances.jsonl").read_text().splitlines()]
    us = [r for r in rows if r["modality"] == "US"]
    assert len(us) == 1 and len(us[0]["burned_in_text"]) == 4
    ds = pydicom.dcmread(small_study[0] / us[0]["path"])
    assert ds.BurnedInAnnotation == "YES"
    pixels = ds.pixel_array
    manifest = json.loads((small_study[1] / "phi_manifest.json").read_text())
    burned = {e["value"] for e in manifest["patients"][0]["values"] if e["attribute"] == "BurnedInText"}
    for item in us[0]["burned_in_text"]:
        x0, y0, x1, y1 = item["box"]
        assert (pixels[y0:y1, x0:x1] > 200).sum() > 20, item["text"]  # white glyphs drawn there
        assert item["text"] in burned
    assert ds.PatientID in " ".join(burned)


def test_masks_match_volumes_and_intensities_are_plausible(small_study: tuple[Path, Path]) -> None:
    rows = [json.loads(line) for line in (small_study[1] / "instances.jsonl").read_text().splitlines()]
    ct_rows = sorted((r for r in rows if r["modality"] == "CT"), key=lambda r: r["slice_index"])
    masks = np.load(small_study[1] / ct_rows[0]["mask_file"])
    hu = np.stack([pydicom.dcmread(small_study[0] / r["path"]).pixel_array.astype(np.int32) - 1024 for r in ct_rows])
    assert masks["liver"].shape == hu.shape
    assert 40 < hu[masks["liver"] & ~masks.get("lesion", np.zeros_like(masks["liver"]))].mean() < 80
    lungs = masks["lung_left"] | masks["lung_right"]
    assert hu[lungs].mean() < -700
    assert {"chest", "abdomen"} <= {r["body_region"] for r in ct_rows}
    for r in ct_rows:
        assert r["lesion_present"] == ("lesion" in masks and bool(masks["lesion"][r["slice_index"]].any()))


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="patients"):
        GeneratorOptions(patients=0)
    with pytest.raises(ValueError, match="lesion_rate"):
        GeneratorOptions(patients=1, lesion_rate=2)
