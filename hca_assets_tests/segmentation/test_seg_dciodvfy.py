"""The SEGs `hca segment` writes from de-identified synthetic CT and chest X-ray pass dciodvfy (Debian
dicom3tools, installed by `make install`) without errors; warnings are allowed and shown."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from hca_assets.dicom.deid import DeidEngine
from hca_assets.dicom.profile import DeidProfile
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets.segmentation.local import LocalSegmenter
from hca_assets.segmentation.standalone import segment_input
from hca_assets.synthetic import GeneratorOptions, generate

OPTIONS = GeneratorOptions(patients=1, seed=5, ct_slices=12, ct_size=96, cxr_size=128, mr_slices=8, mr_size=64,
                           lesion_rate=1.0)


def _dciodvfy(path: Path) -> tuple[list[str], str]:
    """dciodvfy's error lines and its whole report."""
    tool = shutil.which("dciodvfy")
    assert tool, "dciodvfy is missing: `make install` installs the Debian package dicom3tools"
    done = subprocess.run([tool, str(path)], check=False, capture_output=True, text=True, timeout=60)
    report = done.stdout + done.stderr
    return [line for line in report.splitlines() if line.startswith("Error")], report


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The synthetic CT series and chest X-ray, de-identified by the pipeline's engine: kind → files."""
    root = tmp_path_factory.mktemp("dciodvfy")
    generate(root / "dicom", root / "truth", OPTIONS)
    engine = DeidEngine(DeidProfile(), Pseudonymizer(b"0123456789abcdef-test"), ocr_mode="off")
    out: dict[str, list[Path]] = {}
    for kind in ("ct", "cxr"):
        for source in sorted((root / "dicom").glob(f"*/{kind}/*.dcm")):
            data, _ = engine.deidentify_bytes(source.read_bytes())
            target = root / "deid" / kind / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            out.setdefault(kind, []).append(target)
    return out


@pytest.mark.parametrize("kind", ["ct", "cxr"])
def test_seg_passes_dciodvfy(kind: str, deidentified: dict[str, list[Path]], tmp_path: Path) -> None:
    files = deidentified[kind]
    result = segment_input(files[0].parent if kind == "ct" else files[0], tmp_path / "out", (), LocalSegmenter())
    assert result.seg_path is not None and len(result.structures) >= 2
    seg = pydicom.dcmread(result.seg_path)
    referenced = {str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    errors, report = _dciodvfy(result.seg_path)
    assert "Segmentation" in report, report  # dciodvfy recognised the IOD it checked
    assert not errors, report


def test_dciodvfy_reports_a_broken_seg(deidentified: dict[str, list[Path]], tmp_path: Path) -> None:
    """The check above can fail: a SEG without its (type 1) Segment Sequence is an error."""
    result = segment_input(deidentified["cxr"][0], tmp_path / "out", ("lung",), LocalSegmenter())
    assert result.seg_path is not None
    seg = pydicom.dcmread(result.seg_path)
    del seg.SegmentSequence
    broken = tmp_path / "broken.dcm"
    seg.save_as(broken)
    errors, report = _dciodvfy(broken)
    assert any("<SegmentSequence>" in e for e in errors), report


def test_deidentified_input_is_what_the_seg_describes(deidentified: dict[str, list[Path]], tmp_path: Path) -> None:
    """The SEG carries the de-identified patient, study and frame of reference, not the originals."""
    result = segment_input(deidentified["ct"][0].parent, tmp_path / "out", ("lung",), LocalSegmenter())
    assert result.seg_path is not None
    seg = pydicom.dcmread(result.seg_path)
    source = pydicom.dcmread(deidentified["ct"][0], stop_before_pixels=True)
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert seg.get(keyword) == source.get(keyword), keyword
