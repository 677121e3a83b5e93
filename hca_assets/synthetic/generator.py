"""Synthetic studies: valid, PHI-laden DICOM for CT, chest X-ray, brain MR and ultrasound with burned-in text.

Writes DICOM to ``out`` and, outside it, ground truth to ``truth``: ``instances.jsonl`` (one row per
instance: modality, body region, labels, lesion), ``masks/<series>.npz`` (one boolean array per
structure) and ``phi_manifest.json`` (every identifying value injected, with its attribute), so
leak tests can be exact. Deterministic per seed: patient ``p`` draws from ``default_rng([seed, p])``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from hca_assets.dicom.uids import uid_from_parts
from hca_assets.synthetic.identities import Identity, make_identity
from hca_assets.synthetic.phantoms import Phantom, brain_mr, chest_xray, ct_volume, ultrasound_with_text

__all__ = ["KINDS", "PRIVATE_CREATOR", "GenerationSummary", "GeneratorOptions", "generate"]

KINDS = ("ct", "cxr", "mr", "us")
PRIVATE_CREATOR = "HCA SYNTHETIC 1.0"
SOP_CLASS = {
    "ct": "1.2.840.10008.5.1.4.1.1.2",
    "cr": "1.2.840.10008.5.1.4.1.1.1",
    "dx": "1.2.840.10008.5.1.4.1.1.1.1",
    "mr": "1.2.840.10008.5.1.4.1.1.4",
    "us": "1.2.840.10008.5.1.4.1.1.6.1",
}
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GeneratorOptions:
    """What to generate. Sizes are pixels; ``lesion_rate`` is the chance a study carries a lesion."""

    patients: int
    seed: int = 0
    ct_slices: int = 48
    ct_size: int = 512
    cxr_size: int = 1024
    mr_slices: int = 24
    mr_size: int = 256
    lesion_rate: float = 0.5

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError(f"`patients` must be >= 1, got {self.patients}")
        if not 0.0 <= self.lesion_rate <= 1.0:
            raise ValueError(f"`lesion_rate` must be in [0, 1], got {self.lesion_rate}")
        for name in ("ct_slices", "ct_size", "cxr_size", "mr_slices", "mr_size"):
            if getattr(self, name) < 8:
                raise ValueError(f"`{name}` must be >= 8, got {getattr(self, name)}")

    @property
    def instances_per_patient(self) -> int:
        return self.ct_slices + 1 + self.mr_slices + 1


@dataclass(frozen=True)
class GenerationSummary:
    instances: int
    patients: int
    seconds: float
    out: Path
    truth: Path

    @property
    def instances_per_second(self) -> float:
        return self.instances / self.seconds if self.seconds else float("inf")


@dataclass
class _PhiLog:
    """Identifying values as they are injected: (value, attribute, category)."""

    entries: list[dict[str, str]] = field(default_factory=list)

    def add(self, value: object, attribute: str, category: str = "identifier") -> str:
        text = str(value)
        entry = {"value": text, "attribute": attribute, "category": category}
        if text and entry not in self.entries:
            self.entries.append(entry)
        return text


@dataclass(frozen=True)
class _Study:
    kind: str
    uid: str
    date: date
    time: str
    accession: str
    study_id: str
    description: str


def _uid(seed: int, *parts: object) -> str:
    return uid_from_parts(f"hca-synthetic:{seed}", *map(str, parts))


def _da(d: date) -> str:
    return d.strftime("%Y%m%d")


def generate(out: Path, truth: Path, options: GeneratorOptions, progress: Progress | None = None) -> GenerationSummary:
    """Write ``options.patients`` patients' studies to ``out`` and their ground truth to ``truth``."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (truth / "masks").mkdir(parents=True, exist_ok=True)
    total = options.patients * options.instances_per_patient
    done = 0
    truth_rows: list[dict[str, object]] = []
    manifest: list[dict[str, object]] = []
    for p in range(options.patients):
        rng = np.random.default_rng([options.seed, p])
        ident = make_identity(rng, p)
        phi = _PhiLog()
        folder = out / f"{ident.family.upper()}_{ident.mrn}"
        for ds, rel, row in _patient_instances(p, ident, rng, options, phi, truth):
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            truth_rows.append({**row, "path": str(path.relative_to(out))})
            done += 1
            if progress:
                progress(done, total)
        manifest.append({"patient_index": p, "values": phi.entries})
    _write_truth(truth, truth_rows, manifest, options)
    return GenerationSummary(done, options.patients, time.perf_counter() - start, out, truth)


