"""Validation of single files: the public test corpora, and every kind of bad input."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from hca_assets.config import Limits
from hca_assets.dicom import io as dicom_io
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.io import InstanceInfo, InvalidInstance, header_excerpt, inspect_file
from hca_assets.synthetic.bad_inputs import write_bad_inputs
from hca_assets_tests.conftest import public_test_files
from hca_assets_tests.crafted import PHI, oversized, rle_bomb

KEY = b"k" * 16
EXPECTED_SYNTAXES = {
    "1.2.840.10008.1.2": "implicit VR little endian",
    "1.2.840.10008.1.2.1": "explicit VR little endian",
    "1.2.840.10008.1.2.2": "explicit VR big endian",
    "1.2.840.10008.1.2.1.99": "deflated",
    "1.2.840.10008.1.2.5": "RLE lossless",
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}


def outcome(path: Path) -> InstanceInfo | QuarantineReason:
    try:
        return inspect_file(path, KEY)
    except InvalidInstance as exc:
        return exc.reason


def test_public_corpora_ingest_across_transfer_syntaxes() -> None:
    """Every public file is either ingested or quarantined with a reason; no other exception escapes."""
    files = public_test_files()
    results = {p.name: outcome(p) for p in files}
    ok = [r for r in results.values() if isinstance(r, InstanceInfo)]
    assert len(ok) >= 120, Counter(str(r) for r in results.values() if not isinstance(r, InstanceInfo))
    missing = set(EXPECTED_SYNTAXES) - {r.transfer_syntax for r in ok}
    assert not missing, [EXPECTED_SYNTAXES[m] for m in missing]
    assert {r.modality for r in ok} >= {"CT", "MR", "US", "OT"}


@pytest.mark.parametrize(("name", "reason"), [
    ("MR_truncated.dcm", QuarantineReason.TRUNCATED),
    ("rtplan_truncated.dcm", QuarantineReason.TRUNCATED),
    ("meta_missing_tsyntax.dcm", QuarantineReason.TRUNCATED),
    ("rtplan.dcm", QuarantineReason.NO_PIXEL_DATA),
    ("JPEG2000-embedded-sequence-delimiter.dcm", QuarantineReason.UNDECODABLE_PIXELS),
])
def test_known_broken_public_files(name: str, reason: QuarantineReason) -> None:
    path = next(p for p in public_test_files() if p.name == name)
    assert outcome(path) == reason


def test_jpeg_ls_near_lossless_decodes_but_lacks_uids() -> None:
    """pydicom's near-lossless JPEG-LS samples have no Study/Series UIDs: quarantined for that, not for pixels."""
    path = next(p for p in public_test_files() if p.name == "JPEGLSNearLossless_08.dcm")
    assert outcome(path) == QuarantineReason.MISSING_UID
    assert pydicom.dcmread(path).pixel_array.size > 0


def test_pydicom_warnings_quoting_values_are_silenced(small_study: tuple[Path, Path], tmp_path: Path,
                                                      recwarn: pytest.WarningsRecorder) -> None:
    ds = pydicom.dcmread(min(small_study[0].rglob("*.dcm")))
    with pydicom.config.disable_value_validation():
        ds.SeriesInstanceUID = "SECRET-PATIENT-NAME-NOT-A-UID"  # invalid UI value: pydicom would quote it
        ds.save_as(tmp_path / "bad_uid.dcm")
    recwarn.clear()
    _ = pydicom.dcmread(tmp_path / "bad_uid.dcm").SeriesInstanceUID  # the control: pydicom alone quotes the value
    assert [w for w in recwarn if "SECRET" in str(w.message)]
    recwarn.clear()
    inspect_file(tmp_path / "bad_uid.dcm", KEY)
    assert not [w for w in recwarn if "SECRET" in str(w.message)]


def test_multiframe_and_colour_facts() -> None:
    by_name = {p.name: p for p in public_test_files()}
    info = outcome(by_name["SC_rgb_rle_2frame.dcm"])
    assert isinstance(info, InstanceInfo)
    assert (info.frames, info.samples_per_pixel, info.photometric) == (2, 3, "RGB")
    assert info.pixel_bytes == 2 * 100 * 100 * 3


def test_raw_dataset_without_file_meta_is_accepted_as_image() -> None:
    by_name = {p.name: p for p in public_test_files()}
    info = outcome(by_name["OT-PAL-8-face.dcm"])
    assert isinstance(info, InstanceInfo) and info.transfer_syntax == "1.2.840.10008.1.2"


