"""Chest X-ray reports for one batch: each CR/DX chest study's frontal image (and lateral, when the study has one)
sent to CXRReportGen, its grounded findings as rows of Delta ``reports``; a study the endpoint fails gets a
``failed`` row with a PHI-free reason and the batch goes on."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pydicom

from hca_assets._infra.storage import pull
from hca_assets.config import Settings
from hca_assets.dicom.pixels import display_frames
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.lake.schemas import REPORTS
from hca_assets.models.cxrreportgen import CxrReportGenClient, crop_box_to_pixels
from hca_assets.models.endpoint import EndpointError

__all__ = ["CHEST_MODALITIES", "ReportsRun", "report_batch", "run_reports"]

CHEST_MODALITIES = ("CR", "DX")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "RLD", "LLD")


def _chest_studies(images: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    """CR/DX chest images (first frame) by study, in SOP order."""
    studies: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in sorted(images, key=lambda r: str(r["sop_instance_uid"])):
        if r["modality"] in CHEST_MODALITIES and str(r.get("body_part") or "").upper() == "CHEST" and r["frame"] == 0:
            studies[str(r["study_instance_uid"])].append(r)
    return studies


def report_batch(batch: str, images: list[dict[str, object]], deid_paths: dict[str, str], deid_root: Path,
                 client: CxrReportGenClient, version: str,
                 progress: Callable[[int, int], None] | None = None) -> pa.Table:
    """Rows of ``reports`` for the chest studies among ``images`` (the batch's ``images`` rows); ``deid_paths``
    maps SOP Instance UID → path under ``deid_root``."""
    rows: list[dict[str, object]] = []
    studies = _chest_studies(images)
    for done, (study, members) in enumerate(sorted(studies.items()), 1):
        views = {}
        for m in members:
            ds = pydicom.dcmread(deid_root / deid_paths[str(m["sop_instance_uid"])])
            lateral = str(ds.get("ViewPosition", "")).upper() in LATERAL_VIEWS
            views.setdefault("lateral" if lateral else "frontal", (m, ds))
        base = {"batch": batch, "study_instance_uid": study, "model_version": client.version, "code_version": version,
                "reported_at": datetime.now(UTC)}
        if "frontal" not in views:
            rows.append({**base, "frontal_sop_instance_uid": None, "status": "failed", "reason": "no frontal view"})
            continue
        (front, front_ds), lateral = views["frontal"], views.get("lateral")
        base |= {"frontal_sop_instance_uid": front["sop_instance_uid"],
                 "lateral_sop_instance_uid": lateral[0]["sop_instance_uid"] if lateral else None}
        technique = f"{front['modality']} chest {front_ds.get('ViewPosition', '') or 'frontal'}".strip()
        try:
            findings = client.report(next(display_frames(front_ds)[1]),
                                     lateral=next(display_frames(lateral[1])[1]) if lateral else None, technique=technique)
        except EndpointError as exc:  # PHI-free by contract: status, reason, model error headers
            rows.append({**base, "status": "failed", "reason": str(exc)})
            continue
        height, width = int(front["rows"]), int(front["columns"])
        for i, f in enumerate(findings):
            rows.append({**base, "status": "reported", "finding_index": i, "sentence": f.sentence,
                         "boxes": [list(b) for b in f.boxes],
                         "boxes_px": [[round(v, 1) for v in crop_box_to_pixels(b, height, width)] for b in f.boxes]})
        if progress:
            progress(done, len(studies))
    return pa.Table.from_pylist([{name: r.get(name) for name in REPORTS.names} for r in rows], schema=REPORTS)


@dataclass(frozen=True)
class ReportsRun:
    """One batch reported: its ``reports`` rows, their write and the seconds."""

    table: pa.Table
    written: WriteResult
    seconds: float


def run_reports(settings: Settings, batch: str, client: CxrReportGenClient, version: str,
                progress: Callable[[int, int], None] | None = None) -> ReportsRun:
    """Report the chest studies of ``batch`` with ``client`` as code_version ``version`` (its slice replaced)."""
    images = tables.IMAGES.read(settings, where={"batch": batch}).to_pylist()
    paths = {r["sop_instance_uid"]: r["path"] for r in
             tables.DEID_INSTANCES.read(settings, where={"batch": batch}, columns=["sop_instance_uid", "path"]).to_pylist()}
    pull(settings, Path(settings.deid) / batch)
    start = time.perf_counter()
    table = report_batch(batch, images, paths, Path(settings.deid), client, version, progress=progress)
    written = tables.REPORTS.write(settings, table, match={"batch": batch, "code_version": version})
    return ReportsRun(table, written, time.perf_counter() - start)