def _write_truth(truth: Path, rows: list[dict[str, object]], manifest: list[dict[str, object]], options: GeneratorOptions) -> None:
    with (truth / "instances.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    strings = sorted(
        {e["value"] for m in manifest for e in m["values"] if e["category"] in ("identifier", "uid")}  # type: ignore[attr-defined]
    )
    (truth / "phi_manifest.json").write_text(
        json.dumps({"options": asdict(options), "patients": manifest, "strings": strings}, indent=1)
    )


def _patient_instances(
    p: int, ident: Identity, rng: np.random.Generator, o: GeneratorOptions, phi: _PhiLog, truth: Path
) -> Iterator[tuple[Dataset, str, dict[str, object]]]:
    for k, kind in enumerate(KINDS):
        study_date = ident.first_visit + timedelta(days=7 * k + int(rng.integers(0, 5)))
        study = _Study(
            kind=kind,
            uid=_uid(o.seed, p, kind, "study"),
            date=study_date,
            time=f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
            accession=f"ACC{int(rng.integers(10**6, 10**7))}",
            study_id=f"S{int(rng.integers(1000, 9999))}",
            description={"ct": "CT CHEST ABDOMEN W CONTRAST", "cxr": "XR CHEST PA", "mr": "MR BRAIN W WO CONTRAST",
                         "us": "US ABDOMEN COMPLETE"}[kind],
        )
        lesion = bool(rng.random() < o.lesion_rate)
        if kind == "ct":
            ph = ct_volume(rng, slices=o.ct_slices, size=o.ct_size, lesion=lesion)
            yield from _volume(p, ident, rng, o, phi, truth, study, ph, "CT", spacing=380 / o.ct_size, thickness=2.5)
        elif kind == "mr":
            ph = brain_mr(rng, slices=o.mr_slices, size=o.mr_size, tumour=lesion)
            yield from _volume(p, ident, rng, o, phi, truth, study, ph, "MR", spacing=230 / o.mr_size, thickness=5.0)
        elif kind == "cxr":
            ph = chest_xray(rng, size=o.cxr_size, lesion=lesion)
            modality = "CR" if rng.random() < 0.5 else "DX"
            yield _planar(p, ident, rng, o, phi, truth, study, ph, modality, spacing=0.35 * 1024 / o.cxr_size)
        else:
            lines = [ident.display_name.upper(), f"ID: {ident.mrn}", f"DOB: {ident.birth_date:%d/%m/%Y}",
                     f"{study_date:%Y-%m-%d}  {ident.hospital}"]
            ph = ultrasound_with_text(rng, lines=lines)
            for line in lines:
                phi.add(line, "BurnedInText")
            yield _planar(p, ident, rng, o, phi, truth, study, ph, "US", spacing=0.3)


def _series_uids(seed: int, p: int, kind: str) -> tuple[str, str]:
    return _uid(seed, p, kind, "series"), _uid(seed, p, kind, "frame-of-reference")