def test_every_bad_input_gets_its_reason_and_a_phi_free_message(
    small_study: tuple[Path, Path], phi_strings: list[str], tmp_path: Path
) -> None:
    valid = min(small_study[0].rglob("ct/0001.dcm"))
    expected = write_bad_inputs(valid, tmp_path, unreadable_dir=False)
    per_file = {k: v for k, v in expected.items()
                if v not in (QuarantineReason.DUPLICATE_INSTANCE, QuarantineReason.SOP_UID_CONFLICT)}
    assert len(per_file) == 8
    for name, reason in per_file.items():
        with pytest.raises(InvalidInstance) as err:
            inspect_file(tmp_path / name, KEY)
        assert err.value.reason == reason, name
        assert not [s for s in phi_strings if s in str(err.value)], name


def test_truncation_at_many_offsets_never_ingests(small_study: tuple[Path, Path], tmp_path: Path) -> None:
    data = min(small_study[0].rglob("mr/0001.dcm")).read_bytes()
    for offset in [1, 100, 131, 140, 400, 900, 1500, 2500, len(data) // 2, len(data) - 2]:
        cut = tmp_path / f"cut{offset}.dcm"
        cut.write_bytes(data[:offset])
        result = outcome(cut)
        assert result in (QuarantineReason.TRUNCATED, QuarantineReason.NOT_DICOM), (offset, result)


def test_patient_key_is_keyed_and_stable(small_study: tuple[Path, Path], tmp_path: Path) -> None:
    files = sorted(small_study[0].rglob("*.dcm"))[:2]
    a, b = (inspect_file(f, KEY) for f in files)
    assert a.patient_key == b.patient_key
    assert inspect_file(files[0], b"other-key-123456").patient_key != a.patient_key
    assert pydicom.dcmread(files[0]).PatientID not in a.patient_key


def test_permission_denied_file(small_study: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.dcm"
    shutil.copy(min(small_study[0].rglob("*.dcm")), path)

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert outcome(path) == QuarantineReason.UNREADABLE


def test_decompression_bomb_is_refused_from_its_header_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's 4 MB RLE file that decodes to 16384²: refused at once, before any pixel is decoded."""
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(rle_bomb(16384, 16384))

    def no_decoding(*_: object) -> int:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(dicom_io, "_decode_all_frames", no_decoding)
    with pytest.raises(InvalidInstance) as err:  # `no_decoding` proves it: no pixel was decoded to refuse it
        inspect_file(bomb, KEY)
    assert err.value.reason == QuarantineReason.TOO_MANY_PIXELS
    assert "16384×16384" in err.value.message and str(16384 * 16384) in err.value.message
    assert not [s for s in PHI if s in str(err.value)]


def test_the_pixel_limit_is_what_refuses_a_bomb(tmp_path: Path) -> None:
    """Crafted the same way at 2048², the file decodes (a real bomb, not a broken file); a limit one
    sample lower refuses it."""
    path = tmp_path / "small_bomb.dcm"
    path.write_bytes(rle_bomb(2048, 2048))
    assert inspect_file(path, KEY).pixel_bytes == 2048 * 2048
    with pytest.raises(InvalidInstance) as err:
        inspect_file(path, KEY, Limits(max_pixels=2048 * 2048 - 1))
    assert err.value.reason == QuarantineReason.TOO_MANY_PIXELS


def test_file_over_the_size_limit_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.dcm"
    oversized(path, 2 * 2**20)
    assert inspect_file(path, KEY, Limits(max_file_bytes=2 * 2**20)).file_size == 2 * 2**20  # valid at its size

    def no_reading(self: Path) -> bytes:
        raise AssertionError("the file was read")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(InvalidInstance) as err:
        inspect_file(path, KEY, Limits(max_file_bytes=2**20))
    assert err.value.reason == QuarantineReason.FILE_TOO_LARGE
    assert str(2 * 2**20) in err.value.message and str(2**20) in err.value.message


def test_header_excerpt_holds_numbers_and_a_standard_uid_only(tmp_path: Path) -> None:
    path = tmp_path / "big.dcm"
    oversized(path, 8 * 2**20)
    excerpt = header_excerpt(path)
    assert excerpt == {"file_size": 8 * 2**20, "bytes_parsed": 2**20, "transfer_syntax": "1.2.840.10008.1.2.1",
                       "rows": 256, "columns": 256, "frames": 1, "samples_per_pixel": 1, "bits_allocated": 8}
    assert not [s for s in PHI if s in json.dumps(excerpt)]

    hostile = tmp_path / "hostile.dcm"  # a "transfer syntax" that is a name: dropped, not copied
    data = path.read_bytes()
    assert data.count(b"1.2.840.10008.1.2.1\x00") == 1
    hostile.write_bytes(data.replace(b"1.2.840.10008.1.2.1\x00", b"BOMBER^JANE^Q\x00\x00\x00\x00\x00\x00\x00"))
    assert header_excerpt(hostile)["transfer_syntax"] is None
    assert "BOMBER" not in json.dumps(header_excerpt(hostile))
