"""embedding_drift (per batch): the batch's embeddings against the reference window — drift and OOD scores."""

import time
from collections import Counter

import dagster as dg
import pyarrow.compute as pc

from hca_assets.assets import _metadata as md
from hca_assets.checks.drift import DRIFT_CHECKS, drift_checks
from hca_assets.evaluation.drift import drift_plot_png
from hca_assets.lake import registry as tables
from hca_assets.models import embedder_code_version
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.stages.drift import drift_batch

PLOTTED = 40  # the latest batches the plot shows


@dg.asset(deps=["embeddings"], partitions_def=ingest_batches, group_name="embeddings", kinds={"python", "deltalake"},
          code_version=DEFAULTS["embedding_drift"], automation_condition=REPROCESS, check_specs=DRIFT_CHECKS,
          description="MMD² (RBF, permutation p-value) of the batch's image embeddings against the earliest batches "
                      "of the same code_version, per-dimension shift, and per-image OOD scores (k-th reference neighbour).")
def embedding_drift(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # a stale definition fails here, in one line
    key = context.partition_key
    version = embedder_code_version(settings)
    start = time.perf_counter()
    out = drift_batch(settings, key, version)
    own = {"batch": key, "code_version": version}
    written = tables.DRIFT.write(settings, out.drift, match=own)
    tables.OOD_SCORES.write(settings, out.ood, match=own)
    row = out.drift.to_pylist()[0]
    history = tables.DRIFT.read(settings, where={"code_version": version},  # one small row per batch
                                columns=["batch", "mmd2", "threshold"]).sort_by("batch").to_pylist()[-PLOTTED:]
    context.log.info(f"drift {row['status']}: MMD² {row['mmd2']} (threshold {row['threshold']}), "
                     f"OOD fraction {row['ood_fraction']}")
    ood = out.ood.filter(pc.field("ood"))
    return dg.MaterializeResult(
        metadata={**md.written(written, rows=out.ood.num_rows), "code_version": version, "status": row["status"],
                  "statistic_mmd2": row["mmd2"], "p_value": row["p_value"], "threshold": row["threshold"],
                  "drifted": row["drifted"], "ood_fraction": row["ood_fraction"], "ood_threshold": row["ood_threshold"],
                  "mean_shift": row["mean_shift"], "shifted_dims": row["shifted_dims"],
                  "reference_batches": dg.MetadataValue.json(row["reference_batches"]),
                  "ood_by_modality": md.md_counts(Counter(ood.column("modality").to_pylist()), ("modality", "OOD images")),
                  md.SECONDS: round(time.perf_counter() - start, 3),
                  "drift_per_batch": md.md_png(drift_plot_png([(r["batch"], r["mmd2"], r["threshold"]) for r in history]),
                                               "MMD² per batch vs threshold")},
        check_results=drift_checks(settings, row),
    )
