"""Embed one batch of rendered images, and aggregate slice embeddings per 3D series (3D-MIR style);
:func:`run_embeddings` is the stage the ``embeddings`` asset calls."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from hca_assets._infra.parallel import Progress
from hca_assets._infra.storage import pull
from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.lake.schemas import EMBEDDINGS, SERIES_EMBEDDINGS
from hca_assets.models.base import Embedder, l2_normalise, vectors_of

__all__ = ["AGGREGATIONS", "EmbeddingsRun", "aggregate_series", "embed_images", "embeddable", "run_embeddings"]

AGGREGATIONS = ("mean", "max", "median", "std")


def embeddable(image_rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The ``images`` rows that get a vector: every one but the constant images."""
    return [r for r in image_rows if not r["constant"]]


def embed_images(
    image_rows: list[dict[str, object]], images_root: Path, embedder: Embedder, code_version: str, *,
    batch_size: int = 32, progress: Progress | None = None,
) -> pa.Table:
    """One embedding row per rendered image (``images`` table rows) that shows something: a constant image (its
    stored values are, the renderer guarantees it) has nothing to embed and stays out of the vectors and index."""
    image_rows = embeddable(image_rows)
    out: list[dict[str, object]] = []
    keep = ("batch", "sop_instance_uid", "frame", "series_instance_uid", "study_instance_uid", "patient_pseudonym", "modality")
    for start in range(0, len(image_rows), batch_size):
        chunk = image_rows[start:start + batch_size]
        vectors = embedder.embed([np.asarray(Image.open(images_root / str(r["path"]))) for r in chunk])
        out.extend({**{k: r[k] for k in keep}, "vector": v.tolist(), "code_version": code_version}
                   for r, v in zip(chunk, vectors, strict=True))
        if progress:
            progress(min(start + batch_size, len(image_rows)), len(image_rows))
    return pa.Table.from_pylist(out, schema=EMBEDDINGS)


def _aggregate(vectors: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        return vectors.mean(axis=0)
    if how == "max":
        return vectors.max(axis=0)
    if how == "median":
        return np.median(vectors, axis=0)
    if how == "std":
        return vectors.std(axis=0)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")


def aggregate_series(
    embeddings: pa.Table, volume_series: set[str], aggregations: Sequence[str] = AGGREGATIONS
) -> pa.Table:
    """Series vectors (L2-normalised) from the slice embeddings of each 3D series in ``volume_series``."""
    groups: dict[str, list[int]] = defaultdict(list)
    series_col = embeddings.column("series_instance_uid").to_pylist()
    for i, s in enumerate(series_col):
        if s in volume_series:
            groups[s].append(i)
    vectors = vectors_of(embeddings)
    rows = embeddings.select(["batch", "study_instance_uid", "patient_pseudonym", "modality", "code_version"]).to_pylist()
    out = []
    for series, idx in sorted(groups.items()):
        for how in aggregations:
            vector = l2_normalise(_aggregate(vectors[idx], how)[np.newaxis])[0]
            out.append({**rows[idx[0]], "series_instance_uid": series, "aggregation": how, "slices": len(idx),
                        "vector": vector.tolist()})
    return pa.Table.from_pylist(out, schema=SERIES_EMBEDDINGS)


@dataclass(frozen=True)
class EmbeddingsRun:
    """One batch embedded: image and series vectors, how many images should have one, the seconds, the write."""

    images: pa.Table
    series: pa.Table
    expected: int
    seconds: float
    written: WriteResult


def run_embeddings(settings: Settings, batch: str, embedder: Embedder, version: str,
                   progress: Progress | None = None) -> EmbeddingsRun:
    """Embed the rendered images of ``batch`` with ``embedder`` as code_version ``version``, and aggregate its 3D
    series; only this version's slice of ``embeddings`` / ``series_embeddings`` is replaced (others stay queryable)."""
    rows = tables.IMAGES.read(settings, where={"batch": batch}).to_pylist()
    start = time.perf_counter()
    pull(settings, Path(settings.images) / batch)
    table = embed_images(rows, Path(settings.images), embedder, version, progress=progress)
    seconds = time.perf_counter() - start
    volumes = set(tables.VOLUMES.read(settings, where={"batch": batch}, columns=["series_instance_uid"])
                  .column("series_instance_uid").to_pylist())
    series = aggregate_series(table, volumes)
    own = {"batch": batch, "code_version": version}
    written = tables.EMBEDDINGS.write(settings, table, match=own)
    tables.SERIES_EMBEDDINGS.write(settings, series, match=own)
    return EmbeddingsRun(table, series, len(embeddable(rows)), seconds, written)
