"""Fake but realistic patient and staff identities, drawn from a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

__all__ = ["Identity", "make_identity"]

_GIVEN_F = ["Maria", "Aisha", "Elena", "Grace", "Ingrid", "Yuki", "Chloe", "Fatima", "Olivia", "Priya", "Sofia", "Hannah"]
_GIVEN_M = ["James", "Ahmed", "Lucas", "Kenji", "Mateo", "Oliver", "Rafael", "Samuel", "Viktor", "Daniel", "Tomas", "Elias"]
_FAMILY = [
    "Abernathy", "Bergstrom", "Castellano", "Delacroix", "Eriksen", "Fitzgerald", "Gallagher", "Hawthorne",
    "Ivanova", "Jankowski", "Kowalczyk", "Lindqvist", "Montgomery", "Nakamura", "Okonkwo", "Pemberton",
    "Quintero", "Rasmussen", "Santangelo", "Thornbury", "Underwood", "Valdivia", "Whitacre", "Yamashita",
]
_STREETS = ["Maple Avenue", "Harbor Road", "Linden Street", "Kingsway", "Orchard Lane", "Mill Road", "Cedar Court"]
_CITIES = [("Springfield", "Illinois"), ("Riverton", "Wyoming"), ("Fairview", "Oregon"), ("Lakewood", "Ohio")]
_HOSPITALS = ["St. Brigid Memorial Hospital", "Northgate University Medical Center", "Riverside Clinic"]
_OCCUPATIONS = ["Schoolteacher", "Welder", "Pharmacist", "Bus driver", "Architect", "Nurse"]


@dataclass(frozen=True)
class Identity:
    """Everything identifying about one synthetic patient and their care team."""

    family: str
    given: str
    sex: str
    birth_date: date
    mrn: str
    other_mrn: str
    address: str
    phone: str
    mother_birth_name: str
    occupation: str
    hospital: str
    hospital_address: str
    referring: tuple[str, str]
    performing: tuple[str, str]
    reading: tuple[str, str]
    operator: tuple[str, str]
    admission_id: str
    first_visit: date

    @property
    def dicom_name(self) -> str:
        return f"{self.family.upper()}^{self.given.upper()}"

    @property
    def display_name(self) -> str:
        return f"{self.given} {self.family}"


def _pick(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _person(rng: np.random.Generator) -> tuple[str, str]:
    return _pick(rng, _FAMILY), _pick(rng, _GIVEN_F + _GIVEN_M)


def make_identity(rng: np.random.Generator, index: int) -> Identity:
    """A deterministic identity for patient ``index`` (family names are unique per index)."""
    sex = "F" if rng.random() < 0.5 else "M"
    given = _pick(rng, _GIVEN_F if sex == "F" else _GIVEN_M)
    family = _FAMILY[index % len(_FAMILY)] + ("" if index < len(_FAMILY) else f"-{_pick(rng, _FAMILY)}")
    city, state = _CITIES[int(rng.integers(len(_CITIES)))]
    birth = date(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 70)))
    hospital = _pick(rng, _HOSPITALS)
    return Identity(
        family=family,
        given=given,
        sex=sex,
        birth_date=birth,
        mrn=f"MRN{int(rng.integers(10**7, 10**8))}",
        other_mrn=f"EXT{int(rng.integers(10**6, 10**7))}",
        address=f"{int(rng.integers(1, 9999))} {_pick(rng, _STREETS)}, {city}, {state} {int(rng.integers(10000, 99999))}",
        phone=f"+1-{int(rng.integers(200, 999))}-555-{int(rng.integers(1000, 9999))}",
        mother_birth_name=f"{_pick(rng, _FAMILY).upper()}^{_pick(rng, _GIVEN_F).upper()}",
        occupation=_pick(rng, _OCCUPATIONS),
        hospital=hospital,
        hospital_address=f"{int(rng.integers(1, 999))} {_pick(rng, _STREETS)}, {city}, {state}",
        referring=_person(rng),
        performing=_person(rng),
        reading=_person(rng),
        operator=_person(rng),
        admission_id=f"ADM{int(rng.integers(10**5, 10**6))}",
        first_visit=date(2019, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 5))),
    )
