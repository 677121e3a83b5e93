"""CXRReportGen per batch: grounded findings of each chest X-ray study (optional Azure backend; skipped, never
faked, when no endpoint is configured)."""

from collections import Counter
from collections.abc import Iterator

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.models.cxrreportgen import CxrReportGenClient
from hca_assets.models.endpoint import Endpoint
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import ReportEndpoint, SettingsResource
from hca_assets.stages.reports import run_reports


@dg.asset(deps=["images"], partitions_def=ingest_batches, group_name="reports", kinds={"python", "deltalake"},
          code_version=DEFAULTS["reports"], output_required=False,
          retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
          description="CXRReportGen findings (sentence + boxes) per CR/DX chest study: frontal image, lateral when "
                      "present, technique text; Delta reports. Skipped when HCA_CXR_ENDPOINT is not set.")
def reports(context: dg.AssetExecutionContext, storage: SettingsResource,
            report_endpoint: ReportEndpoint) -> Iterator[dg.MaterializeResult]:
    if not report_endpoint.url:
        context.log.info("reports skipped: no CXRReportGen endpoint configured (set HCA_CXR_ENDPOINT and HCA_CXR_KEY); "
                         "no report was generated or written")
        return
    settings = storage.settings()
    version = storage.code_version(context)
    client = CxrReportGenClient(Endpoint(report_endpoint.url, report_endpoint.key, deployment=settings.cxr_deployment),
                                version=settings.cxr_model_version)
    run = run_reports(settings, context.partition_key, client, version, md.progress_logger(context, "reported"))
    table = run.table
    status = Counter(zip(table.column("study_instance_uid").to_pylist(), table.column("status").to_pylist(), strict=True))
    for reason in {r for r, s in zip(table.column("reason").to_pylist(), table.column("status").to_pylist(), strict=True)
                   if s == "failed"}:
        context.log.warning(f"a study was not reported: {reason}")
    yield dg.MaterializeResult(metadata={
        **md.written(run.written), md.SECONDS: round(run.seconds, 3), "code_version": version,
        "studies_reported": len({s for (s, st) in status if st == "reported"}),
        "studies_failed": sum(1 for (_, s) in status if s == "failed"),
        "findings": sum(1 for s in table.column("status").to_pylist() if s == "reported"),
    })
