"""De-identification engine shared by the ``deid_dicom`` asset and ``hca deid``.

Applies the PS3.15 profile (``profile.py``) recursively through every sequence, with keyed pseudonyms
(``pseudonyms.py``), per-patient date shifting, free-text cleaning, private-tag removal and burned-in
text redaction (``burned_in.py``). :func:`deidentify_bytes` goes from original bytes to verified output
bytes; nothing half-done ever leaves it. Audit counts name tags and actions, never values.
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pydicom
import pydicom.config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from hca_assets.config import DEFAULT_LIMITS, Limits
from hca_assets.dicom import verify
from hca_assets.dicom.burned_in import (
    NET_EVERY,
    Box,
    BurnedInResult,
    BurnedInStatus,
    TextReader,
    TextScreen,
    clean_burned_in_text,
    needs_text_check,
)
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.io import (
    PIXEL_KEYWORDS,
    REQUIRED_UIDS,
    InvalidInstance,
    body_encoding,
    check_instance,
    check_size,
    read_dataset,
)
from hca_assets.dicom.iod import Path, attribute_types
from hca_assets.dicom.profile import CLEAN_PIXEL_DATA_CODE, DeidProfile, resolve_action
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets.dicom.splice import write_spliced
from hca_assets.dicom.traverse import keyword, raw_values, vr_of
from hca_assets.dicom.verify import OriginalFacts, collect_facts

__all__ = ["DeidEngine", "DeidFailure", "DeidOutcome", "deidentify_dataset"]

TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "PN", "UC", "AE", "CS"})
_DUMMY_BY_VR: dict[str, object] = {
    "DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y", "DS": "0", "IS": "0",
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0,
    "OB": b"\x00\x00", "OW": b"\x00\x00", "UN": b"", "AT": 0,
}


class DeidFailure(ValueError):
    """De-identification of one instance failed; ``reason`` is a quarantine code, the message is PHI-free."""

    def __init__(self, reason: QuarantineReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass
class DeidOutcome:
    """What happened to one instance (PHI stays in the crosswalk fields, which only restricted tables hold)."""

    dataset: Dataset
    counts: Counter[str] = field(default_factory=Counter)
    burned_in: BurnedInStatus = BurnedInStatus.NOT_CHECKED
    text: BurnedInResult | None = None  # regions blacked out, share of pixels blanked (when screened)
    original_patient_id: str = ""
    original_study_uid: str = ""
    original_series_uid: str = ""
    original_sop_uid: str = ""
    date_offset_days: int = 0


def _values(elem: DataElement) -> list[object]:
    if elem.value is None:
        return []
    return list(elem.value) if isinstance(elem.value, MultiValue | list) else [elem.value]


@dataclass
class _Context:
    profile: DeidProfile
    pseudo: Pseudonymizer
    types: dict[tuple[Path, str], str]
    patient_id: str
    offset: timedelta
    terms: list[str]
    uids: set[str]
    counts: Counter[str]

    @functools.cached_property
    def scrubber(self) -> re.Pattern[str]:
        """One case-insensitive pattern for every term, longest first (built on first use)."""
        return re.compile("|".join(re.escape(t) for t in self.terms), re.IGNORECASE)


def deidentify_dataset(ds: Dataset, profile: DeidProfile, pseudo: Pseudonymizer, facts: OriginalFacts) -> DeidOutcome:
    """Apply the profile to ``ds`` in place (header only; see :class:`DeidEngine` for pixels).

    ``facts`` (:func:`verify.collect_facts`) give the identifying strings the data set carries, which
    are removed from free text that an option keeps."""
    patient_id = str(ds.get("PatientID", "") or "")
    outcome = DeidOutcome(
        dataset=ds,
        original_patient_id=patient_id,
        original_study_uid=str(ds.get("StudyInstanceUID", "")),
        original_series_uid=str(ds.get("SeriesInstanceUID", "")),
        original_sop_uid=str(ds.get("SOPInstanceUID", "")),
    )
    offset = pseudo.date_offset_days(patient_id) if profile.shifts_dates else 0
    outcome.date_offset_days = offset
    ctx = _Context(
        profile=profile, pseudo=pseudo, types=attribute_types(str(ds.get("SOPClassUID", ""))),
        patient_id=patient_id, offset=timedelta(days=offset), terms=facts.terms, uids=facts.uids, counts=outcome.counts,
    )
    _apply(ds, ctx, ())
    if "MediaStorageSOPInstanceUID" in ds.file_meta and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle"):
        if kw in ds.file_meta:
            del ds.file_meta[kw]
    _mark(ds, profile)
    return outcome


def _mark(ds: Dataset, profile: DeidProfile) -> None:
    """The de-identification markers: identity removed, method text and CID 7050 codes, dates modified."""
    ds.PatientIdentityRemoved = "YES"
    codes = profile.method_codes()
    ds.DeidentificationMethod = f"hca_assets PS3.15 {profile.name}"[:64]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if profile.shifts_dates:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"


def add_clean_pixel_code(ds: Dataset) -> None:
    """Record the Clean Pixel Data option once burned-in text was verified removed."""
    item = Dataset()
    item.CodeValue, item.CodeMeaning = CLEAN_PIXEL_DATA_CODE
    item.CodingSchemeDesignator = "DCM"
    ds.DeidentificationMethodCodeSequence.append(item)


def _apply(ds: Dataset, ctx: _Context, path: Path) -> None:
    """Act on one data set level; removed and untouched elements are never converted from raw bytes."""
    creators_kept: set[int] = set()
    creators: list[BaseTag] = []
    for tag in list(ds.keys()):
        if tag.is_private:
            if tag.is_private_creator:
                creators.append(tag)
            elif ctx.profile.safe_private and ctx.profile.keeps_private(ds, ds[tag]):
                creators_kept.add((tag.group << 16) | (tag.element >> 8))
                ctx.counts["K"] += 1
            else:
                del ds[tag]
                ctx.counts["X_private"] += 1
            continue
        code = ctx.profile.action_for(tag)
        if code is None:
            if vr_of(ds, tag) == "SQ":
                for item in ds[tag].value or []:
                    _apply(item, ctx, (*path, keyword(tag)))
            continue
        action = resolve_action(code, ctx.types.get((path, keyword(tag))))
        if action == "X":
            del ds[tag]
            ctx.counts["X"] += 1
            continue
        if not _without_conversion(ds, tag, action, ctx, path):
            _do(ds, ds[tag], action, ctx, path)
    for tag in creators:  # a private creator goes unless a safelisted element of its block stayed
        if ((tag.group << 16) | tag.element) not in creators_kept:
            del ds[tag]


def _without_conversion(ds: Dataset, tag: BaseTag, action: str, ctx: _Context, path: Path) -> bool:
    """Z, U, and date/time C actions on plain elements, done from raw bytes (no pydicom value conversion,
    which dominated run time). Returns False when the general path must handle the element."""
    vr = vr_of(ds, tag)
    if vr in ("SQ", "PN", "UN") or " or " in vr or (not path and keyword(tag) == "PatientID"):
        return False
    if action == "Z":
        ds[tag] = DataElement(tag, vr, b"" if vr in ("OB", "OW") else None)
    elif action == "U" and vr == "UI":
        values = [ctx.pseudo.uid(v.decode("ascii", "replace")) for v in raw_values(ds, tag)]
        ds[tag] = DataElement(tag, vr, values if len(values) > 1 else (values[0] if values else None))
    elif action == "C" and vr == "TM":
        pass  # whole-day shifts leave times of day unchanged
    elif action == "C" and vr in ("DA", "DT") and ctx.profile.shifts_dates:
        values = [_shift(v.decode("ascii", "replace"), ctx.offset, vr) for v in raw_values(ds, tag)]
        ds[tag] = DataElement(tag, vr, values if len(values) > 1 else (values[0] if values else None))
    else:
        return False
    ctx.counts[action] += 1
    return True


def _do(ds: Dataset, elem: DataElement, action: str, ctx: _Context, path: Path) -> None:
    tag, vr = elem.tag, elem.VR
    ctx.counts[action] += 1
    if action == "X":
        del ds[tag]
    elif action == "K" or (action == "U" and vr == "SQ"):
        if vr == "SQ" and elem.value:
            for item in elem.value:
                _apply(item, ctx, (*path, elem.keyword))
    elif elem.keyword == "PatientID" and str(elem.value or "").strip():
        elem.value = ctx.pseudo.patient_id(str(elem.value))
    elif elem.keyword == "PatientName" and not path:
        elem.value = ctx.pseudo.patient_name(ctx.patient_id)
    elif action == "Z":
        elem.value = Sequence() if vr == "SQ" else (b"" if vr in ("OB", "OW", "UN") else None)
    elif action == "U":
        elem.value = _map_values(elem, ctx.pseudo.uid)
    elif action == "C":
        _clean(elem, ctx, path)
    else:  # D
        _dummy(elem, ctx)


def _map_values(elem: DataElement, fn) -> object:  # type: ignore[no-untyped-def]
    values = [fn(str(v)) for v in _values(elem) if str(v).strip()]
    return values if len(values) > 1 else (values[0] if values else None)


def _dummy(elem: DataElement, ctx: _Context) -> None:
    vr = elem.VR
    if vr == "SQ":
        elem.value = Sequence([Dataset()])
    elif vr == "UI":
        elem.value = _map_values(elem, ctx.pseudo.uid)
    else:
        elem.value = _DUMMY_BY_VR.get(vr, "ANONYMIZED")


def _clean(elem: DataElement, ctx: _Context, path: Path) -> None:
    vr = elem.VR
    if vr == "SQ":
        for item in elem.value or []:
            _apply(item, ctx, (*path, elem.keyword))
    elif vr in ("DA", "DT") and ctx.profile.shifts_dates:
        elem.value = _map_values(elem, lambda v: _shift(v, ctx.offset, vr))
    elif vr == "TM":
        return  # whole-day shifts leave times of day unchanged
    elif vr in TEXT_VRS:
        elem.value = _map_values(elem, lambda v: _scrub(v, ctx))
    else:
        ctx.counts["C_kept"] += 1


def _scrub(text: str, ctx: _Context) -> str:
    """Free text without the names, IDs, dates and UIDs the data set carries."""
    for uid in ctx.uids:
        text = text.replace(uid, "[removed]")
    return ctx.scrubber.sub("[removed]", text) if ctx.terms else text


def _shift(value: str, offset: timedelta, vr: str) -> str:
    """Shift a DA or DT value by ``offset`` days; unparsable values become the VR's dummy."""
    value = value.strip()
    try:
        d = datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return str(_DUMMY_BY_VR[vr])
    shifted = max(d + offset, date(1, 1, 1))
    return shifted.strftime("%Y%m%d") + (value[8:] if vr == "DT" else "")




