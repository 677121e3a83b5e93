"""De-identification, stage → check → publish.

``deid_staged`` writes de-identified files to a restricted staging folder and re-verifies them in
blocking checks; only if those pass does ``deid_dicom`` move them into the PHI-free zone.
"""

import time
from collections import Counter
from pathlib import Path

import dagster as dg

from hca_assets._infra.keys import key_fingerprint
from hca_assets._infra.storage import prune, pull, push
from hca_assets.assets import _metadata as md
from hca_assets.checks.deid import DEID_STAGED_CHECKS, PUBLISH_CHECKS, publish_checks, staged_checks
from hca_assets.dicom.contact_sheet import contact_sheet
from hca_assets.lake import registry as tables
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.stages.deid import (
    STAGE,
    DeidRecord,
    profile_from_settings,
    publish_batch,
    published_tables,
    spec_from_settings,
    stage_batch,
)


@dg.asset(
    deps=["raw_dicom"],
    partitions_def=ingest_batches,
    group_name="deid",
    kinds={"python", "dicom"},
    code_version=DEFAULTS["deid_staged"],
    automation_condition=REPROCESS,
    check_specs=DEID_STAGED_CHECKS,
    description="PS3.15 de-identification of one batch into restricted staging, re-verified by blocking checks.",
)
def deid_staged(context: dg.AssetExecutionContext, storage: SettingsResource, pseudonym_key: PseudonymKey) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # the loaded definition's version is this profile's
    key = context.partition_key
    spec = spec_from_settings(settings, pseudonym_key.key(settings))
    rows = tables.RAW_INSTANCES.read(settings, where={"batch": key}, columns=["path"])
    pull(settings, Path(settings.raw_batches) / key)
    sources = [Path(settings.raw_batches) / key / "files" / p for p in rows.column("path").to_pylist()]
    context.log.info(f"batch {key}: de-identifying {len(sources)} instances with profile {spec.profile.name}")
    start = time.perf_counter()
    out = stage_batch(key, sources, Path(settings.deid_staging), Path(settings.quarantine), spec,
                      workers=settings.workers, progress=md.progress_logger(context, "de-identified"), limits=settings.limits)
    seconds = time.perf_counter() - start
    push(settings, Path(settings.deid_staging) / key, Path(settings.quarantine) / key)
    crosswalk = tables.DEID_CROSSWALK.write(settings, out.crosswalk, match={"batch": key})
    tables.QUARANTINE.write(settings, out.quarantine, match={"batch": key, "stage": STAGE})
    context.log.info(f"batch {key}: {len(out.staged)} staged, {len(out.rejected)} quarantined in {seconds:.1f} s")
    return dg.MaterializeResult(
        metadata={
            **md.written(crosswalk, rows=len(out.staged)),
            md.NUM_QUARANTINED: len(out.rejected),
            "profile": spec.profile.name,
            "key_fingerprint": key_fingerprint(spec.key),
            md.SECONDS: round(seconds, 3),
            "files_per_second": round(len(sources) / seconds, 1) if seconds else 0.0,
            "burned_in": md.md_counts(Counter(r.burned_in for r in out.staged), ("burned-in result", "instances")),
            "quarantine_reasons": md.md_counts(Counter(str(r.reason) for r in out.rejected), ("reason", "instances")),
        },
        check_results=staged_checks(settings, spec, key, expected=rows.num_rows),
    )


def _by_modality(records: list[DeidRecord]) -> dict[str, list[DeidRecord]]:
    out: dict[str, list[DeidRecord]] = {}
    for r in records:
        out.setdefault(r.modality or "-", []).append(r)
    return out


@dg.asset(
    deps=[deid_staged],
    partitions_def=ingest_batches,
    group_name="deid",
    kinds={"python", "dicom", "deltalake"},
    code_version=DEFAULTS["deid_dicom"],
    automation_condition=REPROCESS,
    check_specs=PUBLISH_CHECKS,
    description="Checked de-identified files of one batch, published to the PHI-free zone, with the audit table.",
)
def deid_dicom(context: dg.AssetExecutionContext, storage: SettingsResource, pseudonym_key: PseudonymKey) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # the loaded definition's version is this profile's
    key = context.partition_key
    pull(settings, Path(settings.deid_staging) / key)
    records = publish_batch(Path(settings.deid_staging), Path(settings.deid), key)
    instances, audit = published_tables(key, records, profile_from_settings(settings),
                                        key_fingerprint(pseudonym_key.key(settings)))
    push(settings, Path(settings.deid) / key)  # the objects first, then the commit that lists them
    written = tables.DEID_INSTANCES.write(settings, instances, match={"batch": key})
    tables.DEID_AUDIT.write(settings, audit, match={"batch": key})
    prune(settings, Path(settings.deid) / key)  # an earlier publication's files, and the staged copies
    prune(settings, Path(settings.deid_staging) / key)
    context.log.info(f"batch {key}: published {len(records)} de-identified instances")
    return dg.MaterializeResult(
        metadata={
            **md.written(written),
            "modalities": md.md_counts(Counter(r.modality for r in records), ("modality", "instances")),
            "actions": md.md_counts(
                {c: int(sum(audit.column(c).to_pylist())) for c in ("removed", "emptied", "dummied", "uids_replaced",
                                                                      "cleaned", "kept", "private_removed")},
                ("action", "attributes"),
            ),
            "burned_in": md.md_counts(Counter(r.burned_in for r in records), ("burned-in text", "instances")),
            "max_blanked_share": round(max((r.blanked_fraction for r in records), default=0.0), 4),
            "pixel_screening": md.md_table(
                ("modality", "instances", "frames screened", "flagged by the screen", "read by the net",
                 "net found what the screen missed", "frames redacted"),
                [(m, len(rs), sum(r.frames_screened for r in rs), sum(r.frames_flagged for r in rs),
                  sum(len(r.net_frames) for r in rs), sum(r.net_hits for r in rs),
                  sum(r.frames_redacted for r in rs))
                 for m, rs in sorted(_by_modality(records).items())]),
            "redacted_frames": md.md_png(contact_sheet(
                (Path(settings.deid) / key / r.output, [(int(i), (x0, y0, x1, y1)) for i, x0, y0, x1, y1 in r.redactions],
                 set(r.net_frames))
                for r in records if r.redactions),
                "frames whose burned-in text was blacked out (outlined red; framed blue: read by the net)"),
        },
        check_results=publish_checks(settings, key),
    )
