"""Study vectors: the L2-normalised mean of a study's series vectors (3D-MIR's volume-to-study aggregation).

A series' vector is its ``mean`` row of ``series_embeddings`` (3D series), or else the L2-normalised mean of its
image vectors (planar series: radiographs, ultrasound); every series weighs the same, whatever its slice count.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hca_assets.models.base import l2_normalise, vectors_of

__all__ = ["STUDY_KEYS", "study_vectors"]

STUDY_KEYS = pa.schema([
    pa.field("study_instance_uid", pa.string(), nullable=False),
    pa.field("patient_pseudonym", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),  # the study's modalities, sorted, joined by '/'
    pa.field("series", pa.int32(), nullable=False),  # series aggregated
    pa.field("images", pa.int32(), nullable=False),  # image rows (frames) behind them
    pa.field("code_version", pa.string(), nullable=False),
])


def study_vectors(embeddings: pa.Table, series_embeddings: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """(one key row per study, float32 unit vectors) from one code_version's image and series embeddings."""
    versions = set(embeddings.column("code_version").to_pylist()) | set(series_embeddings.column("code_version").to_pylist())
    if len(versions) > 1:
        raise ValueError("study vectors aggregate one code_version at a time")
    means = series_embeddings.filter(pc.equal(series_embeddings.column("aggregation"), "mean"))
    volume_vectors = dict(zip(means.column("series_instance_uid").to_pylist(), vectors_of(means), strict=True))
    image_vectors = vectors_of(embeddings)
    rows = embeddings.select(["series_instance_uid", "study_instance_uid", "patient_pseudonym", "modality"]).to_pylist()
    by_series: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_series[r["series_instance_uid"]].append(i)
    members: dict[str, list[np.ndarray]] = defaultdict(list)
    patient: dict[str, str] = {}
    modalities: dict[str, set[str]] = defaultdict(set)
    images: Counter[str] = Counter()
    for series, idx in sorted(by_series.items()):
        first = rows[idx[0]]
        study = first["study_instance_uid"]
        vector = volume_vectors.get(series)
        members[study].append(vector if vector is not None else l2_normalise(image_vectors[idx].mean(axis=0, keepdims=True))[0])
        patient[study] = first["patient_pseudonym"]
        modalities[study].add(first["modality"])
        images[study] += len(idx)
    order = sorted(members)
    keys = [{"study_instance_uid": s, "patient_pseudonym": patient[s], "modality": "/".join(sorted(modalities[s])),
             "series": len(members[s]), "images": images[s], "code_version": next(iter(versions))} for s in order]
    dim = image_vectors.shape[1] if image_vectors.size else 0
    vectors = l2_normalise(np.stack([np.mean(members[s], axis=0) for s in order])) if order else np.zeros((0, dim), np.float32)
    return pa.Table.from_pylist(keys, schema=STUDY_KEYS), vectors
