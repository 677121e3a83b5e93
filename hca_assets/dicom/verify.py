"""Independent verification of de-identified output against its original: the gate before anything leaves.

Recomputes, from the original and the profile, every value the profile must remove, empty, dummy,
replace or clean, and looks for it in the output bytes. Messages name attributes, never values.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from hca_assets.dicom.burned_in import BurnedInStatus
from hca_assets.dicom.iod import Path
from hca_assets.dicom.profile import DeidProfile

__all__ = ["protected_values", "verify_output"]

_SCANNED_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_FREE_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
MIN_LENGTH = 4  # shorter values ("M", "0", "YES") are not identifying on their own and occur everywhere


def _walk(ds: Dataset, path: Path = ()) -> Iterator[tuple[DataElement, Path, Dataset]]:
    """Every element with the keywords of its enclosing sequences and the data set that holds it."""
    for elem in ds:
        yield elem, path, ds
        if elem.VR == "SQ" and elem.value:
            for item in elem.value:
                yield from _walk(item, (*path, elem.keyword or str(elem.tag)))


def _strings(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None or elem.VR not in _SCANNED_VRS:
        return []
    values = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


def protected_values(original: Dataset, profile: DeidProfile) -> tuple[dict[str, str], dict[tuple[Path, int], str]]:
    """(value → attribute keyword) for strings that must not survive, and (location → value) of dates.

    A value that the original also carries inside an attribute the profile keeps (a manufacturer name
    that is also the institution's, "WHOLE BODY" in a private tag and in BodyPartExamined, "5.000000")
    is not protected — except person-name components, which are exempt only when they equal a whole
    retained code string (a defined term such as "PERFUSION" in ImageType).
    """
    strings: dict[str, str] = {}
    names: set[str] = set()
    dates: dict[tuple[Path, int], str] = {}
    retained: list[str] = []
    codes: set[str] = set()
    for elem, path, parent in _walk(original):
        if elem.tag.is_private:
            if elem.tag.is_private_creator or profile.keeps_private(parent, elem):
                continue
            name = f"private {elem.tag}"
        else:
            action = profile.action_for(elem.tag)
            if action is None or action == "K" or elem.VR == "SQ":
                retained.extend(v.lower() for v in _strings(elem))
                codes.update(v.lower() for v in _strings(elem) if elem.VR == "CS")
                continue
            if action == "C" and elem.VR not in ("DA", "DT"):
                continue  # cleaned text keeps its non-identifying words; the names/IDs/dates it held are
                # protected through the attributes that carry them
            name = elem.keyword or str(elem.tag)
        for value in _strings(elem):
            if elem.VR in ("DA", "DT"):
                dates[(path, int(elem.tag))] = value
                continue
            if elem.VR == "TM":
                continue  # times of day survive whole-day shifts by design
            if len(value) >= MIN_LENGTH:
                strings.setdefault(value, name)
            if elem.VR == "PN":
                names.add(value)
                for part in re.split(r"[\^=]", value):
                    if len(part.strip()) >= MIN_LENGTH:
                        strings.setdefault(part.strip(), name)
                        names.add(part.strip())
    kept_text = "\x00".join(retained)
    exempt = {s for s in strings if (s.lower() in codes if s in names else s.lower() in kept_text)}
    return {s: n for s, n in strings.items() if s not in exempt}, dates


def _bytes_outside_pixel_data(ds: Dataset, output: bytes) -> bytes:
    """Every byte of the file except the Pixel Data value (binary samples, verified separately by OCR and
    unchanged unless redacted); the whole file when its extent is not known (encapsulated data)."""
    elem = ds.get_item(0x7FE00010)
    if isinstance(elem, RawDataElement) and elem.value_tell and elem.length != 0xFFFFFFFF:
        return output[: elem.value_tell] + output[elem.value_tell + elem.length :]
    return output


def _own_vocabulary(ds: Dataset) -> list[bytes]:
    """Text the de-identification writes: dummies, cleaning marks, method description and codes."""
    phrases = {"ANONYMIZED", "[removed]", "PSEUDONYM", str(ds.get("DeidentificationMethod", ""))}
    phrases |= {str(item.get("CodeMeaning", "")) for item in ds.get("DeidentificationMethodCodeSequence", [])}
    return sorted((p.lower().encode() for p in phrases if p), key=len, reverse=True)


def verify_output(original: Dataset, output: bytes, profile: DeidProfile, burned_in: BurnedInStatus) -> list[str]:
    """Problems with ``output`` (empty list = publishable)."""
    problems: list[str] = []
    ds = pydicom.dcmread(io.BytesIO(output))
    strings, dates = protected_values(original, profile)
    scanned = _bytes_outside_pixel_data(ds, output).lower()
    for phrase in _own_vocabulary(ds):  # what de-identification itself wrote is not a leak
        scanned = scanned.replace(phrase, b"\x00")
    leaked = sorted({name for value, name in strings.items() if value.lower().encode("utf-8", "replace") in scanned})
    if leaked:
        problems.append(f"original values found in output: {', '.join(leaked)}")
    out_elems = list(_walk(ds))
    text = " ".join(s for e, _, _ in out_elems if e.VR in _FREE_TEXT_VRS for s in _strings(e)).lower()
    out_dates = {(p, int(e.tag)): s for e, p, _ in out_elems if e.VR in ("DA", "DT") for s in _strings(e)[:1]}
    unshifted = sorted({str(pydicom.tag.Tag(loc[1])) for loc, v in dates.items() if out_dates.get(loc) == v})
    if unshifted:
        problems.append(f"dates left unchanged at {', '.join(unshifted)}")
    if any(v[:8].lower() in text for v in dates.values() if len(v) >= 8):
        problems.append("an original date appears in free text")
    private = [e for e, _, parent in out_elems if e.tag.is_private and not e.tag.is_private_creator
               and not profile.keeps_private(parent, e)]
    if private:
        problems.append(f"{len(private)} private element(s) not on the safelist")
    bad_uids = sorted({e.keyword for e, _, _ in out_elems if e.VR == "UI" for s in _strings(e)
                       if len(s) > 64 or not UID(s).is_valid})
    if bad_uids:
        problems.append(f"invalid UIDs in {', '.join(bad_uids)}")
    if str(ds.get("PatientIdentityRemoved", "")) != "YES":
        problems.append("PatientIdentityRemoved is not YES")
    if burned_in == BurnedInStatus.UNVERIFIED or (
        str(original.get("BurnedInAnnotation", "")).upper() == "YES" and str(ds.get("BurnedInAnnotation", "")) != "NO"
    ):
        problems.append("burned-in text not verified removed")
    return problems
