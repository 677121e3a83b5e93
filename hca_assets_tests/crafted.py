"""Crafted hostile inputs for the resource-limit tests: an RLE decompression bomb, an oversized sparse file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

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
