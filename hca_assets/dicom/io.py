"""Read and validate one DICOM file for ingest: header facts, content hash, decodable pixels.

Resource limits (:class:`hca_assets.config.Limits`) are enforced before any work they guard: the file
size before the file is read, a deflated data set's inflated size before it is inflated, the decoded sample
count (from the header, and from every frame's codestream) before pixels are decoded.

Every failure raises :class:`InvalidInstance` with a reason code and a message built only from
non-identifying facts (sizes, transfer syntax, exception class) — never from header values or
library exception text, which can quote PHI.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID_dictionary,
)

from hca_assets._infra.keys import keyed_digest
from hca_assets.config import DEFAULT_LIMITS, Limits
from hca_assets.dicom.codestream import CodestreamError, CodestreamTooLarge, check_codestreams
from hca_assets.dicom.enum import QuarantineReason

__all__ = ["InstanceInfo", "InvalidInstance", "body_encoding", "check_instance", "check_size", "header_excerpt", "inspect_bytes", "inspect_file",
           "read_dataset", "read_header", "sha256_file"]

REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
EXCERPT_BYTES = 1 << 20  # header bytes parsed for an excerpt: group 0028 follows any private groups before it


class InvalidInstance(ValueError):
    """A file that cannot be ingested. ``message`` is PHI-free by construction."""

    def __init__(self, reason: QuarantineReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class InstanceInfo:
    """Facts about one valid instance, as stored in the restricted ``raw_instances`` table."""

    sha256: str
    file_size: int
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    body_part: str | None
    transfer_syntax: str
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int
    photometric: str | None
    pixel_bytes: int
    patient_key: str


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def inspect_file(path: Path, key: bytes, limits: Limits = DEFAULT_LIMITS) -> InstanceInfo:
    """Validate one file and return its facts; raises :class:`InvalidInstance` on any defect. A file over
    ``limits.max_file_bytes`` is refused before it is read."""
    check_size(path.stat().st_size, limits)
    try:
        data = path.read_bytes()
    except PermissionError as exc:
        raise InvalidInstance(QuarantineReason.UNREADABLE, "file cannot be read: permission denied") from exc
    return inspect_bytes(data, key, limits)


def inspect_bytes(data: bytes, key: bytes, limits: Limits = DEFAULT_LIMITS) -> InstanceInfo:
    """Validate one file's bytes and return its facts; raises :class:`InvalidInstance` on any defect.

    pydicom's value-validation warnings quote the offending value (which can be PHI), so they are
    silenced here; the checks that matter raise with PHI-free messages instead.
    """
    check_size(len(data), limits)
    with warnings.catch_warnings(), pydicom.config.disable_value_validation():
        warnings.simplefilter("ignore")
        return _inspect(data, key, limits)


def check_size(size: int, limits: Limits) -> None:
    """Refuse a file over ``limits.max_file_bytes`` (before it is read). Raises :class:`InvalidInstance`."""
    if size > limits.max_file_bytes:
        raise InvalidInstance(QuarantineReason.FILE_TOO_LARGE,
                              f"file is {size} bytes, over the limit of {limits.max_file_bytes} bytes")


def _inspect(data: bytes, key: bytes, limits: Limits) -> InstanceInfo:
    if not data:
        raise InvalidInstance(QuarantineReason.EMPTY_FILE, "file is empty (0 bytes)")
    ds = read_dataset(data, limits)
    ts = UID(ds.file_meta.TransferSyntaxUID)
    check_instance(ds, data, limits)
    missing = [kw for kw in REQUIRED_UIDS if not str(ds.get(kw, "") or "").strip()]
    if missing:
        raise InvalidInstance(QuarantineReason.MISSING_UID, f"required attribute(s) missing or empty: {', '.join(missing)}")
    if not str(ds.get("Modality", "") or "").strip():
        raise InvalidInstance(QuarantineReason.MISSING_MODALITY, "required attribute Modality is missing or empty")
    if not any(kw in ds for kw in PIXEL_KEYWORDS):
        raise InvalidInstance(QuarantineReason.NO_PIXEL_DATA, f"no pixel data element (SOP class {_sop_class_name(ds)})")
    pixel_bytes = _decode_all_frames(ds, ts)
    patient = str(ds.get("PatientID", "") or ""), str(ds.get("IssuerOfPatientID", "") or "")
    return InstanceInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        file_size=len(data),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        modality=str(ds.Modality).strip().upper(),
        body_part=(str(ds.get("BodyPartExamined", "") or "").strip().upper() or None),
        transfer_syntax=str(ts),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        frames=int(ds.get("NumberOfFrames", 1) or 1),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
        bits_allocated=int(ds.get("BitsAllocated", 0) or 0),
        photometric=(str(ds.get("PhotometricInterpretation", "") or "") or None),
        pixel_bytes=pixel_bytes,
        patient_key=keyed_digest(key, "patient", *patient)[:32],
    )


def check_instance(ds: Dataset, data: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """The checks every reader of an instance makes before it decodes pixels: not cut short, and no more
    samples than ``limits`` allow, by the header or by any frame's codestream. Raises :class:`InvalidInstance`."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    _check_complete(ds, data, ts)
    if any(kw in ds for kw in PIXEL_KEYWORDS):
        _check_pixel_count(ds, limits)
        _check_codestreams(ds, ts, limits)


