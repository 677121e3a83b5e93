"""`python -m benchmarks.run filtered_search`: search among the 1 % of 1M vectors a metadata condition keeps (issue 14
item 3): FAISS with an IDSelector (the code `hca search --where` runs) against unfiltered search and post-filtering."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import faiss
import numpy as np
import pyarrow as pa

from hca_assets.config import Settings
from hca_assets.lake.warehouse import select_ids
from hca_assets.models import LocalEmbedder
from hca_assets.search.index import exact_index, ivf_index, search

K = 5
POST = 100  # post-filtering fetches K·POST neighbours, then keeps the allowed ones


def _percentiles(run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], queries: np.ndarray,
                 ) -> tuple[float, float, list[np.ndarray]]:
    """p50 and p95 in ms of single queries, and each query's found ids."""
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = run(q[np.newaxis])
        times.append((time.perf_counter() - start) * 1000)
        found.append(ids[0])
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), found


def _quality(found: list[np.ndarray], truth: list[set[int]]) -> tuple[float, float]:
    """(mean neighbours returned of K, recall@K against the exact filtered top K)."""
    returned = [int((f >= 0).sum()) for f in found]
    recall = [len(set(f[f >= 0].tolist()) & t) / K for f, t in zip(found, truth, strict=True)]
    return float(np.mean(returned)), float(np.mean(recall))


def bench_filtered_search(n: int = 1_000_000, keep: float = 0.01, queries: int = 50) -> list[str]:
    """Filtered vs unfiltered vs post-filtered single queries on exact and IVF indexes, one thread."""
    from benchmarks.timing import clustered_vectors

    dim = LocalEmbedder.dim
    rng = np.random.default_rng(0)
    v = clustered_vectors(n, dim, rng.normal(size=(1000, dim)).astype(np.float32), rng)
    ids = np.unique(rng.integers(1, 2**62, size=n + 1000, dtype=np.int64))[:n]  # hashed ids, as stable_id makes them
    rng.shuffle(ids)
    modality = np.where(rng.random(n) < keep, "CT", "MR")  # the condition keeps a random 1 %, across clusters
    candidates = pa.table({"id": ids, "modality": modality})
    with tempfile.TemporaryDirectory() as root:
        settings = Settings(data_dir=root)
        select = []
        for _ in range(5):
            start = time.perf_counter()
            allowed = select_ids(settings, candidates, "modality = 'CT'")
            select.append((time.perf_counter() - start) * 1000)
    mask = np.isin(ids, allowed)
    q = v[rng.choice(n, size=queries, replace=False)] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sub, sub_ids = v[mask], ids[mask]
    truth = [set(sub_ids[np.argsort(-(sub @ x))[:K]].tolist()) for x in q]
    allowed_set = set(allowed.tolist())

    def post(index: faiss.Index) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sims, found = search(index, x, K * POST)
            keep_rows = [j for j, i in enumerate(found[0]) if int(i) in allowed_set][:K]
            out = np.full((1, K), -1, np.int64)
            out[0, :len(keep_rows)] = found[0][keep_rows]
            return sims, out
        return run

    faiss.omp_set_num_threads(2)  # building may use both cores; queries are timed on one
    start = time.perf_counter()
    ivf, facts = ivf_index(v, ids)
    ivf_build = time.perf_counter() - start
    exact = exact_index(v, ids)
    faiss.omp_set_num_threads(1)
    lines = [f"{n:,} random-but-clustered {dim}-d vectors (the local embedder's dimension, 1000 clusters) with hashed "
             f"int64 ids; the condition `modality = 'CT'` keeps {len(allowed):,} ({len(allowed) / n:.1%}), spread across "
             f"clusters. Single queries on one thread, k = {K}, {queries} queries; recall@{K} against exact search among "
             f"the kept vectors.", "",
             "| index | search | p50 ms | p95 ms | neighbours returned (of 5) | recall@5 |", "|---|---|---:|---:|---:|---:|"]
    for name, index in (("exact (IndexFlatIP)", exact),
                        (f"IVF-Flat nlist {facts['nlist']} nprobe {facts['nprobe']} (built in {ivf_build:.0f} s)", ivf)):
        runs = [(f"unfiltered (all {n:,})", lambda x, i=index: search(i, x, K)),
                ("**filtered: IDSelectorBatch** (`search(…, allowed)`)", lambda x, i=index: search(i, x, K, allowed)),
                (f"post-filter: top {K * POST}, then keep the allowed", post(index))]
        for label, run in runs:
            p50, p95, found = _percentiles(run, q)
            returned, recall = _quality(found, truth)
            shown = "–" if label.startswith("unfiltered") else f"{returned:.2f}"
            recall_text = "–" if label.startswith("unfiltered") else f"{recall:.3f}"
            lines.append(f"| {name} | {label} | {p50:.2f} | {p95:.2f} | {shown} | {recall_text} |")
    faiss.omp_set_num_threads(2)
    best = min(float(line.split("|")[3]) for line in lines if "IDSelectorBatch" in line)
    chosen = float(next(line for line in lines if "IDSelectorBatch" in line and "IVF" in line).split("|")[3])
    selected = float(np.percentile(select, 50))
    lines += ["", f"Selecting the ids (`select_ids`: the condition as one expression in the lake's DuckDB sandbox over the "
                  f"{n:,}-row id table, connection and lock included): p50 {selected:.0f} ms of 5 runs.",
              "", f"Goal: filtered search ≤ 20 ms p50 at 1 % of 1M — **{'met' if best <= 20 else 'not met'}** by the "
                  f"FAISS search (best filtered p50 {best:.2f} ms; the IVF index, which `faiss_index` keeps at this size when "
                  f"its recall holds: {chosen:.2f} ms). With the DuckDB id selection in front, one filtered query costs "
                  f"≈ {selected + chosen:.0f} ms: the selection, not FAISS, dominates. Post-filtering is as fast as unfiltered "
                  f"search but returns fewer than {K} neighbours for some queries (1 % kept: ~{K * POST // 100} expected "
                  f"in the top {K * POST}). Load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end "
                  "of the part (other processes).", ""]
    return ["## Filtered search (issue 14 item 3: `hca search --where`)", "", *lines]
