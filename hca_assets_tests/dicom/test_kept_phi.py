"""PHI a PACS or modality copied into attributes the profile keeps (issue 20, item 4): on a real CT, the
patient's ID, name parts, original UIDs and birth date written into BodyPartExamined, ScanOptions, ImageType,
a CodeMeaning, SOPAuthorizationComment and WindowCenterWidthExplanation are cleaned where they sit, code
strings keep only well-formed values, and the independent verification finds what the engine left."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from hca_assets.dicom.burned_in import BurnedInStatus
from hca_assets.dicom.deid import DeidEngine
from hca_assets.dicom.profile import DeidProfile
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets.dicom.verify import collect_facts, verify_output
from hca_assets_tests.conftest import public_test_files

KEY = b"kept-phi-test-key-0123456789"
NAME, PATIENT_ID, BIRTH = "LINDQVIST^LUC", "MRN60634586", "19570312"


def contaminated() -> Dataset:
    """The real CT_small.dcm (pydicom-data) with its patient's identity copied into kept attributes."""
    ds = pydicom.dcmread(next(p for p in public_test_files() if p.name == "CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    ds.BodyPartExamined = PATIENT_ID
    ds.ScanOptions = ["HELICAL MODE", f"ID {PATIENT_ID}"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "LUC"]  # a short name part, as a whole value
    ds.SOPAuthorizationComment = f"released for Lindqvist, born {BIRTH}"
    ds.WindowCenterWidthExplanation = f"study {ds.StudyInstanceUID}"
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "818981001", "SCT", f"Abdomen {PATIENT_ID}"
    ds.AnatomicRegionSequence = Sequence([region])
    return ds


def encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cleaned() -> tuple[bytes, Dataset, Dataset]:
    original = contaminated()
    out, _ = DeidEngine(DeidProfile(), Pseudonymizer(KEY)).deidentify_bytes(encoded(original))
    return out, pydicom.dcmread(io.BytesIO(out)), original


def test_identifiers_in_kept_attributes_are_cleaned_where_they_sit(cleaned: tuple[bytes, Dataset, Dataset]) -> None:
    out, ds, original = cleaned
    low = out.lower()
    for value in (PATIENT_ID, "lindqvist", BIRTH, str(original.StudyInstanceUID)):
        assert value.lower().encode() not in low, value
    assert "LUC" not in list(ds.ImageType) and list(ds.ImageType)[:3] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert not str(ds.get("BodyPartExamined", "") or "")  # emptied, not renamed to a marker a mart would count
    assert ds.ScanOptions == "HELICAL MODE"  # the good value stays
    assert ds.AnatomicRegionSequence[0].CodeValue == "818981001"  # the code itself is kept


def test_code_strings_hold_only_well_formed_values(cleaned: tuple[bytes, Dataset, Dataset]) -> None:
    original = contaminated()
    original.PatientPosition = "Smith, John"  # no CS value can hold a comma or lower case
    out, _ = DeidEngine(DeidProfile(), Pseudonymizer(KEY)).deidentify_bytes(encoded(original))
    assert not str(pydicom.dcmread(io.BytesIO(out)).get("PatientPosition", "") or "")


def test_verification_finds_identifiers_left_in_kept_attributes(cleaned: tuple[bytes, Dataset, Dataset]) -> None:
    """Independent of the engine: its clean output with one kept attribute put back as the original had it
    (the engine's cleaning sabotaged) is not publishable, and the message names the attribute only."""
    out, _, original = cleaned
    facts = collect_facts(original, DeidProfile())
    assert not verify_output(facts, pydicom.dcmread(io.BytesIO(out)), out, DeidProfile(), BurnedInStatus.NO_TEXT_FOUND,
                             lambda: original)
    for attribute in ("BodyPartExamined", "ImageType", "SOPAuthorizationComment", "WindowCenterWidthExplanation"):
        left = pydicom.dcmread(io.BytesIO(out))
        setattr(left, attribute, original[attribute].value)
        problems = verify_output(facts, left, encoded(left), DeidProfile(), BurnedInStatus.NO_TEXT_FOUND,
                                 lambda: original)
        assert problems, attribute
        text = " ".join(problems).lower()
        assert not any(v in text for v in (PATIENT_ID.lower(), "lindqvist", BIRTH, " luc "))
