"""Readable PHI in pixels, judged without the engine: the identifying tokens of an original (name parts, IDs,
birth dates in the spellings scanners burn in) and whether an OCR reading of an output shows any of them.

Used by the blocking check ``no_phi_residue`` on a sample of every batch; tokens and readings stay in memory
inside the restricted zone, and only counts leave.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from hca_assets.dicom.burned_in import TextLine, TextReader, display_frames, viewer_pixels

__all__ = ["date_spellings", "phi_tokens", "read_frames", "readable_phi"]

_ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator", "StudyID")
_NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MIN_NAME, MIN_ID = 3, 4  # shorter name parts and IDs match too much that is not them
_SMALL = 512  # frames with a shorter side are read at twice their size (small type)


def _norm(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def date_spellings(value: str) -> set[str]:
    """A DA (or the date part of a DT) in the spellings viewers and scanners burn in, alphanumerics only."""
    digits = re.sub(r"\D", "", value)[:8]
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return set()
    y, yy, m, d = f"{day.year:04d}", f"{day.year % 100:02d}", f"{day.month:02d}", f"{day.day:02d}"
    mon = _MONTHS[day.month - 1]
    return {y + m + d, d + m + y, m + d + y, d + m + yy, m + d + yy, yy + m + d, d + mon + y, mon + d + y,
            d + mon + yy, str(day.day) + mon + y, mon + str(day.day) + y, y + mon + d}


def _values(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None:
        return []
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v) for v in items if str(v).strip()]


def phi_tokens(original: Dataset) -> tuple[frozenset[str], frozenset[str]]:
    """(name words, ID and birth-date strings) of the original, upper-case alphanumerics; short names are matched
    as whole words of a reading, longer ones, IDs and dates anywhere in it (OCR reads a name's ``^`` as a letter)."""
    names = {w for kw in _NAME_KEYWORDS for v in _values(original, kw)
             for w in re.split(r"[^A-Za-z]+", v) if len(w) >= MIN_NAME}
    ids = {n for kw in _ID_KEYWORDS for v in _values(original, kw) if len(n := _norm(v)) >= MIN_ID}
    for v in _values(original, "PatientBirthDate"):
        ids |= date_spellings(v)
    return frozenset(w.upper() for w in names), frozenset(ids)


def read_frames(ds: Dataset, reader: TextReader) -> list[TextLine]:
    """OCR lines of the first, middle and last frame as the viewer shows them (small frames read at 2×)."""
    import cv2

    grey = display_frames(*viewer_pixels(ds))
    lines: list[TextLine] = []
    for i in sorted({0, len(grey) // 2, len(grey) - 1}):
        frame = grey[i]
        if min(frame.shape) < _SMALL:
            frame = cv2.resize(frame, (frame.shape[1] * 2, frame.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
        lines.extend(reader.read(np.pad(frame, 16)))
    return lines


def readable_phi(lines: Iterable[TextLine], tokens: tuple[frozenset[str], frozenset[str]], *, min_score: float = 0.5) -> int:
    """How many of the tokens a reading shows (lines at ``min_score`` or more)."""
    names, ids = tokens
    texts = [t.text.upper() for t in lines if t.score >= min_score]
    words = {w for text in texts for w in re.split(r"[^A-Z]+", text) if w}
    joined = "|".join(_norm(text) for text in texts)
    return (sum(1 for n in names if n in words or (len(n) > MIN_NAME and n in joined))
            + sum(1 for token in ids if token in joined))
