"""Export one batch: its de-identified studies (instances and the current segmenter's DICOM SEG results) to the
destination, one FHIR ImagingStudy JSON per study under ``exports/<batch>/``, and the ``exports`` rows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from hca_assets._infra.files import atomic_write
from hca_assets._infra.storage import pull, push
from hca_assets.config import Settings
from hca_assets.export.destinations import Credentials, Destination, StudyOutcome, export_studies
from hca_assets.export.fhir import imaging_study
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.segmentation.backends import segmenter_code_version

__all__ = ["BatchExport", "ExportRun", "StudyPlan", "export_batch", "plan_batch", "run_export"]


@dataclass
class StudyPlan:
    """What one study sends: de-identified files, SEG files, and the instance rows its ImagingStudy lists."""

    study: dict[str, Any]
    instances: list[Path] = field(default_factory=list)
    segs: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchExport:
    """The batch's ``exports`` rows and per-study outcomes."""

    rows: pa.Table
    outcomes: list[StudyOutcome]


def plan_batch(settings: Settings, batch: str) -> dict[str, StudyPlan]:
    """Per pseudonymous study of ``batch``: its published files (paths from deid_instances and segmentations)."""
    import pydicom

    studies = {r["study_instance_uid"]: r for r in tables.STUDIES.read(settings, where={"batch": batch}).to_pylist()}
    plans: dict[str, StudyPlan] = {}
    for r in tables.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist():
        uid = r["study_instance_uid"]
        plan = plans.setdefault(uid, StudyPlan(studies.get(uid) or {"study_instance_uid": uid,
                                                                    "patient_pseudonym": r["patient_pseudonym"]}))
        plan.instances.append(Path(settings.deid) / r["path"])
        plan.rows.append(r)
    segs = tables.SEGMENTATIONS.read(settings, where={"batch": batch, "code_version": segmenter_code_version(settings)},
                                     columns=["seg_path"]).column("seg_path").to_pylist()
    for rel in sorted({s for s in segs if s}):
        path = Path(settings.segmentations) / rel
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        plan = plans.get(str(ds.StudyInstanceUID))
        if plan is not None:  # a SEG references the study of the published instances it was made from
            plan.segs.append(path)
            plan.rows.append({"sop_instance_uid": str(ds.SOPInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID),
                              "sop_class_uid": str(ds.SOPClassUID), "modality": str(ds.Modality)})
    return plans


def export_batch(settings: Settings, batch: str, destination: Destination, credentials: Credentials,
                 plans: dict[str, StudyPlan], on_done: Callable[[StudyOutcome], None] | None = None) -> BatchExport:
    """Write each study's ImagingStudy, send the studies (one failing does not stop the others), push the FHIR
    folder to the store's copy of the exports zone and return the rows (the caller commits them)."""
    folder = Path(settings.exports) / batch
    folder.mkdir(parents=True, exist_ok=True)
    series = tables.SERIES.read(settings, where={"batch": batch}).to_pylist()
    fhir: dict[str, str] = {}
    for uid, plan in plans.items():
        resource = imaging_study(plan.study, [s for s in series if s["study_instance_uid"] == uid], plan.rows)
        target = folder / f"{uid}.json"
        atomic_write(target, lambda tmp, r=resource: tmp.write_text(json.dumps(r, indent=1)))
        fhir[uid] = target.relative_to(settings.exports).as_posix()
    outcomes = export_studies(destination, credentials, {uid: [*p.instances, *p.segs] for uid, p in plans.items()},
                              retries=settings.export_retries, on_done=on_done)
    push(settings, folder)  # before the commit that lists the files
    now = datetime.now(UTC)
    rows = [{"batch": batch, "study_instance_uid": o.study_instance_uid,
             "patient_pseudonym": plans[o.study_instance_uid].study["patient_pseudonym"],
             "destination_kind": destination.kind, "destination": destination.describe(), "status": o.status,
             "instances": len(plans[o.study_instance_uid].instances), "seg_objects": len(plans[o.study_instance_uid].segs),
             "accepted": len(o.accepted), "refused": o.refused, "attempts": o.attempts, "message": o.message or None,
             "fhir_path": fhir[o.study_instance_uid], "exported_at": now} for o in outcomes]
    return BatchExport(pa.Table.from_pylist(rows, schema=tables.EXPORTS.schema), outcomes)


@dataclass(frozen=True)
class ExportRun:
    """One batch exported: its study plans, the outcome, the write of ``exports`` and the seconds."""

    plans: dict[str, StudyPlan]
    export: BatchExport
    written: WriteResult
    seconds: float


def run_export(settings: Settings, batch: str, destination: Destination, credentials: Credentials,
               on_plan: Callable[[int], None] | None = None,
               on_done: Callable[[StudyOutcome], None] | None = None) -> ExportRun:
    """Export ``batch``'s studies to ``destination`` and write its ``exports`` rows; ``on_plan`` hears how many
    studies go, ``on_done`` each study's outcome as it ends."""
    start = time.perf_counter()
    pull(settings, Path(settings.deid) / batch, Path(settings.segmentations) / batch)
    plans = plan_batch(settings, batch)
    if on_plan:
        on_plan(len(plans))
    out = export_batch(settings, batch, destination, credentials, plans, on_done=on_done)
    written = tables.EXPORTS.write(settings, out.rows, match={"batch": batch})
    return ExportRun(plans, out, written, time.perf_counter() - start)
