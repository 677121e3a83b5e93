"""Blocking checks for de-identification: the staged files are re-verified before anything is published."""

import hashlib
import time
from pathlib import Path

import dagster as dg

from hca_assets.config import Settings
from hca_assets.dicom.burned_in import RapidOcrReader
from hca_assets.lake import registry as tables
from hca_assets.stages.deid import STAGE, DeidSpec, recheck_staged

NO_PHI = "no_phi_residue"
UIDS = "uids_pseudonymised_consistently"
COUNTS = "counts_add_up"
PUBLISHED = "published_files_match_table"

DEID_STAGED_CHECKS = [
    dg.AssetCheckSpec(NO_PHI, asset="deid_staged", blocking=True,
                      description="no removed/replaced original value, private tag or unverified burned-in text in any staged "
                                  "file, and no name part, ID or birth date of its original readable by OCR in the "
                                  "pixels of a sample (one file of every series, then redacted ones, HCA_DEID_CHECK_PIXELS "
                                  "in all at least)"),
    dg.AssetCheckSpec(UIDS, asset="deid_staged", blocking=True,
                      description="every UID replaced by the keyed pseudonym of its original (valid, ≤ 64 chars, consistent)"),
    dg.AssetCheckSpec(COUNTS, asset="deid_staged", blocking=True,
                      description="ingested instances = staged + quarantined by de-identification"),
]
PUBLISH_CHECKS = [
    dg.AssetCheckSpec(PUBLISHED, asset="deid_dicom", blocking=True,
                      description="every deid_instances row of the batch has its file with the recorded sha256, and no other file exists"),
]


def staged_checks(settings: Settings, spec: DeidSpec, batch: str, *, expected: int) -> list[dg.AssetCheckResult]:
    start = time.perf_counter()
    reader = RapidOcrReader() if settings.deid_check_pixels else None
    failures = recheck_staged(Path(settings.deid_staging), batch, spec, reader=reader,
                              pixel_sample_size=settings.deid_check_pixels)
    seconds = time.perf_counter() - start
    staged = sum(1 for _ in (Path(settings.deid_staging) / batch).rglob("*.dcm"))
    quarantined = tables.QUARANTINE.read(settings, where={"batch": batch, "stage": STAGE}, columns=["batch"]).num_rows
    return [
        dg.AssetCheckResult(check_name=NO_PHI,
                            passed=failures["phi_residue"] == 0 and failures["missing"] == 0 and failures["pixel_phi"] == 0,
                            metadata={"files_with_residue": failures["phi_residue"], "missing": failures["missing"],
                                      "files_pixels_read": failures["pixels_read"],
                                      "files_with_readable_phi_in_pixels": failures["pixel_phi"],
                                      "seconds": round(seconds, 3)}),
        dg.AssetCheckResult(check_name=UIDS, passed=failures["uid_mismatch"] == 0,
                            metadata={"mismatched": failures["uid_mismatch"]}),
        dg.AssetCheckResult(check_name=COUNTS, passed=staged + quarantined == expected,
                            metadata={"ingested": expected, "staged": staged, "quarantined": quarantined}),
    ]


def publish_checks(settings: Settings, batch: str) -> list[dg.AssetCheckResult]:
    rows = tables.DEID_INSTANCES.read(settings, where={"batch": batch}, columns=["path", "sha256"]).to_pylist()
    bad = sum(
        1 for r in rows
        if not (p := Path(settings.deid) / r["path"]).is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != r["sha256"]
    )
    on_disk = sum(1 for _ in (Path(settings.deid) / batch).rglob("*.dcm"))
    return [dg.AssetCheckResult(check_name=PUBLISHED, passed=bad == 0 and on_disk == len(rows),
                                metadata={"rows": len(rows), "files": on_disk, "mismatched": bad})]
