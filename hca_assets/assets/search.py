"""Images, embeddings, labels (per batch) and the FAISS index and retrieval evaluation (all batches)."""

import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from hca_assets._infra.storage import prune, pull, pull_file, push
from hca_assets.assets import _metadata as md
from hca_assets.checks.search import (
    EMBEDDING_CHECKS,
    EVAL_CHECKS,
    IMAGE_CHECKS,
    INDEX_CHECKS,
    embedding_checks,
    eval_checks,
    image_checks,
    index_checks,
)
from hca_assets.config import Settings
from hca_assets.evaluation.labels import labels_from_truth
from hca_assets.evaluation.report import retrieval_rows
from hca_assets.lake import registry as tables
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.models.base import vectors_of
from hca_assets.models.endpoint import MI2_POOL
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import EmbeddingEndpoint, SettingsResource
from hca_assets.search.index import index_builds, index_embeddings, index_studies
from hca_assets.search.sheet import neighbour_sheet
from hca_assets.stages.embeddings import aggregate_series, embed_images, embeddable
from hca_assets.stages.images import RENDER_STAGE, render_batch, render_quarantine


@dg.asset(deps=["deid_dicom"], partitions_def=ingest_batches, group_name="images", kinds={"python", "png", "nifti"},
          code_version=DEFAULTS["images"], automation_condition=REPROCESS, check_specs=IMAGE_CHECKS,
          description="1024² 8-bit PNG per frame (windowed, letterboxed) and NIfTI per 3D series, from de-identified DICOM.")
