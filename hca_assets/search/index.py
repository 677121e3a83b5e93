"""Exact FAISS indexes (inner product on L2-normalised vectors) with stable 64-bit ids and a manifest.

Files per (embedding code_version, level) under ``indexes/<backend>/<version>/``: ``<level>.faiss``,
``<level>_ids.parquet`` (id → keys) and ``<level>_manifest.json`` (count, dim, type, sha256).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hca_assets._infra.files import atomic_write

__all__ = ["LEVELS", "IndexFiles", "build_or_extend", "index_builds", "index_studies", "load_index", "search", "self_recall",
           "stable_id"]

LEVELS = ("image", "series", "study")  # what an index is built over: images (frames), 3D series, studies


def stable_id(*keys: str) -> int:
    """A positive int64 id that depends only on the keys (the same across rebuilds)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(keys).encode()).digest()[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class IndexFiles:
    root: Path
    level: str

    @classmethod
    def for_version(cls, indexes_root: Path, code_version: str, level: str) -> IndexFiles:
        backend, _, version = code_version.partition("@")
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", version or "default")
        return cls(indexes_root / backend / safe, level)

    @property
    def index(self) -> Path:
        return self.root / f"{self.level}.faiss"

    @property
    def ids(self) -> Path:
        return self.root / f"{self.level}_ids.parquet"

    @property
    def manifest(self) -> Path:
        return self.root / f"{self.level}_manifest.json"


EXACT_LIMIT = 100_000  # above this, an IVF index is tried and kept only if its recall@10 holds
MIN_RECALL = 0.95


def exact_index(vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    return index


def recall_at_10(candidate: faiss.Index, exact: faiss.Index, queries: np.ndarray) -> float:
    """Mean overlap of the candidate's top 10 with the exact top 10."""
    _, truth = exact.search(queries, 10)
    _, found = candidate.search(queries, 10)
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)]))


def ivf_index(vectors: np.ndarray, ids: np.ndarray, *, seed: int = 0, train_size: int = 50_000,
              held_out: int = 200) -> tuple[faiss.Index, dict[str, object]]:
    """An IVF-Flat index whose ``nprobe`` is raised until recall@10 against exact search on held-out
    queries reaches ``MIN_RECALL``; returns the index and its acceptance facts (``accepted`` False if never)."""
    n, dim = vectors.shape
    nlist = int(min(2048, max(16, 4 * np.sqrt(n))))
    rng = np.random.default_rng(seed)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10  # k-means iterations: recall is then tested, not assumed
    index.train(vectors[rng.choice(n, size=min(n, max(train_size, 40 * nlist)), replace=False)])
    index.add_with_ids(vectors, ids)
    queries = vectors[rng.choice(n, size=min(held_out, n), replace=False)]
    exact = exact_index(vectors, ids)
    recall, nprobe = 0.0, 4
    while nprobe <= nlist:
        index.nprobe = nprobe
        recall = recall_at_10(index, exact, queries)
        if recall >= MIN_RECALL:
            break
        nprobe *= 2
    return index, {"nlist": nlist, "nprobe": int(index.nprobe), "recall_at_10": recall, "accepted": recall >= MIN_RECALL}