def _volume(
    p: int, ident: Identity, rng: np.random.Generator, o: GeneratorOptions, phi: _PhiLog, truth: Path,
    study: _Study, ph: Phantom, modality: str, *, spacing: float, thickness: float,
) -> Iterator[tuple[Dataset, str, dict[str, object]]]:
    series_uid, for_uid = _series_uids(o.seed, p, study.kind)
    np.savez_compressed(truth / "masks" / f"{series_uid}.npz", **ph.masks)
    n, size = ph.pixels.shape[0], ph.pixels.shape[1]
    origin = -spacing * size / 2
    for i in range(n):
        sop_uid = _uid(o.seed, p, study.kind, "instance", i)
        ds = _base(ident, rng, phi, study, modality, series_uid, sop_uid, o.seed, p)
        ds.FrameOfReferenceUID = phi.add(for_uid, "FrameOfReferenceUID", "uid")
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = i + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
        ds.SliceThickness = f"{thickness:g}"
        ds.SpacingBetweenSlices = f"{thickness:g}"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [f"{origin:.4f}", f"{origin:.4f}", f"{i * thickness - n * thickness / 2:.2f}"]
        ds.SliceLocation = f"{i * thickness - n * thickness / 2:.2f}"
        region = _region(study.kind, ph, i)
        if modality == "CT":
            ds.BodyPartExamined = "CHESTABDOMEN"
            ds.KVP = "120"
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
            ds.WindowCenter, ds.WindowWidth = "40", "400"
            stored = (ph.pixels[i].astype(np.int32) + 1024).astype(np.uint16)
        else:
            ds.BodyPartExamined = "HEAD"
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "SP", ""
            ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime = "2D", "12", "500"
            ds.MagneticFieldStrength, ds.ImagingFrequency = "3", "127.7"
            stored = ph.pixels[i]
        _set_pixels(ds, stored, bits_stored=12)
        lesion_here = ("lesion" in ph.masks and bool(ph.masks["lesion"][i].any())) or (
            "tumor_core" in ph.masks and bool(ph.masks["tumor_core"][i].any())
        )
        row = _truth_row(p, study, series_uid, sop_uid, modality, region, ph, lesion_here, slice_index=i)
        yield ds, f"{study.kind}/{i + 1:04d}.dcm", row


def _planar(
    p: int, ident: Identity, rng: np.random.Generator, o: GeneratorOptions, phi: _PhiLog, truth: Path,
    study: _Study, ph: Phantom, modality: str, *, spacing: float,
) -> tuple[Dataset, str, dict[str, object]]:
    series_uid, _ = _series_uids(o.seed, p, study.kind)
    np.savez_compressed(truth / "masks" / f"{series_uid}.npz", **ph.masks)
    sop_uid = _uid(o.seed, p, study.kind, "instance", 0)
    ds = _base(ident, rng, phi, study, modality, series_uid, sop_uid, o.seed, p)
    ds.InstanceNumber = 1
    if modality == "US":
        ds.BodyPartExamined = "ABDOMEN"
        ds.BurnedInAnnotation = "YES"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
        _set_pixels(ds, ph.pixels, bits_stored=8)
        region = "abdomen"
    else:
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImagerPixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
        ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
        ds.WindowCenter, ds.WindowWidth = "2000", "3500"
        if modality == "DX":
            ds.PresentationIntentType = "FOR PRESENTATION"
            ds.ImageType = ["ORIGINAL", "PRIMARY"]
        _set_pixels(ds, ph.pixels, bits_stored=12)
        region = "chest"
    row = _truth_row(p, study, series_uid, sop_uid, modality, region, ph, ph.lesion_type is not None, slice_index=0)
    row["burned_in_text"] = [{"text": t, "box": list(b)} for t, b in ph.text_boxes]
    return ds, f"{study.kind}/0001.dcm", row


def _region(kind: str, ph: Phantom, i: int) -> str:
    if kind == "mr":
        return "brain"
    lungs = ph.masks["lung_right"][i].any() or ph.masks["lung_left"][i].any()
    return "chest" if lungs else "abdomen"


def _truth_row(
    p: int, study: _Study, series_uid: str, sop_uid: str, modality: str, region: str, ph: Phantom,
    lesion_here: bool, *, slice_index: int,
) -> dict[str, object]:
    structures = sorted(name for name, m in ph.masks.items() if (m[slice_index] if m.ndim == 3 else m).any())
    return {
        "patient_index": p, "kind": study.kind, "modality": modality, "body_region": region,
        "class_label": f"{modality}_{region}".lower(),
        "study_instance_uid": study.uid, "series_instance_uid": series_uid, "sop_instance_uid": sop_uid,
        "slice_index": slice_index, "structures": structures,
        "lesion_present": bool(lesion_here), "lesion_type": ph.lesion_type if lesion_here else None,
        "study_has_lesion": ph.lesion_type is not None, "mask_file": f"masks/{series_uid}.npz",
    }


