"""Walk only what the profile touches: elements with an action, private elements, and sequences.

pydicom parses values lazily; converting every element of every file dominated de-identification
time, so these walks look at tags first, read raw value bytes where they can, and convert an element
only when it is a sequence (to enter its items) or is being changed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from hca_assets.dicom.iod import Path
from hca_assets.dicom.profile import DeidProfile

__all__ = ["SCANNED_VRS", "acted", "keyword", "raw_values", "strings_of", "vr_of"]

SCANNED_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})


def vr_of(ds: Dataset, tag: BaseTag) -> str:
    """The element's VR, from the raw element when explicit, else from the dictionary (converting as a last resort)."""
    vr = ds.get_item(tag).VR
    if vr in (None, "UN"):
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = ds[tag].VR
    return str(vr)


def keyword(tag: BaseTag) -> str:
    return keyword_for_tag(tag) or str(tag)


def acted(ds: Dataset, profile: DeidProfile, path: Path = ()) -> Iterator[tuple[BaseTag, str, Path, Dataset, str]]:
    """(tag, VR, enclosing sequence keywords, holding data set, action code or "private") for every element
    the profile acts on and every private element, at any depth. Sequences are always entered."""
    for tag in list(ds.keys()):
        code = "private" if tag.is_private else profile.action_for(tag)
        vr = vr_of(ds, tag) if code is not None or not tag.is_private else ""
        if code is None and vr != "SQ":
            continue
        if code is not None:
            yield tag, vr, path, ds, code
        if vr == "SQ" and tag in ds:
            for item in ds[tag].value or []:
                yield from acted(item, profile, (*path, keyword(tag)))


def raw_values(ds: Dataset, tag: BaseTag) -> list[bytes]:
    """The element's values as bytes in the file's encoding, without converting a raw element."""
    elem = ds.get_item(tag)
    if isinstance(elem, RawDataElement):
        value = elem.value or b""
        return [v for part in value.split(b"\\") if (v := part.strip(b" \x00"))]
    return [s.encode("utf-8", "replace") for s in strings_of(elem)]


def strings_of(elem: DataElement) -> list[str]:
    """The element's non-empty values as text (string-like VRs only)."""
    value = elem.value
    if value is None or elem.VR not in SCANNED_VRS:
        return []
    values = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
    return [str(v).strip() for v in values if str(v).strip()]
