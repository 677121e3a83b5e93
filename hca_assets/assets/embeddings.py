"""The embeddings group, per batch: image and series vectors, class and lesion labels, and drift against the
reference window with per-image OOD scores."""

from collections import Counter

import dagster as dg
import pyarrow.compute as pc

from hca_assets.assets import _metadata as md
from hca_assets.checks.embeddings import DRIFT_CHECKS, EMBEDDING_CHECKS, drift_checks, embedding_checks
from hca_assets.evaluation.drift import drift_plot_png
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.models.endpoint import MI2_POOL
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import EmbeddingEndpoint, SettingsResource
from hca_assets.stages.drift import DriftRun, run_drift
from hca_assets.stages.embeddings import run_embeddings
from hca_assets.stages.labels import run_labels


@dg.asset(deps=["images"], partitions_def=ingest_batches, group_name="embeddings", kinds={"python", "deltalake"},
          code_version=DEFAULTS["embeddings"], automation_condition=REPROCESS, check_specs=EMBEDDING_CHECKS,
          pool=MI2_POOL, retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
          description="One L2-normalised vector per image, and per 3D series by mean/max/median/std of its slices.")
def embeddings(context: dg.AssetExecutionContext, storage: SettingsResource,
               embedding_endpoint: EmbeddingEndpoint) -> dg.MaterializeResult:
    settings = storage.settings()
    key = context.partition_key
    embedder = get_embedder(settings, url=embedding_endpoint.url, key=embedding_endpoint.key)
    version = storage.code_version(context)  # the version the loaded definition declares, or a one-line failure
    run = run_embeddings(settings, key, embedder, version, md.progress_logger(context, "embedded"))
    return dg.MaterializeResult(
        metadata={**md.written(run.written), "series_vectors": run.series.num_rows, "code_version": version,
                  "dim": embedder.dim,
                  "images_per_second": round(run.images.num_rows / run.seconds, 1) if run.seconds else 0.0},
        check_results=embedding_checks(settings, key, version, expected=run.expected, dim=embedder.dim),
    )


@dg.asset(deps=["deid_staged", "deid_dicom"], partitions_def=ingest_batches, group_name="embeddings",
          kinds={"python", "deltalake"}, code_version="labels-1", automation_condition=REPROCESS,
          description="Class and lesion labels of published instances, from synthetic ground truth via the crosswalk.")
def labels(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    run = run_labels(storage.settings(), context.partition_key)
    return dg.MaterializeResult(metadata={
        **md.written(run.written),
        "classes": md.md_counts(Counter(run.table.column("class_label").to_pylist()), ("class", "instances")),
    })


@dg.asset(deps=[embeddings], partitions_def=ingest_batches, group_name="embeddings", kinds={"python", "deltalake"},
          code_version=DEFAULTS["embedding_drift"], automation_condition=REPROCESS, check_specs=DRIFT_CHECKS,
          description="MMD² (RBF, permutation p-value) of the batch's image embeddings against the earliest batches "
                      "of the same code_version, per-dimension shift, and per-image OOD scores (k-th reference neighbour).")
def embedding_drift(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # a stale definition fails here, in one line
    run = run_drift(settings, context.partition_key, embedder_code_version(settings))
    row = run.row
    context.log.info(f"drift {row['status']}: MMD² {row['mmd2']} (threshold {row['threshold']}), "
                     f"OOD fraction {row['ood_fraction']}")
    return dg.MaterializeResult(metadata=_drift_metadata(run), check_results=drift_checks(settings, row))


def _drift_metadata(run: DriftRun) -> dict[str, object]:
    row, ood = run.row, run.outcome.ood.filter(pc.field("ood"))
    return {**md.written(run.written, rows=run.outcome.ood.num_rows), "code_version": row["code_version"],
            "status": row["status"], "statistic_mmd2": row["mmd2"], "p_value": row["p_value"],
            "threshold": row["threshold"], "drifted": row["drifted"], "ood_fraction": row["ood_fraction"],
            "ood_threshold": row["ood_threshold"], "mean_shift": row["mean_shift"], "shifted_dims": row["shifted_dims"],
            "reference_batches": dg.MetadataValue.json(row["reference_batches"]),
            "ood_by_modality": md.md_counts(Counter(ood.column("modality").to_pylist()), ("modality", "OOD images")),
            md.SECONDS: round(run.seconds, 3),
            "drift_per_batch": md.md_png(drift_plot_png(run.history), "MMD² per batch vs threshold")}
