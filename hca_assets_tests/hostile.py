"""The hostile-input suite: ≥ 40 crafted files — truncations at every element boundary, wrong lengths, VR and
transfer-syntax contradictions, nesting, bombs of each codec, meta/body mismatches, PHI in kept attributes of
every text VR — each with what must become of it. Built in memory, small (a few MB in all); used by the test
that runs them through ``hca deid`` and landing + ``hca ingest`` and by the benchmark that reports them."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from hca_assets_tests import crafted

__all__ = ["WRITTEN", "HostileFile", "hostile_files", "run_hca"]

HCA = str(Path(sys.executable).parent / "hca")

WRITTEN = "written"  # de-identified: every other outcome is a quarantine reason


@dataclass(frozen=True)
class HostileFile:
    """One crafted file and the outcomes it may have (``written`` or quarantine reasons), by path."""

    name: str
    data: bytes
    deid: frozenset[str]  # what `hca deid` may make of it
    ingest: frozenset[str]  # what ingest (raw_dicom, then de-identification) may make of it


def _plain() -> bytes:
    """A fresh valid 64² instance (its own UIDs: cuts of it never collide with another file's instance)."""
    pixels = (np.arange(64 * 64) % 251).astype(np.uint8).tobytes()
    return crafted.instance(64, 64, ExplicitVRLittleEndian, pixels)


def _boundaries(data: bytes) -> list[int]:
    """Byte offsets where each top-level element of the data set (and the file meta) ends."""
    ds = pydicom.dcmread(io.BytesIO(data))
    meta_end = 132 + 12 + struct.unpack_from("<I", data, 140)[0]
    return [meta_end, *(e.value_tell + e.length for e in (ds.get_item(t) for t in ds.keys()))][:-1]


def _edit(change: Callable[[Dataset], None], transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_plain()))
    change(ds)
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _nested(depth: int) -> bytes:
    """Sequences nested ``depth`` deep, undefined lengths (a few bytes per level), before the pixel data."""
    data = _plain()
    at = crafted.pixel_header_offset(data)

    def sq(group: int, element: int) -> bytes:
        return struct.pack("<HH", group, element) + b"SQ\x00\x00\xff\xff\xff\xff"

    item, end_item, end_seq = b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0" + bytes(4), b"\xfe\xff\xdd\xe0" + bytes(4)
    body = sq(0x0040, 0xA730) + (item + sq(0x0040, 0xA043)) * depth + (end_seq + end_item) * depth + end_seq
    return data[:at] + body + data[at:]


def _set_length(data: bytes, tag: bytes, length: int) -> bytes:
    """The 16-bit length of the first explicit-VR short-form element ``tag`` set to ``length``."""
    at = data.index(tag, 132) + 6
    return data[:at] + struct.pack("<H", length) + data[at + 2:]


def _rows_element(encoded: bytes) -> bytes:
    """A fresh instance whose Rows element (explicit VR: VR, length, value) is ``encoded`` instead."""
    data = _plain()
    at = data.index(b"\x28\x00\x10\x00US\x02\x00", 132) + 4
    return data[:at] + encoded + data[at + 6:]


def _kept_phi(keyword: str, value: object) -> bytes:
    def put(ds: Dataset) -> None:
        if keyword == "CodeMeaning":
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D4000", "SRT", value
            ds.AnatomicRegionSequence = Sequence([code])
        else:
            setattr(ds, keyword, value)
    return _edit(put)


