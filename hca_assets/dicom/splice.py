"""Write a changed data set by splicing: every top-level element still as read is copied from the original
bytes (pixel data included), only changed elements are encoded.

De-identification changes a few dozen attributes of a file whose bulk (pixel data, most of the header) is
untouched; pydicom's writer walks and re-emits every element. Splicing produces the same bytes for the
untouched elements at a fraction of the cost. It applies when the output keeps the original's encoding;
:func:`write_spliced` returns None otherwise and the caller uses pydicom's writer.
"""

from __future__ import annotations

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

__all__ = ["write_spliced"]

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
    encoder = _encoder(implicit, little)
    for tag in sorted(ds.keys()):
        if tag.element == 0:
            continue  # group lengths: stale once anything changed, and pydicom's writer drops them too
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement) and elem.length != 0xFFFFFFFF and elem.value_tell is not None:
            if (elem.VR is None and not implicit) or elem.value_tell + elem.length > len(original):
                return None  # an explicit-VR element without a VR cannot be located; a truncated one not copied
            header = 8 if implicit or str(elem.VR).encode() not in _LONG_HEADER_VRS else 12
            parts.append(encoder.getvalue())
            encoder = _encoder(implicit, little)
            parts.append(original[elem.value_tell - header:elem.value_tell + elem.length])
        else:
            write_data_element(encoder, elem, ds._character_set)
    parts.append(encoder.getvalue())
    return b"".join(parts)


def _encoder(implicit: bool, little: bool) -> DicomBytesIO:
    encoder = DicomBytesIO()
    encoder.is_implicit_VR, encoder.is_little_endian = implicit, little
    return encoder
