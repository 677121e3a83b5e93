"""Verification of de-identified output against facts taken from its original: the gate before anything leaves.

:func:`collect_facts` records, from the original and the profile, every value the profile must remove,
empty, dummy, replace or clean; :func:`verify_output` looks for them in the output bytes and checks
dates, private tags, UIDs and markers. Messages name attributes, never values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pydicom
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from hca_assets.dicom.burned_in import BurnedInStatus
from hca_assets.dicom.iod import Path
from hca_assets.dicom.profile import DeidProfile
from hca_assets.dicom.traverse import SCANNED_VRS, acted, keyword, raw_values, vr_of

__all__ = ["OriginalFacts", "collect_facts", "kept_code_strings", "malformed_code", "residue", "verify_output"]

MIN_LENGTH = 4  # shorter values ("M", "0", "YES") are not identifying on their own and occur everywhere
_FREE_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_CODE_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080119, 0x00080120})  # CodeValue, designator, version, long/URN
_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d %b %Y", "%d %B %Y")
# values that identify the patient or the encounter: never exempt, wherever a PACS copied them
IDENTIFIER_KEYWORDS = frozenset({
    "PatientID", "OtherPatientIDs", "PatientBirthDate", "AccessionNumber", "StudyID", "MedicalRecordLocator",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "AdmissionID", "ServiceEpisodeID", "PatientTelephoneNumbers",
    "PatientAddress", "MilitaryRank", "PatientMotherBirthName", "OtherPatientNames",
})
SHORT_TOKEN = 3  # a name part this short is matched as a whole token only (two letters are also codes: MR, CT)
_CODE_STRING = re.compile(rb"[A-Z0-9 _]{1,16}")


@dataclass
class OriginalFacts:
    """What the original carried in the attributes the profile acts on (PHI: memory and restricted zone only).
    Strings are kept as lower-cased bytes in the file's encoding, the form they would take in the output."""

    strings: dict[bytes, str] = field(default_factory=dict)  # value → attribute name, for messages
    names: set[bytes] = field(default_factory=set)  # person-name values and components
    dates: dict[tuple[Path, int], set[str]] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)  # for cleaning free text: longest first
    uids: set[str] = field(default_factory=set)  # replaced UIDs, also removed from cleaned free text
    identifiers: dict[bytes, str] = field(default_factory=dict)  # names, IDs, UIDs, birth date: never exempt
    burned_in_flagged: bool = False

    def identifying(self, found: bytes) -> bool:
        return found in self.identifiers

    def attribute_of(self, found: bytes) -> str:
        return self.strings.get(found) or self.identifiers[found]


def _date_spellings(value: str) -> set[str]:
    try:
        d = datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return set()
    return {d.strftime(f) for f in _DATE_FORMATS}


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def collect_facts(original: Dataset, profile: DeidProfile) -> OriginalFacts:
    """Walk the original once, reading raw bytes of acted-on elements, and record the protected values."""
    facts = OriginalFacts(burned_in_flagged=str(original.get("BurnedInAnnotation", "")).upper() == "YES")
    terms: set[str] = set()
    for tag, vr, path, parent, code in acted(original, profile):
        if vr == "SQ" or code == "K" or vr not in SCANNED_VRS:
            continue
        if code == "private":
            if tag.is_private_creator or profile.keeps_private(parent, parent[tag]):
                continue
            name = f"private {tag}"
        else:
            name = keyword(tag)
        for value in raw_values(parent, tag):
            low = value.lower()
            if vr in ("DA", "DT"):
                text = _text(value)
                facts.dates.setdefault((path, int(tag)), set()).add(text)
                terms.update(_date_spellings(text))
                if name in IDENTIFIER_KEYWORDS and len(value) >= MIN_LENGTH:  # a birth date, wherever it is
                    facts.identifiers.setdefault(low, name)
                    facts.strings.setdefault(low, name)
            elif vr == "TM" or (code == "C" and vr in _FREE_TEXT_VRS):
                continue  # times survive whole-day shifts; cleaned text keeps its non-identifying words
            elif vr == "PN":
                parts = [p.strip() for p in re.split(rb"[\^=]", value) if p.strip()]
                facts.names.update([low, *(p.lower() for p in parts)])
                for part in [value, *parts]:
                    if len(part) >= SHORT_TOKEN:
                        facts.identifiers.setdefault(part.lower(), name)
                terms.update(_text(p) for p in parts if len(p) >= 3)
                terms.add(" ".join(_text(p) for p in parts))
                for part in [value, *parts]:
                    if len(part) >= MIN_LENGTH:
                        facts.strings.setdefault(part.lower(), name)
            elif len(value) >= MIN_LENGTH:
                facts.strings.setdefault(low, name)
                if vr == "UI" or name in IDENTIFIER_KEYWORDS:
                    facts.identifiers.setdefault(low, name)
                if code != "private" and vr != "UI":
                    terms.add(_text(value))
                elif vr == "UI":
                    facts.uids.add(_text(value))
    facts.terms = sorted((t for t in terms if len(t) >= 3), key=len, reverse=True)
    return facts


