"""Deliberately broken inputs, one per quarantine reason, made from one valid synthetic file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from hca_assets.dicom.enum import QuarantineReason

__all__ = ["TRUNCATION_OFFSETS", "write_bad_inputs"]

# cut inside the file meta, inside the data set header, and inside the pixel data
TRUNCATION_OFFSETS = {"meta": 180, "header": 1400, "pixels": -5000}


def write_bad_inputs(valid: Path, out: Path, seed: int = 0, *, unreadable_dir: bool = True) -> dict[str, QuarantineReason]:
    """Write broken variants of ``valid`` into ``out``; returns file name → the reason ingest must give.

    ``valid`` itself must be ingested in the same or an earlier batch for the duplicate cases. The
    unreadable directory (mode 000) is only unreadable to a non-root process; it is not in the result.
    """
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    data = valid.read_bytes()
    expected: dict[str, QuarantineReason] = {}

    def put(name: str, payload: bytes, reason: QuarantineReason) -> None:
        (out / name).write_bytes(payload)
        expected[name] = reason

    put("empty.dcm", b"", QuarantineReason.EMPTY_FILE)
    put("random.bin", rng.bytes(4096), QuarantineReason.NOT_DICOM)
    for where, offset in TRUNCATION_OFFSETS.items():
        put(f"truncated_{where}.dcm", data[:offset], QuarantineReason.TRUNCATED)

    ds = pydicom.dcmread(valid)
    del ds.PixelData
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".1"
    ds.save_as(out / "no_pixels.dcm")
    expected["no_pixels.dcm"] = QuarantineReason.NO_PIXEL_DATA

    ds = pydicom.dcmread(valid)
    del ds.SOPInstanceUID
    ds.save_as(out / "missing_sop_uid.dcm")
    expected["missing_sop_uid.dcm"] = QuarantineReason.MISSING_UID

    ds = pydicom.dcmread(valid)
    ds.InstanceNumber = 999  # same SOP Instance UID, different content
    ds.save_as(out / "conflicting_sop_uid.dcm")
    expected["conflicting_sop_uid.dcm"] = QuarantineReason.SOP_UID_CONFLICT
    put("identical_copy.dcm", data, QuarantineReason.DUPLICATE_INSTANCE)

    ds = pydicom.dcmread(valid)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".2"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + rng.bytes(512) for _ in range(frames)])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds["PixelData"].VR = "OB"
    ds.save_as(out / "undecodable.dcm")
    expected["undecodable.dcm"] = QuarantineReason.UNDECODABLE_PIXELS

    if unreadable_dir:
        locked = out / "locked_dir"
        locked.mkdir(exist_ok=True)
        (locked / "inside.dcm").write_bytes(data)
        os.chmod(locked, 0o000)
    return expected
