"""FHIR R4 ``ImagingStudy`` of a de-identified study, from its lake rows (pseudonymous UIDs, shifted dates).

fhir.resources 8 models R5 at its top level and R4B under ``fhir.resources.R4B``; there is no separate R4 package.
``ImagingStudy`` is unchanged from R4 to R4B (``modality`` and ``bodySite`` are ``Coding``, not R5's
``CodeableConcept``), so a resource that validates against ``fhir.resources.R4B.imagingstudy.ImagingStudy`` is an
R4 one. The subject is a reference to the pseudonymous Patient only; no original identifier is ever an input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

__all__ = ["BODY_SITES", "imaging_study", "validate"]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
# BodyPartExamined → SNOMED CT, from DICOM PS3.16 CID 4031 "Common Anatomic Regions" (the codes the synthetic
# corpus and common CT/MR/CR headers use); another value keeps its DICOM term as the display only
BODY_SITES = {
    "HEAD": ("69536005", "Head"), "BRAIN": ("12738006", "Brain"), "NECK": ("45048000", "Neck"),
    "CHEST": ("51185008", "Chest"), "ABDOMEN": ("818981001", "Abdomen"), "PELVIS": ("816092008", "Pelvis"),
    "CHESTABDOMEN": ("416550000", "Chest and abdomen"), "KNEE": ("72696002", "Knee"),
}
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def imaging_study(study: Mapping[str, Any], series: Sequence[Mapping[str, Any]],
                  instances: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ImagingStudy (as JSON-ready dict, validated) of ``study`` (a ``studies`` row): one series entry per
    series the ``instances`` (``sop_instance_uid``, ``series_instance_uid``, ``sop_class_uid``, ``modality``;
    SEG results included) belong to, with body site and date from the matching ``series`` row where known."""
    by_series: dict[str, list[Mapping[str, Any]]] = {}
    for row in instances:
        by_series.setdefault(row["series_instance_uid"], []).append(row)
    known = {s["series_instance_uid"]: s for s in series}
    entries = [_series(uid, rows, known.get(uid, {})) for uid, rows in sorted(by_series.items())]
    uid, patient = study["study_instance_uid"], study["patient_pseudonym"]
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": uid,
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
        "status": "available",
        "subject": ({"reference": f"Patient/{patient}"} if _FHIR_ID.fullmatch(patient)
                    else {"type": "Patient", "identifier": {"value": patient}}),
        "modality": [{"system": DCM, "code": m} for m in sorted({e["modality"]["code"] for e in entries})],
        "numberOfSeries": len(entries),
        "numberOfInstances": sum(e["numberOfInstances"] for e in entries),
        "series": entries,
    }
    if isinstance(study.get("study_date"), date):
        resource["started"] = study["study_date"].isoformat()
    validate(resource)
    return resource


def _series(uid: str, rows: Sequence[Mapping[str, Any]], known: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "uid": uid,
        "modality": {"system": DCM, "code": known.get("modality") or rows[0]["modality"]},
        "numberOfInstances": len(rows),
        "instance": [{"uid": r["sop_instance_uid"], "sopClass": {"system": "urn:ietf:rfc:3986",
                                                                "code": f"urn:oid:{r['sop_class_uid']}"}}
                     for r in sorted(rows, key=lambda r: r["sop_instance_uid"])],
    }
    if body_part := known.get("body_part"):
        code = BODY_SITES.get(body_part.upper())
        entry["bodySite"] = {"system": SNOMED, "code": code[0], "display": code[1]} if code else {"display": body_part}
    if isinstance(known.get("series_date"), date):
        entry["started"] = known["series_date"].isoformat()
    return entry


def validate(resource: Mapping[str, Any]) -> None:
    """Raise (pydantic ``ValidationError``) unless ``resource`` is a valid R4 (R4B) ImagingStudy."""
    from fhir.resources.R4B.imagingstudy import ImagingStudy

    ImagingStudy.model_validate(dict(resource))