def _write(ds: Dataset, original: bytes) -> bytes:
    """The data set as a Part 10 file in its file meta's transfer syntax: spliced from ``original`` where the
    encoding is unchanged, else by pydicom (a big-endian input whose pixels were redacted is written little
    endian: every element is converted first, as dcmwrite requires)."""
    try:
        spliced = write_spliced(ds, original)
    except Exception as exc:
        raise DeidFailure(QuarantineReason.DEID_FAILED, f"cannot write output ({type(exc).__name__})") from exc
    if spliced is not None:
        return spliced
    buffer = io.BytesIO()
    try:
        if ds.original_encoding[1] is False and ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian:
            for _ in ds.iterall():
                pass
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    except Exception as exc:
        raise DeidFailure(QuarantineReason.DEID_FAILED, f"cannot write output ({type(exc).__name__})") from exc
    return buffer.getvalue()


def _clean_residue(ds: Dataset, found: set[bytes], pseudo: Pseudonymizer) -> int:
    """Clean every element (any depth, private ones too) whose value holds one of the ``found`` originals
    (a name part shorter than :data:`verify.MIN_LENGTH` as a whole token): UIDs are pseudonymised, person
    names dummied, a code string loses the values that hold it, other text loses the original. Returns the
    elements changed."""
    def alternative(f: bytes) -> str:
        text = re.escape(f.decode("utf-8", "replace"))
        return text if len(f) >= verify.MIN_LENGTH else rf"(?<![A-Za-z0-9]){text}(?![A-Za-z0-9])"

    pattern = re.compile("|".join(alternative(f) for f in sorted(found, key=len, reverse=True)), re.IGNORECASE)
    changed = 0
    for elem in [*ds.file_meta.iterall(), *ds.iterall()]:
        if elem.VR not in verify.SCANNED_VRS or elem.tag == 0x7FE00010:
            continue
        values = _values(elem)
        if not any(pattern.search(str(v)) for v in values):
            continue
        if elem.VR == "UI":
            elem.value = _map_values(elem, pseudo.uid)
        elif elem.VR == "PN":
            elem.value = "ANONYMIZED"
        elif elem.VR == "CS":  # a vocabulary value never becomes a marker a mart would count as a term
            elem.value = _kept_values(elem, lambda v: not pattern.search(v))
        else:
            mark = "REMOVED" if elem.VR == "AE" else "[removed]"
            elem.value = _map_values(elem, lambda v, mark=mark: pattern.sub(mark, v))
        changed += 1
    return changed