def read_dataset(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Dataset:
    """Parse a Part 10 file, or a raw data set without File Meta if it parses as an image (then its
    transfer syntax is inferred from the encoding). A file meta that names an uncompressed transfer syntax
    other than the one the data set is encoded in (pydicom reads by the encoding) is corrected to it; one
    naming a compressed syntax over an implicit-VR body is refused. Raises :class:`InvalidInstance`."""
    _check_inflated_size(data, limits)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        ds = _read_without_meta(data)
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise InvalidInstance(QuarantineReason.TRUNCATED, f"header cannot be parsed ({type(exc).__name__})") from exc
    if "TransferSyntaxUID" not in ds.file_meta:
        if data[128:132] == b"DICM":
            raise InvalidInstance(QuarantineReason.TRUNCATED, f"file meta incomplete: file ends after {len(data)} bytes")
        raise InvalidInstance(QuarantineReason.NOT_DICOM, "no transfer syntax in file meta")
    _reconcile_encoding(ds)
    return ds


_INFLATE_CHUNK = 1 << 20
_NATIVE = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
           (False, False): ExplicitVRBigEndian}


def body_encoding(ds: Dataset) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) as the data set was really read — pydicom reads the body in the encoding
    it finds there but records the one the file meta claims; None once its elements are no longer raw."""
    first = next((e for t in ds.keys() if isinstance(e := ds.get_item(t), RawDataElement)), None)
    return None if first is None else (bool(first.is_implicit_VR), bool(first.is_little_endian))


def _reconcile_encoding(ds: Dataset) -> None:
    ts = UID(ds.file_meta.TransferSyntaxUID)
    found = body_encoding(ds)
    if found is None or not ts.is_transfer_syntax:
        return
    if (ts.is_implicit_VR, ts.is_little_endian) == found:
        return
    if ts in _NATIVE.values() and found in _NATIVE:
        ds.file_meta.TransferSyntaxUID = _NATIVE[found]
        ds.set_original_encoding(*found, ds.original_character_set)
        return
    raise InvalidInstance(QuarantineReason.ENCODING_MISMATCH,
                          f"file meta names {ts.name} but the data set is "
                          f"{'implicit' if found[0] else 'explicit'} VR {'little' if found[1] else 'big'} endian")


def _deflated(data: bytes) -> bool:
    """The file meta (its first few kB) names Deflated Explicit VR Little Endian."""
    return data[128:132] == b"DICM" and DeflatedExplicitVRLittleEndian.encode() in data[132:4096]


def read_header(path: Path, tags: list[str] | None = None) -> Dataset | None:
    """``path``'s header (``tags`` only, if given) from its first :data:`EXCERPT_BYTES`, without pixels: for
    planning and routing before a file is validated. A deflated data set is not inflated (pydicom inflates it
    whole, and its size is unchecked here); None for that and for whatever cannot be parsed."""
    with path.open("rb") as fh:
        head = fh.read(EXCERPT_BYTES)
    return _parse_head(head, tags)


def _parse_head(head: bytes, tags: list[str] | None = None) -> Dataset | None:
    if _deflated(head):
        return None
    try:
        with warnings.catch_warnings(), pydicom.config.disable_value_validation():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True, force=True, specific_tags=tags)
    except Exception:  # noqa: BLE001 - pydicom raises many types on input that is not DICOM
        return None


def _check_inflated_size(data: bytes, limits: Limits) -> None:
    """A deflated data set is inflated whole by pydicom: count its inflated size first, in constant memory,
    and refuse one over ``limits.max_file_bytes`` (the largest valid uncompressed instance)."""
    if not _deflated(data):
        return
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)  # pydicom's own meta reader: where the deflated stream starts
    except Exception:  # noqa: BLE001 - a meta that cannot be parsed is reported by the full read
        return
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater, inflated, stream = zlib.decompressobj(-zlib.MAX_WBITS), 0, memoryview(data)[fp.tell():]
    try:
        for start in range(0, len(stream), _INFLATE_CHUNK):
            piece = stream[start:start + _INFLATE_CHUNK]
            while piece and not inflater.eof:
                inflated += len(inflater.decompress(piece, _INFLATE_CHUNK))  # output bounded per call
                piece = inflater.unconsumed_tail
                if inflated > limits.max_file_bytes:
                    raise InvalidInstance(QuarantineReason.FILE_TOO_LARGE,
                                          f"deflated data set inflates to over {limits.max_file_bytes} bytes (the limit)")
            if inflater.eof:
                return
    except zlib.error as exc:
        raise InvalidInstance(QuarantineReason.TRUNCATED, "deflated data set cannot be inflated") from exc


def _read_without_meta(data: bytes) -> Dataset:
    """Raw datasets (no preamble/meta) written by old tools: keep them if they are plausibly images."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ok = len(ds) > 3 and "SOPInstanceUID" in ds and any(kw in ds for kw in PIXEL_KEYWORDS)
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        ok = False
    if not ok:
        raise InvalidInstance(QuarantineReason.NOT_DICOM, "not a DICOM file: no DICM prefix and no parsable dataset")
    implicit, little = ds.original_encoding
    ts = (
        pydicom.uid.ImplicitVRLittleEndian
        if implicit
        else (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
    )
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ds


def _check_complete(ds: Dataset, data: bytes, ts: UID) -> None:
    """Detect files cut short: the last top-level element must end exactly at end of file."""
    if len(ds) == 0:
        raise InvalidInstance(QuarantineReason.TRUNCATED, f"no data set after file meta; file ends after {len(data)} bytes")
    if ts == DeflatedExplicitVRLittleEndian:
        return  # element offsets refer to the inflated stream
    last = ds.get_item(max(ds.keys()))
    if isinstance(last, RawDataElement) and last.length != 0xFFFFFFFF and last.value_tell is not None:
        end = last.value_tell + last.length
        if end > len(data):
            raise InvalidInstance(
                QuarantineReason.TRUNCATED, f"file ends at byte {len(data)} inside an element that ends at {end}"
            )
        if end < len(data) and data[end:].strip(b"\x00"):
            raise InvalidInstance(
                QuarantineReason.TRUNCATED, f"{len(data) - end} trailing bytes cannot be parsed (cut inside an element header)"
            )


def _check_pixel_count(ds: Dataset, limits: Limits) -> None:
    """Refuse, from the header alone, an instance that would decode to more than ``limits.max_pixels`` samples."""
    geometry = {kw: _as_int(ds.get(kw) or default) for kw, default in
                (("Rows", 0), ("Columns", 0), ("NumberOfFrames", 1), ("SamplesPerPixel", 1))}
    bad = [kw for kw, v in geometry.items() if v is None or v < 0]
    if bad:
        raise InvalidInstance(QuarantineReason.UNDECODABLE_PIXELS, f"image geometry is not a count: {', '.join(bad)}")
    rows, columns, frames, samples = (int(v or 0) for v in geometry.values())
    count = rows * columns * frames * samples
    if count > limits.max_pixels:
        raise InvalidInstance(
            QuarantineReason.TOO_MANY_PIXELS,
            f"header declares {rows}×{columns} pixels × {frames} frame(s) × {samples} sample(s) = {count} samples, "
            f"over the limit of {limits.max_pixels}",
        )


def _check_codestreams(ds: Dataset, ts: UID, limits: Limits) -> None:
    """Encapsulated pixel data: the size each frame's codestream declares (what a decoder allocates) may not
    exceed the header's frame size nor the limit."""
    if "PixelData" not in ds or not ts.is_transfer_syntax or not ts.is_encapsulated:
        return
    try:
        check_codestreams(ds.PixelData, ts, rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
                          samples=int(ds.get("SamplesPerPixel", 1) or 1),
                          bits_allocated=int(ds.get("BitsAllocated", 8) or 8), max_pixels=limits.max_pixels)
    except CodestreamTooLarge as exc:
        raise InvalidInstance(QuarantineReason.TOO_MANY_PIXELS, str(exc)) from exc
    except CodestreamError as exc:
        raise InvalidInstance(QuarantineReason.UNDECODABLE_PIXELS, str(exc)) from exc


def _as_int(value: object) -> int | None:
    """An attribute value as an int, or None if it is not one number (multi-valued, text, empty)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def header_excerpt(path: Path) -> dict[str, object]:
    """PHI-free facts about a file too large to keep a copy of: size, transfer syntax, image geometry —
    read from its first :data:`EXCERPT_BYTES` only; numbers and a standard transfer syntax UID, nothing else."""
    with path.open("rb") as fh:
        head = fh.read(EXCERPT_BYTES)
        size = os.fstat(fh.fileno()).st_size
    ds = _parse_head(head)  # None: an excerpt of its size only
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds is not None else ""
    standard_ts = ts in UID_dictionary and UID_dictionary[ts][1] == "Transfer Syntax"
    excerpt: dict[str, object] = {"file_size": size, "bytes_parsed": len(head),
                                  "transfer_syntax": ts if standard_ts else None}
    for name, kw, absent in (("rows", "Rows", None), ("columns", "Columns", None), ("frames", "NumberOfFrames", 1),
                             ("samples_per_pixel", "SamplesPerPixel", 1), ("bits_allocated", "BitsAllocated", None)):
        excerpt[name] = _as_int(ds.get(kw, absent)) if ds is not None else None
    return excerpt


def _decode_all_frames(ds: Dataset, ts: UID) -> int:
    """Decode every frame; returns the decoded byte count. Undecodable → :class:`InvalidInstance`."""
    try:
        arr = ds.pixel_array
    except Exception as exc:
        name = ts.name if ts.is_transfer_syntax else "unknown transfer syntax"
        raise InvalidInstance(
            QuarantineReason.UNDECODABLE_PIXELS, f"pixel data cannot be decoded ({name}, {ts}): {type(exc).__name__}"
        ) from exc
    return int(arr.nbytes)


def _sop_class_name(ds: Dataset) -> str:
    uid = UID(str(ds.get("SOPClassUID", "") or ""))
    return uid.name if uid else "unknown"
