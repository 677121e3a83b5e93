"""Exact FAISS indexes (inner product on L2-normalised vectors) with stable 64-bit ids and a manifest.

Files per (embedding code_version, level) under ``indexes/<backend>/<version>/``: ``<level>.faiss``,
``<level>_ids.parquet`` (id → keys) and ``<level>_manifest.json`` (count, dim, type, sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["IndexFiles", "build_or_extend", "load_index", "search", "self_recall", "stable_id"]


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


def _atomic(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def build_or_extend(files: IndexFiles, vectors: np.ndarray, keys: pa.Table, code_version: str) -> dict[str, object]:
    """Make the index hold exactly ``vectors`` (rows keyed by ``keys``, whose column ``id`` is int64).

    When an index of this version exists and holds a subset of the ids, only the new rows are added
    (incremental growth); otherwise it is rebuilt. Returns the manifest.
    """
    ids = keys.column("id").to_numpy()
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("duplicate ids: every embedding row must have its own key")
    files.root.mkdir(parents=True, exist_ok=True)
    index, mode = None, "built"
    if files.index.exists() and files.ids.exists():
        existing = set(pq.read_table(files.ids).column("id").to_pylist())
        if existing <= set(ids.tolist()) and json.loads(files.manifest.read_text()).get("code_version") == code_version:
            index = faiss.read_index(str(files.index))
            new = np.array([i not in existing for i in ids.tolist()], dtype=bool)
            if new.any():
                index.add_with_ids(vectors[new], ids[new])
            mode = f"extended by {int(new.sum())}"
    if index is None:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    _atomic(files.index, lambda p: faiss.write_index(index, str(p)))
    _atomic(files.ids, lambda p: pq.write_table(keys, p))
    manifest = {
        "level": files.level, "code_version": code_version, "count": int(index.ntotal), "dim": int(index.d),
        "type": "IndexIDMap2(IndexFlatIP)", "metric": "inner_product", "mode": mode,
        "sha256": hashlib.sha256(files.index.read_bytes()).hexdigest(),
    }
    _atomic(files.manifest, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    return manifest


def index_embeddings(table: pa.Table, level: str, indexes_root: Path, code_version: str) -> dict[str, object]:
    """Index the rows of an ``embeddings`` (level image) or ``series_embeddings`` (level series, mean
    aggregation) table that belong to ``code_version``; returns the manifest."""
    import pyarrow.compute as pc

    table = table.filter(pc.equal(table.column("code_version"), code_version))
    if level == "series":
        table = table.filter(pc.equal(table.column("aggregation"), "mean"))
    keys = table.drop(["vector"])
    if level == "image":
        parts = zip(keys.column("sop_instance_uid").to_pylist(), keys.column("frame").to_pylist(), strict=True)
    else:
        parts = zip(keys.column("series_instance_uid").to_pylist(), keys.column("aggregation").to_pylist(), strict=True)
    ids = pa.array([stable_id(level, str(a), str(b)) for a, b in parts], pa.int64())
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    return build_or_extend(IndexFiles.for_version(indexes_root, code_version, level), vectors,
                           keys.append_column("id", ids), code_version)


def load_index(files: IndexFiles) -> tuple[faiss.Index, pa.Table, dict[str, object]]:
    """The index, its id table and manifest; refuses a file whose checksum does not match the manifest."""
    manifest = json.loads(files.manifest.read_text())
    if hashlib.sha256(files.index.read_bytes()).hexdigest() != manifest["sha256"]:
        raise ValueError(f"{files.index} does not match its manifest checksum")
    return faiss.read_index(str(files.index)), pq.read_table(files.ids), manifest


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids) of the k nearest neighbours of each query."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def self_recall(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, sample: int = 500, seed: int = 0) -> float:
    """Fraction of sampled rows whose nearest neighbour (or an exact duplicate of it) is themselves."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    sims, found = search(index, vectors[pick], 1)
    hits = (found[:, 0] == ids[pick]) | np.isclose(sims[:, 0], np.einsum("ij,ij->i", vectors[pick], vectors[pick]))
    return float(hits.mean())
