"""The splicing writer gives exactly the bytes pydicom's writer gives, on public and synthetic files."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from hca_assets.dicom import deid
from hca_assets.dicom.profile import DeidProfile
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets.dicom.splice import write_spliced
from hca_assets_tests.conftest import public_test_files


def test_spliced_output_is_byte_identical_to_pydicom(monkeypatch: pytest.MonkeyPatch,
                                                     small_study: tuple[Path, Path]) -> None:
    compared: list[str] = []

    def both(ds: pydicom.Dataset, original: bytes) -> bytes:
        spliced = write_spliced(ds, original)
        if spliced is None:  # another encoding (big endian redacted to little): pydicom's writer alone
            return real_write(ds, original)
        reference = io.BytesIO()
        pydicom.dcmwrite(reference, ds, enforce_file_format=True)
        assert spliced == reference.getvalue(), ds.SOPClassUID
        compared.append(str(ds.SOPClassUID))
        return spliced

    real_write = deid._write
    monkeypatch.setattr(deid, "_write", both)
    engine = deid.DeidEngine(DeidProfile(), Pseudonymizer(b"splice-test-key-0123"), None, "off")
    for path in [*public_test_files(), *sorted(small_study[0].rglob("*.dcm"))]:
        try:
            engine.deidentify_bytes(path.read_bytes())
        except deid.DeidFailure:
            continue
    assert len(compared) >= 150 and len(set(compared)) >= 10


def test_changed_encoding_is_not_spliced() -> None:
    path = next(p for p in public_test_files() if p.name == "MR_small_bigendian.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    assert write_spliced(ds, path.read_bytes()) is None
