"""Write a changed data set by splicing: every top-level element still as read is copied from the original
bytes (pixel data included), only changed elements are encoded.

De-identification changes a few dozen attributes of a file whose bulk (pixel data, most of the header) is
untouched; pydicom's writer walks and re-emits every element. Splicing produces the same bytes for the
untouched elements at a fraction of the cost. It applies when the output keeps the original's encoding;
:func:`write_spliced` returns None otherwise and the caller uses pydicom's writer.
"""

from __future__ import annotations

import struct

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import PersonName

__all__ = ["write_spliced"]

_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_LONG_HEADER_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def write_spliced(ds: Dataset, original: bytes) -> bytes | None:
    """Part 10 bytes of ``ds`` (read from ``original``), splicing unchanged elements; None when the output's
    transfer syntax encodes differently from the original (then nothing can be copied)."""
    ts = ds.file_meta.TransferSyntaxUID
    implicit, little = ds.original_encoding
    if implicit is None or ts == DeflatedExplicitVRLittleEndian or (ts.is_implicit_VR, ts.is_little_endian) != (implicit, little):
        return None
    meta = DicomBytesIO()
    meta.is_implicit_VR, meta.is_little_endian = False, True
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    parts = [(ds.preamble or b"\x00" * 128), b"DICM", meta.getvalue()]
    encoder: DicomBytesIO | None = None  # pydicom's writer, for what neither copying nor _quick covers
    for tag in sorted(ds.keys()):
        if tag.element == 0:
            continue  # group lengths: stale once anything changed, and pydicom's writer drops them too
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement) and elem.length != 0xFFFFFFFF and elem.value_tell is not None:
            if (elem.VR is None and not implicit) or elem.value_tell + elem.length > len(original):
                return None  # an explicit-VR element without a VR cannot be located; a truncated one not copied
            header = 8 if implicit or str(elem.VR).encode() not in _LONG_HEADER_VRS else 12
            piece: bytes | None = original[elem.value_tell - header:elem.value_tell + elem.length]
        else:
            piece = _quick(elem, implicit, little)
        if piece is None:
            if encoder is None:
                encoder = DicomBytesIO()
                encoder.is_implicit_VR, encoder.is_little_endian = implicit, little
            write_data_element(encoder, elem, ds._character_set)
            continue
        if encoder is not None:
            parts.append(encoder.getvalue())
            encoder = None
        parts.append(piece)
    if encoder is not None:
        parts.append(encoder.getvalue())
    return b"".join(parts)


def _quick(elem: DataElement, implicit: bool, little: bool) -> bytes | None:
    """The encoding of a plain ASCII text element (what de-identification mostly writes: UIDs, dates, codes,
    dummies), done here rather than by pydicom's general writer; None for anything else."""
    if not little or elem.VR not in _TEXT_VRS:
        return None
    value = elem.value
    values = [] if value is None or value == "" else ([value] if isinstance(value, str | PersonName) else value)
    if not all(type(v) in (str, PersonName) for v in values):
        return None
    text = "\\".join(str(v) for v in values)
    if not text.isascii():
        return None
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if elem.VR == "UI" else b" "
    tag = struct.pack("<HH", elem.tag.group, elem.tag.element)
    if implicit:
        return tag + struct.pack("<I", len(data)) + data
    if elem.VR in ("UC", "UR", "UT"):
        return tag + elem.VR.encode() + b"\x00\x00" + struct.pack("<I", len(data)) + data
    return tag + elem.VR.encode() + struct.pack("<H", len(data)) + data if len(data) < 0x10000 else None
