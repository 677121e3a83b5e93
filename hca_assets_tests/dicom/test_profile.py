"""The profile is derived from Table E.1-1: every row, every option, combined codes resolved by IOD type."""

from __future__ import annotations

import pytest
from pydicom.tag import Tag

from hca_assets.dicom.iod import attribute_types
from hca_assets.dicom.profile import DeidOption, DeidProfile, resolve_action
from hca_assets.dicom.ps315 import load_table


def test_every_concrete_row_has_an_action() -> None:
    rows = load_table()
    assert len(rows) == 621
    assert len(DeidProfile(options=frozenset()).actions) == 621 - 4  # 3 wildcard rows + private row


@pytest.mark.parametrize(("keyword", "options", "expected"), [
    ("PatientName", frozenset(), "Z"),
    ("StudyDate", frozenset(), "Z"),
    ("StudyDate", {DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES}, "C"),
    ("StudyDate", {DeidOption.RETAIN_LONGITUDINAL_FULL_DATES}, "K"),
    ("PatientAge", frozenset(), "X"),
    ("PatientAge", {DeidOption.RETAIN_PATIENT_CHARACTERISTICS}, "K"),
    ("StudyDescription", {DeidOption.CLEAN_DESCRIPTORS}, "C"),
    ("SOPInstanceUID", frozenset(), "U"),
    ("SOPInstanceUID", {DeidOption.RETAIN_UIDS}, "K"),
    ("InstitutionName", {DeidOption.RETAIN_INSTITUTION_IDENTITY}, "K"),
    ("DeviceSerialNumber", {DeidOption.RETAIN_DEVICE_IDENTITY}, "K"),
])
def test_options_override_the_basic_action(keyword: str, options: frozenset[DeidOption], expected: str) -> None:
    assert DeidProfile(options=frozenset(options)).action_for(Tag(keyword)) == expected


def test_wildcard_groups() -> None:
    profile = DeidProfile()
    assert profile.action_for(Tag(0x5004, 0x0010)) == "X"  # curve data
    assert profile.action_for(Tag(0x6002, 0x3000)) == "X"  # overlay data
    assert profile.action_for(Tag(0x601E, 0x4000)) == "X"  # overlay comments
    assert profile.action_for(Tag(0x6000, 0x0010)) is None  # overlay rows: not in the table


@pytest.mark.parametrize(("code", "attribute_type", "expected"), [
    ("X/Z", "3", "X"), ("X/Z", "2", "Z"), ("X/Z", None, "X"),
    ("Z/D", "2", "Z"), ("Z/D", "1", "D"),
    ("X/D", "3", "X"), ("X/D", "1C", "D"),
    ("X/Z/D", "3", "X"), ("X/Z/D", "2C", "Z"), ("X/Z/D", "1", "D"),
    ("X/Z/U*", "3", "X"), ("X/Z/U*", "2", "Z"), ("X/Z/U*", "1", "U"),
    ("U", "1", "U"),
])
def test_combined_codes_pick_the_strictest_valid_action(code: str, attribute_type: str | None, expected: str) -> None:
    assert resolve_action(code, attribute_type) == expected


def test_iod_types_come_from_the_standard() -> None:
    ct = attribute_types("1.2.840.10008.5.1.4.1.1.2")
    assert ct[((), "PatientID")] == "2" and ct[((), "FrameOfReferenceUID")] == "1"
    assert ct[((), "InstitutionName")] == "3"


def test_invalid_option_combinations() -> None:
    with pytest.raises(ValueError, match="not both"):
        DeidProfile(options=frozenset({DeidOption.RETAIN_LONGITUDINAL_FULL_DATES, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES}))
    with pytest.raises(ValueError, match="Retain Safe Private"):
        DeidProfile(safe_private=frozenset({("X", 0x10)}))
    with pytest.raises(ValueError):
        DeidProfile(options=frozenset({"no_such_option"}))  # type: ignore[arg-type]


def test_method_codes_are_cid_7050() -> None:
    codes = DeidProfile().method_codes()
    assert codes[0] == ("113100", "Basic Application Confidentiality Profile")
    assert {c for c, _ in codes} == {"113100", "113107", "113108"}