def _kept(ds: Dataset, profile: DeidProfile) -> Iterator[tuple[Dataset, BaseTag, str]]:
    """(holding data set, tag, VR) of every public element the profile keeps or ignores, at any depth."""
    for tag in list(ds.keys()):
        if tag.is_private:
            continue
        vr = vr_of(ds, tag)
        if vr == "SQ":
            for item in ds[tag].value or []:
                yield from _kept(item, profile)
        elif profile.action_for(tag) in (None, "K"):
            yield ds, tag, vr


def _retained(ds: Dataset, profile: DeidProfile) -> Iterator[tuple[str, bytes]]:
    """(VR, lower-cased value) of every element the profile keeps or ignores, at any depth (slow path);
    the parts of a coded entry count as code strings ("CS") whatever their VR."""
    for holder, tag, vr in _kept(ds, profile):
        if vr in SCANNED_VRS:
            kind = "CS" if int(tag) in _CODE_TAGS else vr
            yield from ((kind, v.lower()) for v in raw_values(holder, tag))


def _exempt(facts: OriginalFacts, candidates: set[bytes], original: Dataset, profile: DeidProfile) -> set[bytes]:
    """Candidates the original also carries in attributes the profile keeps (a manufacturer name that is
    also the institution's, "WHOLE BODY" in a private tag and in BodyPartExamined, "5.000000"). Person
    names are exempt only when they equal a whole retained code string (a defined term such as "PERFUSION")."""
    retained = list(_retained(original, profile))
    codes = {v for vr, v in retained if vr == "CS"}
    kept_text = b"\x00".join(v for _, v in retained)
    return {s for s in candidates if not facts.identifying(s) and (s in codes if s in facts.names else s in kept_text)}


def kept_code_strings(ds: Dataset, profile: DeidProfile) -> Iterator[tuple[Dataset, int, list[bytes]]]:
    """(holding data set, tag, values) of every code string (CS) the profile keeps, at any depth."""
    return ((holder, int(tag), raw_values(holder, tag)) for holder, tag, vr in _kept(ds, profile) if vr == "CS")


def malformed_code(value: bytes) -> bool:
    """Whether a CS value breaks its VR (PS3.5 6.2: upper case, digits, space, underscore; 16 characters):
    a name or an ID-with-punctuation in a vocabulary attribute."""
    return _CODE_STRING.fullmatch(value) is None


def _short_identifiers(facts: OriginalFacts, ds: Dataset, profile: DeidProfile) -> set[bytes]:
    """Name parts of ``SHORT_TOKEN`` letters (too short for a substring search) that stand as a whole token
    in an attribute the profile keeps."""
    short = {s for s in facts.identifiers if len(s) < MIN_LENGTH}
    if not short:
        return set()
    tokens = {t for _, v in _retained(ds, profile) for t in re.split(rb"[^a-z0-9]+", v)}
    return short & tokens


def _scanned_bytes(ds: Dataset, output: bytes) -> bytes:
    """The output without its pixel sample bytes when they form the file's tail (they are binary, unchanged
    unless redacted, and redaction is verified by OCR); the whole output otherwise."""
    raw = ds.get_item(0x7FE00010) if "PixelData" in ds else None
    value = getattr(raw, "value", None)
    if isinstance(value, bytes) and len(value) > 1024 and output.endswith(value):
        return output[: len(output) - len(value)]
    return output


