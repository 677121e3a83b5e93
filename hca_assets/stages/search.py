"""The FAISS indexes of one embedding code_version (image, series, study) and their retrieval evaluation, over all
batches: what the ``faiss_index`` and ``retrieval_eval`` assets call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hca_assets._infra.storage import pull, push
from hca_assets.config import Settings
from hca_assets.evaluation.report import retrieval_rows
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.models.base import vectors_of
from hca_assets.search.index import index_builds, index_embeddings, index_studies
from hca_assets.search.sheet import neighbour_sheet

__all__ = ["EvalRun", "IndexRun", "run_index", "run_retrieval_eval"]


@dataclass(frozen=True)
class IndexRun:
    """The indexes built or extended: each level's manifest, and the write of ``index_builds``."""

    manifests: dict[str, dict[str, Any]]
    written: WriteResult


def run_index(settings: Settings, version: str, run_id: str) -> IndexRun:
    """Grow the image and series indexes of ``version`` from the files last published, rebuild its study index
    (the mean of each study's series vectors, or of its image vectors for planar series), publish and record them."""
    manifests: dict[str, dict[str, Any]] = {}
    pull(settings, settings.indexes)
    read = {"image": tables.EMBEDDINGS.read(settings), "series": tables.SERIES_EMBEDDINGS.read(settings)}
    for level, table in read.items():
        if table.num_rows:
            manifests[level] = index_embeddings(table, level, Path(settings.indexes), version)
    if manifests.get("image", {}).get("count"):
        manifests["study"] = index_studies(read["image"], read["series"], Path(settings.indexes), version)
    push(settings, settings.indexes)
    written = tables.INDEX_BUILDS.write(settings, index_builds(manifests, Path(settings.indexes), run_id),
                                        match={"run_id": run_id})
    return IndexRun(manifests, written)


@dataclass(frozen=True)
class EvalRun:
    """One retrieval evaluation: its ``evaluations`` rows, the last write, and the neighbour sheet (PNG or None)."""

    table: pa.Table
    written: WriteResult
    neighbours: bytes | None


def run_retrieval_eval(settings: Settings, version: str, run_id: str) -> EvalRun:
    """Leave-one-out retrieval metrics of ``version``'s vectors against the labels, one commit per target (so this run
    owns its targets' rows only: ``segmentation_eval`` owns 'segmentation'); no labels: an empty commit."""
    emb = tables.EMBEDDINGS.read(settings, where={"code_version": version})  # this version's rows only, at read time
    series = tables.SERIES_EMBEDDINGS.read(settings, where={"code_version": version})
    label_rows = tables.LABELS.read(settings)
    table = retrieval_rows(emb, series, label_rows, version, run_id)
    targets = sorted(set(table.column("target").to_pylist())) or ["class_label"]
    written = [tables.EVALUATIONS.write(settings, table.filter(pc.field("target") == target),
                                        match={"run_id": run_id, "target": target}) for target in targets][-1]
    return EvalRun(table, written, _neighbours(settings, emb, label_rows))


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
