"""The de-identification engine on synthetic PHI-laden studies and the public DICOM corpora."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import highdicom
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from hca_assets.dicom.burned_in import BurnedInStatus, RapidOcrReader, TextLine
from hca_assets.dicom.deid import DeidEngine, DeidFailure
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.io import InvalidInstance, inspect_file, read_dataset
from hca_assets.dicom.profile import DeidOption, DeidProfile
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets.synthetic.generator import PRIVATE_CREATOR
from hca_assets_tests.conftest import manifest_strings, public_test_files

KEY = b"0123456789abcdef-test"


@pytest.fixture(scope="module")
def engine() -> DeidEngine:
    return DeidEngine(DeidProfile(), Pseudonymizer(KEY), RapidOcrReader())


@pytest.fixture(scope="module")
def outputs(small_study: tuple[Path, Path], engine: DeidEngine) -> dict[str, tuple[bytes, Dataset, Dataset]]:
    """Relative input path → (output bytes, output dataset, original dataset)."""
    out = {}
    for path in sorted(small_study[0].rglob("*.dcm")):
        data, outcome = engine.deidentify_bytes(path.read_bytes())
        out[str(path.relative_to(small_study[0]))] = (data, outcome.dataset, pydicom.dcmread(path))
    assert len(out) >= 10  # every test below loops over these: none may pass on an empty study
    return out


def test_zero_manifest_strings_in_any_output_byte(outputs: dict, small_study: tuple[Path, Path]) -> None:  # type: ignore[type-arg]
    strings = [s.lower().encode() for s in manifest_strings(small_study[1])]
    assert len(strings) > 50
    for name, (data, _, _) in outputs.items():
        low = data.lower()
        assert not [s for s in strings if s in low], name


def test_burned_in_text_is_gone_from_the_pixels(outputs: dict, small_study: tuple[Path, Path]) -> None:  # type: ignore[type-arg]
    (name,) = [n for n in outputs if n.split("/")[1] == "us"]
    data, ds, original = outputs[name]
    assert ds.BurnedInAnnotation == "NO"
    assert "113101" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}  # clean pixel data
    words = {w.upper().strip(":") for line in json.loads((small_study[1] / "phi_manifest.json").read_text())["patients"][0]["values"]
             if line["attribute"] == "BurnedInText" for w in line["value"].split() if len(w) >= 5}

    def ocr_text(pixels: np.ndarray) -> str:
        return "".join(line.text for line in RapidOcrReader().read(pixels)).replace(" ", "").upper()

    before = ocr_text(original.pixel_array)
    assert len([w for w in words if w in before]) >= 4  # OCR does read the identifiers in the original
    after = ocr_text(pydicom.dcmread(io.BytesIO(data)).pixel_array)
    assert not [w for w in words if w in after]
    assert not np.array_equal(original.pixel_array, ds.pixel_array)


def test_pixels_without_text_stay_byte_identical(outputs: dict) -> None:  # type: ignore[type-arg]
    for name, (_, ds, original) in outputs.items():
        if ds.Modality != "US":
            assert ds.PixelData == original.PixelData, name
            assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_profile_marks_and_private_tags(outputs: dict) -> None:  # type: ignore[type-arg]
    for name, (_, ds, original) in outputs.items():
        assert ds.PatientIdentityRemoved == "YES"
        assert {"113100", "113107", "113108"} <= {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
        assert not [e for e in ds.iterall() if e.tag.is_private], name
        assert original.private_block(0x0011, PRIVATE_CREATOR)  # the input had them
        for kw in ("OtherPatientIDsSequence", "RequestAttributesSequence", "PatientAddress", "InstitutionName",
                   "ReferringPhysicianName", "StudyDescription", "ImageComments"):
            assert kw not in ds or not ds[kw].value, (name, kw)
        assert ds.PatientSex == original.PatientSex and ds.PatientAge == original.PatientAge  # characteristics kept
        assert not ds.PatientBirthDate


def test_uids_replaced_valid_and_consistent(outputs: dict, engine: DeidEngine) -> None:  # type: ignore[type-arg]
    studies: dict[str, set[str]] = {}
    for_uids: dict[str, set[str]] = {}
    for _, ds, original in outputs.values():
        for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            assert ds[kw].value != original[kw].value and len(ds[kw].value) <= 64
            assert pydicom.uid.UID(ds[kw].value).is_valid
            assert ds[kw].value == engine.pseudo.uid(original[kw].value)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        studies.setdefault(original.StudyInstanceUID, set()).add(ds.StudyInstanceUID)
        if "FrameOfReferenceUID" in original:
            for_uids.setdefault(original.FrameOfReferenceUID, set()).add(ds.FrameOfReferenceUID)
    assert all(len(v) == 1 for v in studies.values()) and all(len(v) == 1 for v in for_uids.values())
    assert len({ds.PatientID for _, ds, _ in outputs.values()}) == 1


def test_date_intervals_preserved_within_the_patient(outputs: dict) -> None:  # type: ignore[type-arg]
    def d(v: str) -> datetime:
        return datetime.strptime(v, "%Y%m%d")

    pairs = {(o.StudyInstanceUID, o.StudyDate, ds.StudyDate) for _, ds, o in outputs.values()}
    shifts = {(d(new) - d(old)).days for _, old, new in pairs}
    assert len(shifts) == 1 and shifts != {0}
    assert len({old for _, old, _ in pairs}) > 1  # several studies, several dates, one shift
    for _, ds, o in outputs.values():
        assert ds.StudyTime == o.StudyTime  # whole-day shift keeps the time of day
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_deterministic_for_a_key_and_different_for_another(small_study: tuple[Path, Path], engine: DeidEngine) -> None:
    path = min(small_study[0].rglob("ct/0003.dcm"))
    first, _ = engine.deidentify_bytes(path.read_bytes())
    again, _ = DeidEngine(DeidProfile(), Pseudonymizer(KEY), RapidOcrReader()).deidentify_bytes(path.read_bytes())
    other, _ = DeidEngine(DeidProfile(), Pseudonymizer(b"another-key-0123456")).deidentify_bytes(path.read_bytes())
    assert first == again
    a, b = pydicom.dcmread(io.BytesIO(first)), pydicom.dcmread(io.BytesIO(other))
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.PatientID != b.PatientID and a.StudyDate != b.StudyDate


def test_external_mapping_honoured(small_study: tuple[Path, Path]) -> None:
    path = min(small_study[0].rglob("ct/0001.dcm"))
    original = pydicom.dcmread(path)
    pseudo = Pseudonymizer(KEY, uid_map={original.StudyInstanceUID: "1.2.3.4.5"}, patient_map={original.PatientID: "TRIAL-007"})
    _, outcome = DeidEngine(DeidProfile(), pseudo).deidentify_bytes(path.read_bytes())
    assert (outcome.dataset.StudyInstanceUID, outcome.dataset.PatientID) == ("1.2.3.4.5", "TRIAL-007")


def test_nested_sequences_are_processed_recursively(small_study: tuple[Path, Path]) -> None:
    ds = pydicom.dcmread(min(small_study[0].rglob("ct/0001.dcm")))
    inner = Dataset()
    inner.PatientName = "NESTED^SECRETNAME"
    inner.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    inner.AccessionNumber = "NESTEDACC123"
    outer = Dataset()
    outer.CodeValue = "113076"
    outer.DerivationCodeSequence = Sequence([inner])
    ds.DerivationCodeSequence = Sequence([outer])  # a sequence the profile keeps, two levels deep: cleaned, not dropped
    buffer = io.BytesIO()
    ds.save_as(buffer)
    data, outcome = DeidEngine(DeidProfile(), Pseudonymizer(KEY)).deidentify_bytes(buffer.getvalue())
    assert b"SECRETNAME" not in data and b"NESTEDACC123" not in data
    item = outcome.dataset.DerivationCodeSequence[0].DerivationCodeSequence[0]  # kept, so the test shows recursion
    assert item.ReferencedSOPInstanceUID == outcome.dataset.SOPInstanceUID  # consistent reference
    assert item.ReferencedSOPInstanceUID != ds.SOPInstanceUID


def test_clean_descriptors_keeps_text_without_identifiers(small_study: tuple[Path, Path]) -> None:
    path = min(small_study[0].rglob("ct/0001.dcm"))
    original = pydicom.dcmread(path)
    profile = DeidProfile(options=frozenset({*DeidProfile().options, DeidOption.CLEAN_DESCRIPTORS}))
    _data, outcome = DeidEngine(profile, Pseudonymizer(KEY)).deidentify_bytes(path.read_bytes())
    description = outcome.dataset.StudyDescription
    assert description.startswith("CT CHEST ABDOMEN") and "[removed]" in description
    assert original.PatientName.family_name.lower() not in description.lower()
    assert original.PatientID not in outcome.dataset.ImageComments
    assert "113105" in {i.CodeValue for i in outcome.dataset.DeidentificationMethodCodeSequence}


def test_safe_private_safelist(small_study: tuple[Path, Path]) -> None:
    path = min(small_study[0].rglob("ct/0001.dcm"))
    profile = DeidProfile(options=frozenset({*DeidProfile().options, DeidOption.RETAIN_SAFE_PRIVATE}),
                          safe_private=frozenset({(PRIVATE_CREATOR, 0x12)}))
    _, outcome = DeidEngine(profile, Pseudonymizer(KEY)).deidentify_bytes(path.read_bytes())
    private = [e for e in outcome.dataset if e.tag.is_private and not e.tag.is_private_creator]
    assert [e.tag.element & 0xFF for e in private] == [0x12]


@pytest.mark.usefixtures("leaky_engine")
def test_a_leak_is_caught_and_nothing_is_returned(small_study: tuple[Path, Path]) -> None:
    """With the engine sabotaged to keep PatientAddress, the verification must refuse the output."""
    path = min(small_study[0].rglob("ct/0001.dcm"))
    with pytest.raises(DeidFailure) as err:
        DeidEngine(DeidProfile(), Pseudonymizer(KEY)).deidentify_bytes(path.read_bytes())
    assert err.value.reason == QuarantineReason.PHI_RESIDUE and "PatientAddress" in err.value.message
    assert pydicom.dcmread(path).PatientAddress not in str(err.value)


class AlwaysText:
    """A reader that keeps reading a name wherever it looks: redaction can never be verified."""

    name = "always"

    def read(self, image: np.ndarray) -> list[TextLine]:
        return [TextLine((0, 0, 10, 10), "SMITH", 0.99)]


def test_unverifiable_burned_in_text_is_refused(small_study: tuple[Path, Path]) -> None:
    path = min(small_study[0].rglob("us/*.dcm"))
    with pytest.raises(DeidFailure) as err:
        DeidEngine(DeidProfile(), Pseudonymizer(KEY), AlwaysText()).deidentify_bytes(path.read_bytes())
    assert err.value.reason == QuarantineReason.BURNED_IN_UNVERIFIED
    with pytest.raises(DeidFailure):  # flagged YES and OCR turned off: never passed on unverified
        DeidEngine(DeidProfile(), Pseudonymizer(KEY), None, "off").deidentify_bytes(path.read_bytes())


def test_public_corpora_deidentify_to_valid_dicom() -> None:
    engine = DeidEngine(DeidProfile(), Pseudonymizer(KEY), None, ocr_mode="off")
    done, refused, highdicom_read = 0, {}, 0
    for path in public_test_files():
        try:
            inspect_file(path, KEY)
        except InvalidInstance:
            continue  # ingest quarantines these; de-identification never sees them
        original = read_dataset(path.read_bytes())
        try:
            data, outcome = engine.deidentify_bytes(path.read_bytes())
        except DeidFailure as exc:
            refused[path.name] = exc.reason
            continue
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.SOPInstanceUID != original.SOPInstanceUID
        if "PixelData" in original and outcome.burned_in == BurnedInStatus.NOT_CHECKED:
            assert ds.PixelData == original.PixelData, path.name
        if original.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4") and \
                ds.file_meta.TransferSyntaxUID.is_little_endian:
            highdicom.Image.from_dataset(ds, copy=False)  # highdicom reads it
            highdicom_read += 1
        done += 1
    assert done >= 140 and not refused, refused
    assert highdicom_read >= 20