def _own_vocabulary(ds: Dataset) -> list[bytes]:
    """Text the de-identification writes: dummies, cleaning marks, method description and codes."""
    phrases = {"ANONYMIZED", "[removed]", "PSEUDONYM", str(ds.get("DeidentificationMethod", ""))}
    phrases |= {str(item.get("CodeMeaning", "")) for item in ds.get("DeidentificationMethodCodeSequence", [])}
    return sorted((p.lower().encode() for p in phrases if p), key=len, reverse=True)


def residue(
    facts: OriginalFacts, output_ds: Dataset, output: bytes, profile: DeidProfile, load_original: Callable[[], Dataset]
) -> set[bytes]:
    """Protected original values (lower-cased bytes) found anywhere in ``output`` outside its pixel samples,
    beyond what de-identification itself wrote and what the exemption rule allows."""
    scanned = _scanned_bytes(output_ds, output).lower()
    for phrase in _own_vocabulary(output_ds):  # what de-identification itself wrote is not a leak
        scanned = scanned.replace(phrase, b"\x00")
    found = {s for s in facts.strings if s in scanned}
    if found:
        found -= _exempt(facts, found, load_original(), profile)
    return found | _short_identifiers(facts, output_ds, profile)


def verify_output(
    facts: OriginalFacts,
    output_ds: Dataset,
    output: bytes,
    profile: DeidProfile,
    burned_in: BurnedInStatus,
    load_original: Callable[[], Dataset],
    found: set[bytes] | None = None,
) -> list[str]:
    """Problems with ``output`` (the bytes of ``output_ds``); an empty list means publishable. ``found``: the
    :func:`residue` of these very bytes when the caller has it already."""
    problems: list[str] = []
    found = residue(facts, output_ds, output, profile, load_original) if found is None else found
    if found:
        problems.append(f"original values found in output: {', '.join(sorted({facts.attribute_of(s) for s in found}))}")
    malformed = sorted({keyword(pydicom.tag.Tag(tag)) for _, tag, values in kept_code_strings(output_ds, profile)
                        if any(malformed_code(v) for v in values)})
    if malformed:
        problems.append(f"code strings that are not codes in {', '.join(malformed)}")
    out_dates: dict[tuple[Path, int], set[str]] = {}
    text: list[str] = []
    private = 0
    bad_uids: set[str] = set()
    for tag, vr, path, parent, code in acted(output_ds, profile):
        if code == "private":
            private += not tag.is_private_creator and not profile.keeps_private(parent, parent[tag])
            continue
        values = [_text(v) for v in raw_values(parent, tag)] if vr in SCANNED_VRS else []
        if vr in ("DA", "DT"):
            out_dates.setdefault((path, int(tag)), set()).update(values)
        elif vr in _FREE_TEXT_VRS:
            text.extend(v.lower() for v in values)
        elif vr == "UI":
            bad_uids.update(keyword(tag) for v in values if len(v) > 64 or not UID(v).is_valid)
    unshifted = sorted({str(pydicom.tag.Tag(loc[1])) for loc, v in facts.dates.items() if v & out_dates.get(loc, set())})
    if unshifted:
        problems.append(f"dates left unchanged at {', '.join(unshifted)}")
    joined = "\x00".join(text)
    if any(v[:8].lower() in joined for values in facts.dates.values() for v in values if len(v) >= 8):
        problems.append("an original date appears in free text")
    if private:
        problems.append(f"{private} private element(s) not on the safelist")
    if bad_uids:
        problems.append(f"invalid UIDs in {', '.join(sorted(bad_uids))}")
    if str(output_ds.get("PatientIdentityRemoved", "")) != "YES":
        problems.append("PatientIdentityRemoved is not YES")
    if burned_in == BurnedInStatus.UNVERIFIED or (
        facts.burned_in_flagged and str(output_ds.get("BurnedInAnnotation", "")) != "NO"
    ):
        problems.append("burned-in text not verified removed")
    return problems