def build_or_extend(files: IndexFiles, vectors: np.ndarray, keys: pa.Table, code_version: str, *,
                    incremental: bool = True) -> dict[str, object]:
    """Make the index hold exactly ``vectors`` (rows keyed by ``keys``, whose column ``id`` is int64).

    When ``incremental`` and an index of this version exists and holds a subset of the ids, only the new rows are
    added (incremental growth: an existing id's vector must not have changed); otherwise it is rebuilt: exact up to ``EXACT_LIMIT`` rows, beyond that IVF if it
    passes the recall@10 ≥ 0.95 test against exact search, else exact. Returns the manifest.
    """
    ids = keys.column("id").to_numpy()
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("duplicate ids: every embedding row must have its own key")
    files.root.mkdir(parents=True, exist_ok=True)
    index, mode = None, "built"
    if incremental and files.index.exists() and files.ids.exists():
        existing = set(pq.read_table(files.ids).column("id").to_pylist())
        if existing <= set(ids.tolist()) and json.loads(files.manifest.read_text()).get("code_version") == code_version:
            index = faiss.read_index(str(files.index))
            new = np.array([i not in existing for i in ids.tolist()], dtype=bool)
            if new.any():
                index.add_with_ids(vectors[new], ids[new])
            mode = f"extended by {int(new.sum())}"
    approximate: dict[str, object] = {}
    if index is None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) > EXACT_LIMIT:
            candidate, approximate = ivf_index(vectors, ids)
            index = candidate if approximate["accepted"] else None
        if index is None:
            index = exact_index(vectors, ids)
    elif files.manifest.exists():
        approximate = json.loads(files.manifest.read_text()).get("approximate", {})
    atomic_write(files.index, lambda p: faiss.write_index(index, str(p)))
    atomic_write(files.ids, lambda p: pq.write_table(keys, p))
    kind = "IndexIVFFlat" if isinstance(faiss.downcast_index(index), faiss.IndexIVFFlat) else "IndexIDMap2(IndexFlatIP)"
    manifest = {
        "level": files.level, "code_version": code_version, "count": int(index.ntotal), "dim": int(index.d),
        "type": kind, "metric": "inner_product", "mode": mode, "approximate": approximate,
        "sha256": hashlib.sha256(files.index.read_bytes()).hexdigest(),
    }
    atomic_write(files.manifest, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    return manifest


def keyed_vectors(table: pa.Table, level: str, code_version: str) -> tuple[pa.Table, np.ndarray]:
    """Rows of an ``embeddings`` (image) or ``series_embeddings`` (series: mean aggregation) table for one
    code_version, as (keys with a stable ``id`` column, float32 vectors)."""
    import pyarrow.compute as pc

    from hca_assets.models.base import of_version, vectors_of

    table = of_version(table, code_version)
    if level == "series":
        table = table.filter(pc.equal(table.column("aggregation"), "mean"))
    keys = table.drop(["vector"])
    if level == "image":
        parts = zip(keys.column("sop_instance_uid").to_pylist(), keys.column("frame").to_pylist(), strict=True)
    else:
        parts = zip(keys.column("series_instance_uid").to_pylist(), keys.column("aggregation").to_pylist(), strict=True)
    ids = pa.array([stable_id(level, str(a), str(b)) for a, b in parts], pa.int64())
    return keys.append_column("id", ids), vectors_of(table)


def index_embeddings(table: pa.Table, level: str, indexes_root: Path, code_version: str) -> dict[str, object]:
    """Index one code_version's rows of an embeddings table (see :func:`keyed_vectors`); returns the manifest."""
    keys, vectors = keyed_vectors(table, level, code_version)
    return build_or_extend(IndexFiles.for_version(indexes_root, code_version, level), vectors, keys, code_version)


def index_studies(embeddings: pa.Table, series_embeddings: pa.Table, indexes_root: Path,
                  code_version: str) -> dict[str, object]:
    """Index one code_version's study vectors (:func:`~hca_assets.models.study_vectors.study_vectors`); returns the manifest.
    Always rebuilt: a study's vector changes when a later batch brings it another series (studies are few)."""
    from hca_assets.models.base import of_version
    from hca_assets.models.study_vectors import study_vectors

    keys, vectors = study_vectors(of_version(embeddings, code_version), of_version(series_embeddings, code_version))
    ids = pa.array([stable_id("study", s) for s in keys.column("study_instance_uid").to_pylist()], pa.int64())
    return build_or_extend(IndexFiles.for_version(indexes_root, code_version, "study"), vectors,
                           keys.append_column("id", ids), code_version, incremental=False)


def index_builds(manifests: dict[str, dict[str, object]], indexes_root: Path, run_id: str) -> pa.Table:
    """Rows of the ``index_builds`` table for the indexes one run built or extended (manifests by level)."""
    from datetime import UTC, datetime

    from hca_assets.lake.schemas import INDEX_BUILDS

    now = datetime.now(UTC)
    rows = []
    for level, m in manifests.items():
        files = IndexFiles.for_version(indexes_root, str(m["code_version"]), level)
        approximate = m.get("approximate") or {}
        assert isinstance(approximate, dict)
        rows.append({"run_id": run_id, "level": level, "code_version": m["code_version"], "index_type": m["type"],
                     "mode": m["mode"], "ntotal": m["count"], "dim": m["dim"],
                     "recall_at_10": approximate.get("recall_at_10"),
                     "path": files.index.relative_to(indexes_root).as_posix(), "sha256": m["sha256"], "built_at": now})
    return pa.Table.from_pylist(rows, schema=INDEX_BUILDS)


def load_index(files: IndexFiles) -> tuple[faiss.Index, pa.Table, dict[str, object]]:
    """The index, its id table and manifest; refuses a file whose checksum does not match the manifest."""
    manifest = json.loads(files.manifest.read_text())
    if hashlib.sha256(files.index.read_bytes()).hexdigest() != manifest["sha256"]:
        raise ValueError(f"{files.index} does not match its manifest checksum")
    return faiss.read_index(str(files.index)), pq.read_table(files.ids), manifest


def search(index: faiss.Index, queries: np.ndarray, k: int,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids) of the k nearest neighbours of each query; with ``allowed`` (int64 ids), among those only.

    The filter runs inside FAISS (an ``IDSelectorBatch``): an exact index scores only allowed rows; an IVF index
    probes ``nprobe / kept fraction`` lists (as many allowed candidates as an unfiltered search sees), and every
    list for a query that still finds fewer than ``min(k, allowed)`` neighbours. Missing neighbours are id -1.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if allowed is None:
        return index.search(queries, k)
    allowed = np.ascontiguousarray(allowed, dtype=np.int64)
    selector = faiss.IDSelectorBatch(len(allowed), faiss.swig_ptr(allowed))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return index.search(queries, k, params=faiss.SearchParameters(sel=selector))
    fraction = max(len(allowed), 1) / max(index.ntotal, 1)
    nprobe = min(ivf.nlist, int(np.ceil(ivf.nprobe / fraction)))
    sims, found = index.search(queries, k, params=faiss.SearchParametersIVF(sel=selector, nprobe=nprobe))
    short = (found >= 0).sum(axis=1) < min(k, len(allowed))
    if short.any() and nprobe < ivf.nlist:
        params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nlist)
        sims[short], found[short] = index.search(queries[short], k, params=params)
    return sims, found


def self_recall(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, sample: int = 500, seed: int = 0) -> float:
    """Fraction of sampled rows whose nearest neighbour (or an exact duplicate of it) is themselves."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    sims, found = search(index, vectors[pick], 1)
    hits = (found[:, 0] == ids[pick]) | np.isclose(sims[:, 0], np.einsum("ij,ij->i", vectors[pick], vectors[pick]))
    return float(hits.mean())