def _drop_malformed_codes(ds: Dataset, profile: DeidProfile) -> int:
    """Empty the kept code string values that are not codes (a name or free text written into
    BodyPartExamined, PatientPosition, …); returns the elements changed."""
    changed = 0
    for parent, tag, values in list(verify.kept_code_strings(ds, profile)):
        if any(verify.malformed_code(v) for v in values):
            parent[tag].value = _kept_values(parent[tag], lambda v: not verify.malformed_code(v.encode()))
            changed += 1
    return changed


def _kept_values(elem: DataElement, keep) -> object:  # type: ignore[no-untyped-def]
    values = [str(v).strip() for v in _values(elem) if str(v).strip() and keep(str(v).strip())]
    return values if len(values) > 1 else (values[0] if values else "")


def _read_back(out: bytes, ds: Dataset, limits: Limits) -> None:
    """The output parses whole, in the encoding its file meta names, into the elements that were written, and
    passes the checks an input must: what no reader could open is never published (the check after staging
    would fail its whole batch)."""
    try:
        back = pydicom.dcmread(io.BytesIO(out))
        ts = back.file_meta.TransferSyntaxUID
        encoded = body_encoding(back) in (None, (ts.is_implicit_VR, ts.is_little_endian))
        check_instance(back, out, limits)
        for _ in back.iterall():  # every element and sequence item parsed, not deferred
            pass
    except Exception as exc:
        raise DeidFailure(QuarantineReason.OUTPUT_UNREADABLE, f"output does not read back ({type(exc).__name__})") from exc
    if not encoded or _written(back) != _written(ds):
        raise DeidFailure(QuarantineReason.OUTPUT_UNREADABLE,
                          "output does not read back as written (encoding or elements differ)")


