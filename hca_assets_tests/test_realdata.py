"""The real-data corpus is present and unchanged, and its two PHI checks find what they should."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from hca_assets_tests.realdata import header_leaks, readable_phi, real_corpus


def _case(name: str):  # type: ignore[no-untyped-def]
    return next(c for c in real_corpus() if c.name == name)


def _with_blank_pixels(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    arr = np.zeros_like(ds.pixel_array)
    ds.PixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if ds.get("PhotometricInterpretation", "").startswith("YBR"):
        ds.PhotometricInterpretation = "RGB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _without_phi(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for elem in list(ds.iterall()):
        if elem.VR in ("PN", "DA", "DT", "LO", "SH", "ST", "LT", "UT", "UI"):
            elem.value = ""
    ds.remove_private_tags()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()  # the original UID holds a date
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_every_case_is_found_unchanged_and_described() -> None:
    cases = real_corpus()
    assert len({c.name for c in cases}) == len(cases)
    for case in cases:
        ds = pydicom.dcmread(io.BytesIO(case.data()), stop_before_pixels=True)  # sha256 checked inside
        assert (str(ds.get("Modality", "")), int(ds.get("NumberOfFrames", 1) or 1)) == (case.modality, case.frames)
        assert case.expected in ("deidentified", "quarantined") and (case.expected == "deidentified") != bool(case.reason)
        assert set(case.burned_in_phi) <= set(case.header_phi) and case.licence


def test_readable_phi_reads_a_banner_and_nothing_once_the_pixels_are_blank() -> None:
    for name in ("us_rgb_banner", "ct_banner_ankle"):
        original = _case(name).data()
        assert readable_phi(original, original) == list(_case(name).burned_in_phi)
        assert readable_phi(original, _with_blank_pixels(original)) == []


def test_header_leaks_names_surviving_values_only() -> None:
    original = _case("mr_phantom_siemens").data()
    leaks = header_leaks(original, original)
    assert {"PatientName", "PatientID", "PerformingPhysicianName", "StudyDate"} <= set(leaks)
    assert all(" " not in name and name.isidentifier() for name in leaks)  # attribute names, not values
    assert header_leaks(original, _without_phi(original)) == []
    assert header_leaks(original, _with_blank_pixels(_without_phi(original))) == []
