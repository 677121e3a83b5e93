"""The PS3.15 Basic Application Level Confidentiality Profile and its options, derived from Table E.1-1.

Every action comes from the vendored table (``ps315.load_table``); nothing here lists tags by hand
except the pseudo-tags of the table itself (curves, overlays, private groups).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from hca_assets.dicom.enum import DeidOption
from hca_assets.dicom.ps315 import ProfileRow, load_table

__all__ = ["DEFAULT_OPTIONS", "OPTION_CODES", "DeidOption", "DeidProfile", "resolve_action"]


# CID 7050 "De-identification Method" (scheme DCM): code value, meaning
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
OPTION_CODES: dict[DeidOption, tuple[str, str]] = {
    DeidOption.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    DeidOption.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    DeidOption.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    DeidOption.RETAIN_LONGITUDINAL_FULL_DATES: ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    DeidOption.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    DeidOption.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    DeidOption.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    DeidOption.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    DeidOption.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

DEFAULT_OPTIONS = frozenset({DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, DeidOption.RETAIN_PATIENT_CHARACTERISTICS})

_CONCRETE_TAG = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)")
_WILDCARD_TAGS = ("(50XX,XXXX)", "(60XX,3000)", "(60XX,4000)")
_REQUIRED_NON_EMPTY = {"1", "1C"}
_REQUIRED_PRESENT = {"2", "2C"}


def resolve_action(code: str, attribute_type: str | None) -> str:
    """Pick from a combined code (``X/Z``, ``Z/D``, ``X/Z/D``, ``X/D``, ``X/Z/U*``) the strictest action that
    keeps the attribute valid for its type in the IOD: Type 1 needs a value, Type 2 presence, Type 3 nothing.
    """
    choices = code.rstrip("*").split("/")
    if len(choices) == 1:
        return choices[0]
    if attribute_type in _REQUIRED_NON_EMPTY:
        return next((c for c in ("U", "D") if c in choices), choices[-1])
    if attribute_type in _REQUIRED_PRESENT:
        return "Z" if "Z" in choices else next(c for c in ("U", "D") if c in choices)
    return choices[0]


@dataclass(frozen=True)
class DeidProfile:
    """Basic Profile + selected options (default: modified dates + patient characteristics).

    ``safe_private`` lists ``(private creator, element byte)`` pairs kept under Retain Safe Private.
    """

    options: frozenset[DeidOption] = DEFAULT_OPTIONS
    safe_private: frozenset[tuple[str, int]] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", frozenset(DeidOption(o) for o in self.options))
        both = {DeidOption.RETAIN_LONGITUDINAL_FULL_DATES, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES}
        if both <= self.options:
            raise ValueError("choose one of the full-dates and modified-dates options, not both")
        if self.safe_private and DeidOption.RETAIN_SAFE_PRIVATE not in self.options:
            raise ValueError("`safe_private` is given but the Retain Safe Private option is not selected")

    @property
    def name(self) -> str:
        return "+".join(["basic", *sorted(o.value for o in self.options)])

    @property
    def retains_uids(self) -> bool:
        return DeidOption.RETAIN_UIDS in self.options

    @property
    def shifts_dates(self) -> bool:
        return DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in self.options

    def _action(self, row: ProfileRow) -> str:
        """The row's Basic action, replaced by the action of any selected option that has one."""
        return next((row.options[o.value] for o in sorted(self.options) if o.value in row.options), row.basic)

    @functools.cached_property
    def actions(self) -> dict[int, str]:
        """Tag (as int) → action code (possibly combined) for every concrete tag of the table, options applied."""
        return {
            (int(m[1], 16) << 16) | int(m[2], 16): self._action(row)
            for row in load_table()
            if (m := _CONCRETE_TAG.fullmatch(row.tag))
        }

    @functools.cached_property
    def _wildcards(self) -> dict[str, str]:
        """Actions of the table's pseudo-tags: curve data (50xx) and overlay data/comments (60xx)."""
        return {row.tag: self._action(row) for row in load_table() if row.tag in _WILDCARD_TAGS}

    def action_for(self, tag: BaseTag) -> str | None:
        """The action for a (non-private) tag, or None when the profile leaves it alone."""
        action = self.actions.get(int(tag))
        if action is not None:
            return action
        group = (tag >> 16) & 0xFF00
        if group == 0x5000:
            return self._wildcards["(50XX,XXXX)"]
        if group == 0x6000 and tag & 0xFFFF in (0x3000, 0x4000):
            return self._wildcards[f"(60XX,{tag & 0xFFFF:04X})"]
        return None

    def keeps_private(self, parent: Dataset, elem: DataElement) -> bool:
        """Whether a private element (held by ``parent``) is on the Retain Safe Private safelist."""
        if not self.safe_private:
            return False
        creator = parent.get((elem.tag.group << 16) | (elem.tag.element >> 8))
        return creator is not None and (str(creator.value).strip(), elem.tag.element & 0xFF) in self.safe_private

    def method_codes(self) -> list[tuple[str, str]]:
        """CID 7050 codes for the profile and the options in force, in code order."""
        return [BASIC_PROFILE_CODE, *sorted(OPTION_CODES[o] for o in self.options)]
