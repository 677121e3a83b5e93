"""Hostile single files cost only themselves: codestreams that declare more than their header (JPEG 2000 SIZ,
JPEG SOF), deflate bombs, RLE segment counts, a file meta that contradicts its data set, cuts inside the
Pixel Data header and impossible lengths — refused before decoding, by ingest's validation and by the
de-identification engine alike; an output that would not read back is never written."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from hca_assets.config import Limits
from hca_assets.dicom.codestream import CodestreamError, check_codestreams, declared_sizes
from hca_assets.dicom.deid import DeidFailure, _read_back
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.io import InvalidInstance, inspect_bytes, read_dataset
from hca_assets.dicom.profile import DeidProfile
from hca_assets.stages.deid import DeidRecord, DeidRejected, DeidSpec, deidentify_files
from hca_assets_tests import crafted

KEY = b"hostile-files-test-key-0123456789"
SPEC = DeidSpec(profile=DeidProfile(), key=KEY, ocr_mode="off")


def _plain(rows: int = 64, columns: int = 64) -> bytes:
    return crafted.instance(rows, columns, ExplicitVRLittleEndian, bytes(rows * columns))


HOSTILE = {
    "j2k_siz_bomb": (crafted.j2k_bomb, QuarantineReason.TOO_MANY_PIXELS),
    "jpeg_sof_bomb": (crafted.jpeg_bomb, QuarantineReason.TOO_MANY_PIXELS),
    "deflate_bomb": (lambda: crafted.deflate_bomb(2 << 30), QuarantineReason.FILE_TOO_LARGE),
    "rle_over_limit": (lambda: crafted.rle_bomb(16384, 16384), QuarantineReason.TOO_MANY_PIXELS),
    "cut_in_pixel_header": (lambda: crafted.cut_in_pixel_header(_plain()), QuarantineReason.TRUNCATED),
    "pixel_length_fffffff0": (lambda: crafted.huge_pixel_length(_plain()), QuarantineReason.TRUNCATED),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_ingest_refuses_before_decoding(name: str) -> None:
    make, reason = HOSTILE[name]
    with pytest.raises(InvalidInstance) as caught:
        inspect_bytes(make(), KEY)
    assert caught.value.reason == reason
    assert not any(p in caught.value.message for p in crafted.PHI)


def test_the_engine_refuses_each_alone_and_writes_the_rest(tmp_path: Path) -> None:
    """The issue's ``hca deid`` cases: bombs and cuts are rejected with their reasons, nothing is written for
    them, the good files beside them are de-identified (memory: the subprocess test below)."""
    src = tmp_path / "in"
    src.mkdir()
    for name, (make, _) in HOSTILE.items():
        (src / f"{name}.dcm").write_bytes(make())
    (src / "good.dcm").write_bytes(_plain())
    (src / "mismatch.dcm").write_bytes(crafted.meta_body_mismatch())
    sources = sorted(src.iterdir())
    results = dict(zip((p.stem for p in sources),
                       deidentify_files(sources, tmp_path / "out", SPEC, workers=1), strict=True))
    for name, (_, reason) in HOSTILE.items():
        assert isinstance(results[name], DeidRejected) and results[name].reason == reason, (name, results[name])
    assert isinstance(results["good"], DeidRecord) and isinstance(results["mismatch"], DeidRecord)
    written = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 2
    for path in written:  # every output reads back whole, in the syntax its meta names
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pydicom warns when the meta and the body disagree
            ds = pydicom.dcmread(path)
            assert ds.pixel_array.shape == (64, 64)


def test_a_contradicting_meta_is_read_by_the_body_and_written_consistent() -> None:
    """Explicit VR body, meta says Implicit: the transfer syntax is corrected to what the body is."""
    ds = read_dataset(crafted.meta_body_mismatch())
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.original_encoding == (False, True)
    assert inspect_bytes(crafted.meta_body_mismatch(), KEY).transfer_syntax == ExplicitVRLittleEndian


def test_a_compressed_syntax_over_an_implicit_body_is_refused() -> None:
    ds = pydicom.dcmread(io.BytesIO(_plain()))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    implicit = io.BytesIO()
    ds.save_as(implicit, enforce_file_format=True)
    body = implicit.getvalue()[132 + 12 + int.from_bytes(implicit.getvalue()[140:144], "little"):]
    meta = io.BytesIO()
    ds.file_meta.TransferSyntaxUID = RLELossless
    write_file_meta_info(DicomFileLike(meta), ds.file_meta)
    with pytest.raises(InvalidInstance) as caught:
        read_dataset(bytes(128) + b"DICM" + meta.getvalue() + body)
    assert caught.value.reason == QuarantineReason.ENCODING_MISMATCH


@pytest.mark.parametrize("broken", ["meta_contradicts_body", "cut_short"])
def test_an_output_that_does_not_read_back_is_refused(broken: str) -> None:
    """The guard on the engine's own output: what the old writer produced for the mismatch (meta Implicit,
    body explicit) and an output cut short are refused, never staged."""
    out = crafted.meta_body_mismatch() if broken == "meta_contradicts_body" else _plain()[:-100]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = pydicom.dcmread(io.BytesIO(_plain()))
        with pytest.raises(DeidFailure) as caught:
            _read_back(out, written, Limits())
    assert caught.value.reason == QuarantineReason.OUTPUT_UNREADABLE
    _read_back(_plain(), written, Limits())  # a sound output passes


def test_codestream_sizes_are_read_without_decoding() -> None:
    bomb = pydicom.dcmread(io.BytesIO(crafted.j2k_bomb(declared=30000)))
    sizes = list(declared_sizes(bomb.PixelData, bomb.file_meta.TransferSyntaxUID))
    assert [(s.rows, s.columns, s.samples) for s in sizes] == [(30000, 30000, 1)]
    ok = pydicom.dcmread(io.BytesIO(crafted.jpeg_bomb(declared=480)))
    check_codestreams(ok.PixelData, ok.file_meta.TransferSyntaxUID, rows=480, columns=640, samples=1,
                      bits_allocated=8, max_pixels=1 << 27)  # 480² declared fits inside 480×640


def test_rle_with_more_segments_than_the_header_allows_is_refused() -> None:
    header = np.zeros(16, "<u4")
    header[0] = 3  # three segments for one 8-bit sample
    header[1:4] = 64, 66, 68
    frame = header.tobytes() + b"\x81\x00" * 3
    with pytest.raises(CodestreamError, match="3 segment"):
        check_codestreams(encapsulate([frame]), RLELossless, rows=8, columns=8, samples=1, bits_allocated=8,
                          max_pixels=1 << 27)


_MEASURE = """
import sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from hca_assets.dicom.deid import DeidFailure
from hca_assets.stages.deid import DeidSpec
from hca_assets.dicom.profile import DeidProfile
engine = DeidSpec(DeidProfile(), b"k" * 32, ocr_mode="all", net=False).engine()
try:
    engine.deidentify_bytes(Path(sys.argv[1]).read_bytes())
    print("written", end=" ")