def hostile_files() -> list[HostileFile]:
    """The suite, in a fixed order (names are the files' names in the input folder)."""
    refused_cut = frozenset({"truncated", "no_pixel_data"})
    files = []
    for i, end in enumerate(_boundaries(_plain())):  # a fresh instance per cut, cut where element i ends
        files.append(HostileFile(f"cut_at_element_{i:02d}.dcm", _plain()[:end], refused_cut | {"missing_uid", "not_dicom"},
                                 refused_cut | {"missing_uid", "missing_modality", "not_dicom"}))
    plain = _plain()
    for name, data in (("cut_mid_pixel_value", plain[:-1000]), ("cut_in_pixel_header", crafted.cut_in_pixel_header(_plain())),
                       ("cut_in_meta", _plain()[:150]), ("cut_after_preamble", _plain()[:132])):
        files.append(HostileFile(f"{name}.dcm", data, frozenset({"truncated", "not_dicom"}),
                                 frozenset({"truncated", "not_dicom"})))
    files += [
        HostileFile("length_fffffff0.dcm", crafted.huge_pixel_length(_plain()), frozenset({"truncated"}),
                    frozenset({"truncated"})),
        HostileFile("length_past_end_mid.dcm", _set_length(_plain(), b"\x10\x00\x10\x00", 0xFFF0),
                    frozenset({"truncated", "deid_failed", "missing_uid"}),
                    frozenset({"truncated", "missing_uid", "missing_modality", "undecodable_pixels", "no_pixel_data"})),
        HostileFile("length_odd.dcm", _set_length(_plain(), b"\x08\x00\x60\x00", 3),
                    frozenset({WRITTEN, "truncated", "deid_failed", "phi_residue"}),
                    frozenset({WRITTEN, "truncated", "missing_modality", "undecodable_pixels", "no_pixel_data", "deid_failed",
                               "phi_residue"})),
        HostileFile("empty.dcm", b"", frozenset({"deid_failed", "truncated", "not_dicom", "empty_file"}),
                    frozenset({"empty_file"})),
        HostileFile("random_bytes.dcm", np.random.default_rng(20).bytes(8192), frozenset({"not_dicom", "truncated"}),
                    frozenset({"not_dicom", "truncated"})),
        HostileFile("meta_implicit_body_explicit.dcm", crafted.meta_body_mismatch(), frozenset({WRITTEN}), frozenset({WRITTEN})),
        HostileFile("meta_big_endian_body_little.dcm", crafted.meta_body_mismatch().replace(
            ImplicitVRLittleEndian.encode() + b"\x00\x00\x00", ExplicitVRBigEndian.encode() + b"\x00"),
            frozenset({WRITTEN, "truncated", "encoding_mismatch"}), frozenset({WRITTEN, "truncated", "encoding_mismatch"})),
        HostileFile("meta_unknown_syntax.dcm", _edit(lambda ds: None, "1.2.3.4.5.6.7"),
                    frozenset({"undecodable_pixels", "deid_failed", "truncated"}),
                    frozenset({"undecodable_pixels", "truncated"})),
        HostileFile("meta_sop_uid_differs.dcm", _edit(lambda ds: setattr(ds.file_meta, "MediaStorageSOPInstanceUID",
                                                                         generate_uid())),
                    frozenset({WRITTEN}), frozenset({WRITTEN})),
        HostileFile("vr_rows_as_cs_text.dcm", _rows_element(b"CS\x02\x00ab"),
                    frozenset({WRITTEN, "undecodable_pixels", "deid_failed"}),
                    frozenset({WRITTEN, "undecodable_pixels"})),
        HostileFile("rows_two_values.dcm", _rows_element(b"US\x04\x00\x40\x00\x40\x00"),
                    frozenset({"undecodable_pixels", "deid_failed"}), frozenset({"undecodable_pixels"})),
        HostileFile("nested_12.dcm", _nested(12), frozenset({WRITTEN}), frozenset({WRITTEN})),
        HostileFile("nested_5000.dcm", _nested(5000), frozenset({"truncated", "deid_failed"}), frozenset({"truncated"})),
        HostileFile("bomb_j2k_siz.dcm", crafted.j2k_bomb(), frozenset({"too_many_pixels"}), frozenset({"too_many_pixels"})),
        HostileFile("bomb_jpeg_sof.dcm", crafted.jpeg_bomb(), frozenset({"too_many_pixels"}), frozenset({"too_many_pixels"})),
        HostileFile("bomb_rle_16384.dcm", crafted.rle_bomb(16384, 16384), frozenset({"too_many_pixels"}),
                    frozenset({"too_many_pixels"})),
        HostileFile("bomb_deflate_2gib.dcm", crafted.deflate_bomb(2 << 30), frozenset({"file_too_large"}),
                    frozenset({"file_too_large"})),
    ]
    for keyword, value in (("BodyPartExamined", crafted.PATIENT_ID), ("ScanOptions", crafted.PATIENT_ID),
                           ("ImageType", ["DERIVED", "BOMBER"]), ("CodeMeaning", f"pt {crafted.PATIENT_ID}"),
                           ("SOPAuthorizationComment", f"for {crafted.PATIENT_NAME} born {crafted.BIRTH_DATE}"),
                           ("ImageComments", f"MRN {crafted.PATIENT_ID}"), ("DerivationDescription", "BOMBER JANE")):
        files.append(HostileFile(f"kept_phi_{keyword}.dcm", _kept_phi(keyword, value), frozenset({WRITTEN}),
                                 frozenset({WRITTEN})))
    files.append(HostileFile("kept_phi_uid_in_LO.dcm", _edit(
        lambda ds: setattr(ds, "WindowCenterWidthExplanation", f"as in {ds.StudyInstanceUID}")), frozenset({WRITTEN}),
        frozenset({WRITTEN})))
    files.append(HostileFile("good.dcm", _plain(), frozenset({WRITTEN}), frozenset({WRITTEN})))
    return files


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append(pid)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return found


def _peak_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def run_hca(args: list[str], root: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """``hca ARGS`` in a fresh shell's environment, its home and working folder empty; with the peak resident
    memory (MiB) of the largest process of its tree (VmHWM of every descendant, sampled every 20 ms)."""
    for folder in ("home", "cwd"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root / "home"), "HCA_DATA_DIR": str(root / "data"),
           "DAGSTER_HOME": str(root / "data" / "dagster_home"), "HCA_SEG_MIN_DICE": "0", "HCA_EVAL_MIN_P5": "0"}
    with subprocess.Popen([HCA, *args], cwd=root / "cwd", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        peak = 0
        reader = threading.Thread(target=lambda: out.extend(process.communicate(timeout=900)))
        out: list[str] = []
        reader.start()
        while reader.is_alive():
            peak = max([peak, *(_peak_kib(p) for p in _descendants(process.pid))])
            time.sleep(0.02)
        reader.join()
    return subprocess.CompletedProcess(process.args, process.returncode, *out), peak // 1024
