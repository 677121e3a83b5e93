"""De-identification, stage → check → publish.

``deid_staged`` writes de-identified files to a restricted staging folder and re-verifies them in
blocking checks; only if those pass does ``deid_dicom`` move them into the PHI-free zone.
"""

from collections import Counter
from pathlib import Path

import dagster as dg

from hca_assets._infra.keys import key_fingerprint
from hca_assets.assets import _metadata as md
from hca_assets.checks.deid import DEID_STAGED_CHECKS, PUBLISH_CHECKS, publish_checks, staged_checks
from hca_assets.dicom.contact_sheet import contact_sheet
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.stages.deid import DeidRecord, PublishRun, run_publish, run_stage


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
    run = run_stage(settings, key, pseudonym_key.key(settings), md.progress_logger(context, "de-identified"))
    out = run.outcome
    context.log.info(f"batch {key}: {len(out.staged)} of {run.expected} instances staged with profile "
                     f"{run.spec.profile.name}, {len(out.rejected)} quarantined in {run.seconds:.1f} s")
    return dg.MaterializeResult(
        metadata={
            **md.written(run.crosswalk, rows=len(out.staged)),
            md.NUM_QUARANTINED: len(out.rejected),
            "profile": run.spec.profile.name,
            "key_fingerprint": key_fingerprint(run.spec.key),
            md.SECONDS: round(run.seconds, 3),
            "files_per_second": round(run.expected / run.seconds, 1) if run.seconds else 0.0,
            "burned_in": md.md_counts(Counter(r.burned_in for r in out.staged), ("burned-in result", "instances")),
            "quarantine_reasons": md.md_counts(Counter(str(r.reason) for r in out.rejected), ("reason", "instances")),
        },
        check_results=staged_checks(settings, run.spec, key, expected=run.expected),
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
    run = run_publish(settings, key, pseudonym_key.key(settings))
    context.log.info(f"batch {key}: published {len(run.records)} de-identified instances")
    return dg.MaterializeResult(metadata=_published_metadata(run, Path(settings.deid) / key),
                                check_results=publish_checks(settings, key))


def _published_metadata(run: PublishRun, folder: Path) -> dict[str, object]:
    """Counts by modality, PS3.15 action and burned-in result, the pixel screening table and the redacted frames."""
    records, audit = run.records, run.audit
    return {
        **md.written(run.written),
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
            (folder / r.output, [(int(i), (x0, y0, x1, y1)) for i, x0, y0, x1, y1 in r.redactions], set(r.net_frames))
            for r in records if r.redactions),
            "frames whose burned-in text was blacked out (outlined red; framed blue: read by the net)"),
    }