def _written(ds: Dataset) -> set[BaseTag]:
    """Top-level tags, without group lengths (the writers differ on those; readers recompute them)."""
    return {tag for tag in ds.keys() if tag.element != 0}


@dataclass
class DeidEngine:
    """Profile + pseudonyms + burned-in text screening: bytes in, verified de-identified bytes out."""

    profile: DeidProfile
    pseudo: Pseudonymizer
    reader: TextReader | None = None
    ocr_mode: str = "all"
    screen: TextScreen = field(default_factory=TextScreen)
    net: TextReader | None = None
    net_every: int = NET_EVERY
    limits: Limits = DEFAULT_LIMITS

    def deidentify_bytes(self, data: bytes, *, net: bool = True, hints: tuple[Box, ...] = ()) -> tuple[bytes, DeidOutcome]:
        """Read, de-identify, clean burned-in text, write, verify. Raises :class:`DeidFailure`. The net reads
        a single-frame image, a sample of a multi-frame one's frames, nothing when not ``net`` (a slice its
        series' sample leaves out); ``hints`` are regions blacked out on every frame (where other slices of
        the series showed text). The limits (file size, samples by header and codestream) hold before
        anything is decoded, and a file cut short is refused, as at ingest."""
        with warnings.catch_warnings(), pydicom.config.disable_value_validation():
            warnings.simplefilter("ignore")
            try:
                check_size(len(data), self.limits)
                ds = read_dataset(data, self.limits)
                check_instance(ds, data, self.limits)
                facts = collect_facts(ds, self.profile)
            except InvalidInstance as exc:
                raise DeidFailure(exc.reason, exc.message) from exc
            except Exception as exc:  # reported without the library's text, which can quote values
                raise DeidFailure(QuarantineReason.DEID_FAILED, f"cannot parse input ({type(exc).__name__})") from exc
            missing = [kw for kw in REQUIRED_UIDS if not str(ds.get(kw, "") or "").strip()]
            if missing:
                raise DeidFailure(QuarantineReason.MISSING_UID, f"required attribute(s) missing or empty: {', '.join(missing)}")
            if not any(kw in ds for kw in PIXEL_KEYWORDS) and "Image Storage" in UID(str(ds.SOPClassUID)).name:
                raise DeidFailure(QuarantineReason.NO_PIXEL_DATA, "an image instance without pixel data (cut short?)")
            check_text = "PixelData" in ds and needs_text_check(ds, mode=self.ocr_mode if self.reader else "off")
            ds.file_meta.setdefault("MediaStorageSOPClassUID", ds.get("SOPClassUID"))
            ds.file_meta.setdefault("MediaStorageSOPInstanceUID", ds.get("SOPInstanceUID"))
            outcome = deidentify_dataset(ds, self.profile, self.pseudo, facts)
            if check_text:
                assert self.reader is not None
                result = clean_burned_in_text(ds, self.screen, self.reader, net=self.net,
                                              net_frames="sample" if net else "none",
                                              net_every=self.net_every, hints=hints)
                outcome.burned_in, outcome.text = result.status, result
                if result.status == BurnedInStatus.UNVERIFIED and not result.rounds:
                    raise DeidFailure(QuarantineReason.UNDECODABLE_PIXELS, "pixel data cannot be decoded to screen for text")
                if result.status == BurnedInStatus.UNVERIFIED:
                    raise DeidFailure(QuarantineReason.BURNED_IN_UNVERIFIED,
                                      f"{result.remaining} readable text line(s) left after {result.rounds} redaction round(s)")
                if result.status == BurnedInStatus.REDACTED:
                    add_clean_pixel_code(ds)
            elif facts.burned_in_flagged:
                raise DeidFailure(QuarantineReason.BURNED_IN_UNVERIFIED, "flagged as having burned-in text but screening is off")
            if any(ds.get_item(tag).VR is None for tag in ds.keys()):
                for _ in ds.iterall():  # read as implicit VR, written as explicit: resolve every VR first
                    pass
            outcome.counts["C_code_string"] += _drop_malformed_codes(ds, self.profile)
            ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID  # the writer is us, not the source
            ds.file_meta.ImplementationVersionName = "HCA_ASSETS"
            out = _write(ds, data)
            original = functools.cache(lambda: read_dataset(data))
            found = verify.residue(facts, ds, out, self.profile, original)
            if found:  # a protected value survives in an attribute the profile keeps: clean it where it is
                outcome.counts["C_residue"] += _clean_residue(ds, found, self.pseudo)
                out = _write(ds, data)
            problems = verify.verify_output(facts, ds, out, self.profile, outcome.burned_in, original,
                                            found=None if found else found)  # scanned again only if rewritten
            _read_back(out, ds, self.limits)
        if problems:
            raise DeidFailure(QuarantineReason.PHI_RESIDUE, "; ".join(problems))
        return out, outcome

    def output_name(self, outcome: DeidOutcome) -> str:
        """Relative output path made of pseudonymous UIDs only."""
        ds = outcome.dataset
        return f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
