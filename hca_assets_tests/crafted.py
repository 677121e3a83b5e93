"""Crafted hostile inputs: decompression bombs of each codec (RLE, JPEG 2000, JPEG, deflate), an oversized sparse
file, transfer-syntax contradictions and cuts — small files built in the test, never shipped."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import openjpeg
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

PATIENT_NAME, PATIENT_ID, BIRTH_DATE = "BOMBER^JANE^Q", "MRN-4417-XZ", "19700321"
PHI = (PATIENT_NAME, PATIENT_ID, BIRTH_DATE, "BOMBER")


def instance(rows: int, columns: int, transfer_syntax: UID, pixel_data: bytes) -> bytes:
    """A Part 10 secondary-capture instance (8-bit monochrome) with a PHI-bearing header."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "OT"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, BIRTH_DATE
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def rle_bomb(rows: int, columns: int) -> bytes:
    """A valid RLE Lossless instance of zeros: one PackBits run per 128 pixels, so 16384² (268 MB decoded)
    takes 4.2 MB — the issue's decompression bomb."""
    n = rows * columns
    segment = b"\x81\x00" * (n // 128) + (bytes([n % 128 - 1, 0]) if n % 128 else b"")
    header = np.zeros(16, "<u4")
    header[:2] = 1, 64  # one segment, starting after the 64-byte RLE header
    return instance(rows, columns, RLELossless, encapsulate([header.tobytes() + segment + b"\x00" * (len(segment) % 2)]))


def oversized(path: Path, size: int) -> None:
    """A valid 256² uncompressed instance followed by zeros up to ``size`` bytes (sparse: no disk used)."""
    path.write_bytes(instance(256, 256, ExplicitVRLittleEndian, bytes(256 * 256)))
    with path.open("r+b") as fh:
        fh.truncate(size)


def _image(rows: int, columns: int) -> np.ndarray:
    return (np.arange(rows * columns, dtype=np.uint32).reshape(rows, columns) % 251).astype(np.uint8)


def j2k_bomb(rows: int = 480, columns: int = 640, declared: int = 20000) -> bytes:
    """A JPEG 2000 instance whose header says ``rows``×``columns`` but whose codestream (SIZ) declares
    ``declared``² in one tile: openjpeg allocates what SIZ says (the issue's ~5.9 GiB)."""
    stream = bytearray(openjpeg.encode(_image(rows, columns), codec_format=0))
    siz = stream.index(b"\xff\x51")
    struct.pack_into(">IIIIIIII", stream, siz + 6, declared, declared, 0, 0, declared, declared, 0, 0)
    return instance(rows, columns, JPEG2000Lossless, encapsulate([bytes(stream)]))


def jpeg_bomb(rows: int = 480, columns: int = 640, declared: int = 20000) -> bytes:
    """A baseline JPEG instance whose SOF declares ``declared``² while the header says ``rows``×``columns``."""
    out = io.BytesIO()
    Image.fromarray(_image(rows, columns)).save(out, "JPEG")
    stream = bytearray(out.getvalue())
    struct.pack_into(">HH", stream, stream.index(b"\xff\xc0") + 5, declared, declared)
    return instance(rows, columns, JPEGBaseline8Bit, encapsulate([bytes(stream)]))


def deflate_bomb(inflated: int) -> bytes:
    """A Deflated Explicit VR instance of 64² whose Pixel Data element inflates to ``inflated`` zero bytes
    (one compressed megabyte of zeros, repeated after full flushes: a few kB per GiB)."""
    plain = instance(64, 64, ExplicitVRLittleEndian, b"")
    meta = instance(64, 64, DeflatedExplicitVRLittleEndian, b"")
    body = plain[132 + 12 + struct.unpack_from("<I", plain, 140)[0]:]
    body = body[: pixel_header_offset(body)] + b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", inflated)
    chunk = 1 << 20
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = deflater.compress(body) + deflater.flush(zlib.Z_FULL_FLUSH)
    block = deflater.compress(bytes(chunk)) + deflater.flush(zlib.Z_FULL_FLUSH)  # the same after every full flush
    meta = meta[: 132 + 12 + struct.unpack_from("<I", meta, 140)[0]]
    return meta + stream + block * (inflated // chunk) + deflater.flush()


def meta_body_mismatch() -> bytes:
    """A valid explicit-VR instance whose file meta claims Implicit VR Little Endian (same UID length + pad)."""
    data = instance(64, 64, ExplicitVRLittleEndian, bytes(64 * 64))
    return data.replace(ExplicitVRLittleEndian.encode() + b"\x00", ImplicitVRLittleEndian.encode() + b"\x00\x00\x00")


def pixel_header_offset(data: bytes) -> int:
    """Byte offset of the (last) Pixel Data element's tag."""
    return data.rindex(b"\xe0\x7f\x10\x00")


def cut_in_pixel_header(data: bytes) -> bytes:
    """The file cut inside the Pixel Data element's header (after its tag and VR)."""
    return data[: pixel_header_offset(data) + 6]


def huge_pixel_length(data: bytes) -> bytes:
    """The Pixel Data element's 32-bit length set to 0xFFFFFFF0 (explicit VR OB: tag, VR, 2 reserved, length)."""
    at = pixel_header_offset(data) + 8
    return data[:at] + struct.pack("<I", 0xFFFFFFF0) + data[at + 4:]