def images(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # the loaded definition's version is this preprocessing's
    key = context.partition_key
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": key}).to_pylist()
    start = time.perf_counter()
    pull(settings, Path(settings.deid) / key)
    out = render_batch(key, instances, Path(settings.deid), Path(settings.images), workers=settings.workers,
                       progress=md.progress_logger(context, "rendered"), timeout=settings.limits.timeout)
    push(settings, Path(settings.images) / key)
    written = tables.IMAGES.write(settings, out.images, match={"batch": key})
    tables.VOLUMES.write(settings, out.volumes, match={"batch": key})
    prune(settings, Path(settings.images) / key)
    tables.QUARANTINE.write(settings, render_quarantine(key, out.failed, instances, out.lost),
                            match={"batch": key, "stage": RENDER_STAGE})
    for sop, reason in out.failed:
        context.log.warning(f"instance {sop}: {reason} (quarantined)")
    return dg.MaterializeResult(
        metadata={
            **md.written(written), "volumes": out.volumes.num_rows, "failed": len(out.failed),
            md.SECONDS: round(time.perf_counter() - start, 3),
            "windows": md.md_counts(Counter(str(w) for w in out.images.column("window").to_pylist()), ("window", "images")),
        },
        check_results=image_checks(settings, key, failed=len(out.failed)),
    )


@dg.asset(deps=[images], partitions_def=ingest_batches, group_name="embeddings", kinds={"python", "deltalake"},
          code_version=DEFAULTS["embeddings"], automation_condition=REPROCESS, check_specs=EMBEDDING_CHECKS,
          pool=MI2_POOL, retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
          description="One L2-normalised vector per image, and per 3D series by mean/max/median/std of its slices.")
def embeddings(context: dg.AssetExecutionContext, storage: SettingsResource,
               embedding_endpoint: EmbeddingEndpoint) -> dg.MaterializeResult:
    settings = storage.settings()
    key = context.partition_key
    embedder = get_embedder(settings, url=embedding_endpoint.url, key=embedding_endpoint.key)
    version = storage.code_version(context)  # the version the loaded definition declares, or a one-line failure
    rows = tables.IMAGES.read(settings, where={"batch": key}).to_pylist()
    start = time.perf_counter()
    pull(settings, Path(settings.images) / key)
    table = embed_images(rows, Path(settings.images), embedder, version, progress=md.progress_logger(context, "embedded"))
    seconds = time.perf_counter() - start
    volumes = set(tables.VOLUMES.read(settings, where={"batch": key}, columns=["series_instance_uid"])
                  .column("series_instance_uid").to_pylist())
    series = aggregate_series(table, volumes)
    own = {"batch": key, "code_version": version}  # this version's slice: other versions' rows stay queryable
    written = tables.EMBEDDINGS.write(settings, table, match=own)
    tables.SERIES_EMBEDDINGS.write(settings, series, match=own)
    return dg.MaterializeResult(
        metadata={**md.written(written), "series_vectors": series.num_rows, "code_version": version,
                  "dim": embedder.dim, "images_per_second": round(table.num_rows / seconds, 1) if seconds else 0.0},
        check_results=embedding_checks(settings, key, version, expected=len(embeddable(rows)), dim=embedder.dim),
    )


@dg.asset(deps=["deid_staged", "deid_dicom"], partitions_def=ingest_batches, group_name="embeddings",
          kinds={"python", "deltalake"}, code_version="labels-1", automation_condition=REPROCESS,
          description="Class and lesion labels of published instances, from synthetic ground truth via the crosswalk.")
def labels(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    key = context.partition_key
    crosswalk = tables.DEID_CROSSWALK.read(settings, where={"batch": key}).to_pylist()
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": key}).to_pylist()
    pull_file(settings, settings.truth_file)
    table = labels_from_truth(key, Path(settings.truth_file), crosswalk, instances)
    written = tables.LABELS.write(settings, table, match={"batch": key})
    return dg.MaterializeResult(metadata={
        **md.written(written),
        "classes": md.md_counts(Counter(table.column("class_label").to_pylist()), ("class", "instances")),
    })


@dg.asset(deps=[embeddings], group_name="search", kinds={"faiss"}, check_specs=INDEX_CHECKS,
          automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
          description="Exact FAISS indexes (image, series and study level) per embedding code_version; image and series "
                      "indexes grow incrementally.")
def faiss_index(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    version = embedder_code_version(settings)
    manifests = {}
    pull(settings, settings.indexes)  # the index grows from the files last published
    read = {"image": tables.EMBEDDINGS.read(settings), "series": tables.SERIES_EMBEDDINGS.read(settings)}
    for level, table in read.items():
        if table.num_rows:
            manifests[level] = index_embeddings(table, level, Path(settings.indexes), version)
    if manifests.get("image", {}).get("count"):  # studies: the mean of their series vectors (3D series) or image vectors (planar)
        manifests["study"] = index_studies(read["image"], read["series"], Path(settings.indexes), version)
    for level, m in manifests.items():
        context.log.info(f"{level} index: {m['count']} vectors ({m['mode']})")
    push(settings, settings.indexes)
    written = tables.INDEX_BUILDS.write(settings, index_builds(manifests, Path(settings.indexes), context.run_id),
                                        match={"run_id": context.run_id})
    return dg.MaterializeResult(
        metadata={**md.written(written), "code_version": version,
                  **{f"{lvl}_ntotal": m["count"] for lvl, m in manifests.items()}},
        check_results=index_checks(settings, version),
    )


def _neighbours(settings: Settings, emb: pa.Table, label_rows: pa.Table) -> bytes | None:
    """The neighbour sheet of the evaluated (labelled) images, thumbnails from the images zone; only the images the
    sheet considers are looked for on disk (the working copy of an object-store root may lack some)."""
    labels = dict(zip(label_rows.column("sop_instance_uid").to_pylist(), label_rows.column("class_label").to_pylist(),
                      strict=True))
    paths = {(r["sop_instance_uid"], r["frame"]): r["path"] for r in
             tables.IMAGES.read(settings, columns=["sop_instance_uid", "frame", "path"]).to_pylist()}
    meta = emb.select(["sop_instance_uid", "frame", "patient_pseudonym"]).to_pylist()
    keep = [i for i, r in enumerate(meta) if r["sop_instance_uid"] in labels and (r["sop_instance_uid"], r["frame"]) in paths]
    if not keep:
        return None
    rows = [meta[i] for i in keep]

    def path_of(i: int) -> Path | None:
        path = Path(settings.images) / paths[(rows[i]["sop_instance_uid"], rows[i]["frame"])]
        return path if path.is_file() else None

    return neighbour_sheet(vectors_of(emb.take(keep)), [labels[r["sop_instance_uid"]] for r in rows],
                           [r["patient_pseudonym"] for r in rows], path_of)


@dg.asset(deps=[faiss_index, labels], group_name="search", kinds={"python", "deltalake"}, check_specs=EVAL_CHECKS,
          automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
          description="Leave-one-out kNN retrieval metrics (no same-patient/series neighbours), image, series and study "
                      "level.")
def retrieval_eval(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    version = embedder_code_version(settings)
    emb = tables.EMBEDDINGS.read(settings, where={"code_version": version})  # this version's rows only, at read time
    series = tables.SERIES_EMBEDDINGS.read(settings, where={"code_version": version})
    label_rows = tables.LABELS.read(settings)
    table = retrieval_rows(emb, series, label_rows, version, context.run_id)
    targets = sorted(set(table.column("target").to_pylist())) or ["class_label"]  # no labels: an empty commit
    written = [tables.EVALUATIONS.write(settings, table.filter(pc.field("target") == target),  # segmentation_eval
                                        match={"run_id": context.run_id, "target": target})  # owns 'segmentation'
               for target in targets][-1]
    overall = [r for r in table.to_pylist() if r["label"] == "overall" and r["level"] == "image"]
    lines = ["| target | metric | value |", "|---|---|---:|"] + [
        f"| {r['target']} | {r['metric']} | {r['value']:.3f} |" for r in overall]
    return dg.MaterializeResult(
        metadata={**md.written(written, rows=table.num_rows), "image_level": dg.MetadataValue.md("\n".join(lines)),
                  "code_version": version, "neighbours": md.md_png(_neighbours(settings, emb, label_rows),
                                                                   "queries and their 5 nearest other-patient images")},
        check_results=eval_checks(settings, context.run.run_id),
    )