def _set_pixels(ds: Dataset, pixels: np.ndarray, *, bits_stored: int) -> None:
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint8 if ds.BitsAllocated == 8 else np.uint16)).tobytes()


def _name(person: tuple[str, str]) -> str:
    return f"{person[0].upper()}^{person[1].upper()}"


def _base(
    ident: Identity, rng: np.random.Generator, phi: _PhiLog, study: _Study, modality: str,
    series_uid: str, sop_uid: str, seed: int, p: int,
) -> Dataset:
    """Patient, study, series, equipment and SOP common modules, with PHI in ≥ 40 Table E.1-1 attributes."""
    a = phi.add
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = SOP_CLASS[modality.lower()]
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = a(sop_uid, "SOPInstanceUID", "uid")
    ds.StudyInstanceUID = a(study.uid, "StudyInstanceUID", "uid")
    ds.SeriesInstanceUID = a(series_uid, "SeriesInstanceUID", "uid")
    ds.Modality = modality
    ds.SeriesNumber = 1 + KINDS.index(study.kind)
    # patient module and patient characteristics
    ds.PatientName = a(ident.dicom_name, "PatientName")
    a(ident.family, "PatientName")
    a(ident.given, "PatientName")
    ds.PatientID = a(ident.mrn, "PatientID")
    ds.IssuerOfPatientID = a(ident.hospital, "IssuerOfPatientID")
    ds.PatientBirthDate = a(_da(ident.birth_date), "PatientBirthDate", "date")
    ds.PatientBirthTime = a("0415", "PatientBirthTime", "date")
    ds.PatientSex = ident.sex
    ds.PatientAge = f"{(study.date - ident.birth_date).days // 365:03d}Y"
    ds.PatientSize = f"{rng.uniform(1.5, 1.95):.2f}"
    ds.PatientWeight = f"{rng.uniform(50, 110):.1f}"
    ds.PatientAddress = a(ident.address, "PatientAddress")
    ds.PatientTelephoneNumbers = a(ident.phone, "PatientTelephoneNumbers")
    ds.PatientMotherBirthName = a(ident.mother_birth_name, "PatientMotherBirthName")
    ds.PatientBirthName = a(f"{ident.family.upper()}^{ident.given.upper()}^^^", "PatientBirthName")
    ds.OtherPatientNames = a(f"{ident.family.upper()}^{ident.given[0]}", "OtherPatientNames")
    ds.Occupation = a(ident.occupation, "Occupation")
    ds.MilitaryRank = a("Sergeant", "MilitaryRank")
    ds.BranchOfService = a("Coast Guard", "BranchOfService")
    ds.MedicalRecordLocator = a(f"SHELF-{ident.mrn[-4:]}-B", "MedicalRecordLocator")
    ds.EthnicGroup = a("Nordic", "EthnicGroup", "characteristic")
    ds.CountryOfResidence = a("United States", "CountryOfResidence")
    ds.RegionOfResidence = a(ident.address.split(", ")[2].rsplit(" ", 1)[0], "RegionOfResidence")
    ds.PatientReligiousPreference = a("Lutheran", "PatientReligiousPreference")
    ds.AdditionalPatientHistory = a(f"{ident.given} {ident.family} had a fall at home in {ident.first_visit.year}",
                                    "AdditionalPatientHistory")
    ds.PatientComments = a(f"Contact daughter at {ident.phone}", "PatientComments")
    ds.ResponsiblePerson = a(f"{ident.family.upper()}^ANNA", "ResponsiblePerson")
    ds.PatientState = a("Claustrophobic, sedated", "PatientState", "characteristic")
    other = Dataset()
    other.PatientID = a(ident.other_mrn, "OtherPatientIDsSequence.PatientID")
    other.IssuerOfPatientID = a("Lakeside Regional Hospital", "OtherPatientIDsSequence.IssuerOfPatientID")
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    # study, visit and request
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = a(_da(study.date), "StudyDate", "date")
    ds.InstanceCreationDate = ds.StudyDate
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = a(study.time, "StudyTime", "date")
    ds.InstanceCreationTime = ds.StudyTime
    ds.AccessionNumber = a(study.accession, "AccessionNumber")
    ds.StudyID = a(study.study_id, "StudyID")
    ds.StudyDescription = a(f"{study.description} - {ident.display_name}", "StudyDescription")
    ds.SeriesDescription = a(f"{study.description} {ident.family.upper()}", "SeriesDescription")
    ds.ImageComments = a(f"Patient {ident.family} ({ident.mrn}) seen on {study.date:%d %b %Y}", "ImageComments")
    ds.ProtocolName = a(f"{study.kind.upper()} protocol for {ident.family}", "ProtocolName")
    ds.AdmissionID = a(ident.admission_id, "AdmissionID")
    ds.AdmittingDiagnosesDescription = a(f"Abdominal pain, {ident.given} {ident.family}", "AdmittingDiagnosesDescription")
    ds.ReferringPhysicianName = a(_name(ident.referring), "ReferringPhysicianName")
    ds.ReferringPhysicianAddress = a(ident.hospital_address, "ReferringPhysicianAddress")
    ds.ReferringPhysicianTelephoneNumbers = a("+1-312-555-0188", "ReferringPhysicianTelephoneNumbers")
    ds.PhysiciansOfRecord = a(_name(ident.referring), "PhysiciansOfRecord")
    ds.PerformingPhysicianName = a(_name(ident.performing), "PerformingPhysicianName")
    ds.NameOfPhysiciansReadingStudy = a(_name(ident.reading), "NameOfPhysiciansReadingStudy")
    ds.OperatorsName = a(_name(ident.operator), "OperatorsName")
    ds.RequestingPhysician = a(_name(ident.referring), "RequestingPhysician")
    for person in (ident.referring, ident.performing, ident.reading, ident.operator):
        a(person[0], "StaffFamilyName")
    ds.PerformedProcedureStepID = a(f"PPS{study.accession[3:]}", "PerformedProcedureStepID")
    ds.PerformedProcedureStepDescription = a(f"{study.description} for {ident.family}", "PerformedProcedureStepDescription")
    ds.PerformedProcedureStepStartDate = ds.StudyDate
    ds.PerformedProcedureStepStartTime = ds.StudyTime
    request = Dataset()
    request.RequestedProcedureID = a(f"RP{study.accession[3:]}", "RequestAttributesSequence.RequestedProcedureID")
    request.ScheduledProcedureStepID = a(f"SPS{study.accession[3:]}", "RequestAttributesSequence.ScheduledProcedureStepID")
    request.RequestedProcedureDescription = a(f"{study.description}, requested by Dr {ident.referring[0]}",
                                              "RequestAttributesSequence.RequestedProcedureDescription")
    request.AccessionNumber = study.accession
    ds.RequestAttributesSequence = Sequence([request])
    prior = Dataset()
    prior.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    prior.ReferencedSOPInstanceUID = a(_uid(seed, p, "prior-study"), "ReferencedStudySequence.ReferencedSOPInstanceUID", "uid")
    ds.ReferencedStudySequence = Sequence([prior])
    # equipment and institution
    ds.Manufacturer = "HCA Synthetic"
    ds.ManufacturerModelName = "Phantom 3000"
    ds.InstitutionName = a(ident.hospital, "InstitutionName")
    ds.InstitutionAddress = a(ident.hospital_address, "InstitutionAddress")
    ds.InstitutionalDepartmentName = a("Radiology - Level 2", "InstitutionalDepartmentName")
    ds.StationName = a(f"RAD{study.kind.upper()}{ident.mrn[-2:]}", "StationName")
    ds.DeviceSerialNumber = a(f"SN-{ident.mrn[-6:]}", "DeviceSerialNumber")
    # private block carrying PHI (removed by the Basic Profile unless safelisted)
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", ident.dicom_name)
    block.add_new(0x11, "LO", ident.mrn)
    block.add_new(0x12, "DA", _da(ident.birth_date))
    block.add_new(0x13, "LT", a(f"Transferred from {ident.hospital}; home phone {ident.phone}", "PrivateComment"))
    return ds