except DeidFailure as exc:
    print(exc.reason, end=" ")
status = Path("/proc/self/status").read_text()  # VmHWM: ru_maxrss keeps the forking parent's across exec
print(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) // 1024)
"""


@pytest.mark.parametrize("name", ["j2k_siz_bomb", "jpeg_sof_bomb", "deflate_bomb"])
def test_a_bomb_costs_the_engine_no_memory(name: str, tmp_path: Path) -> None:
    """In a fresh process with the screen on (it decodes every frame): refused at the memory of an import."""
    path = tmp_path / "bomb.dcm"
    path.write_bytes(HOSTILE[name][0]())
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120,
                          check=True)
    reason, peak_mib = done.stdout.split()
    assert reason == HOSTILE[name][1]
    assert int(peak_mib) < 600, peak_mib


def test_limits_reach_the_engine(tmp_path: Path) -> None:
    """``hca deid`` applies HCA_MAX_PIXELS too (a 256² file over a 10,000-sample limit)."""
    spec = DeidSpec(profile=DeidProfile(), key=KEY, ocr_mode="off", limits=Limits(max_pixels=10_000))
    (tmp_path / "a.dcm").write_bytes(_plain(256, 256))
    (result,) = deidentify_files([tmp_path / "a.dcm"], tmp_path / "out", spec)
    assert isinstance(result, DeidRejected) and result.reason == QuarantineReason.TOO_MANY_PIXELS
