"""Leave-one-out kNN retrieval metrics without leakage: a query never retrieves its own patient or series.

P@k, mean average precision, top-1 and top-5 majority-vote accuracy, per class and overall, as in the
MedImageInsight / 3D-MIR evaluations (same metrics, our data).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

__all__ = ["KS", "RetrievalMetrics", "evaluate_retrieval"]

KS = (1, 3, 5, 10)


@dataclass(frozen=True)
class RetrievalMetrics:
    """metric name → value, overall and per class; ``n`` queries per class."""

    overall: dict[str, float]
    per_class: dict[str, dict[str, float]]
    n: dict[str, int]


def evaluate_retrieval(
    vectors: np.ndarray, labels: list[str], patients: list[str], series: list[str], *, block: int = 2048
) -> RetrievalMetrics:
    """Exact inner-product kNN over L2-normalised ``vectors``; items of the query's patient or series are
    excluded from its ranking. Queries whose class has no other-patient member are skipped."""
    n = len(labels)
    if not (len(vectors) == n == len(patients) == len(series)):
        raise ValueError("vectors, labels, patients and series must have the same length")
    lab = np.asarray(labels)
    pat = np.asarray(patients)
    ser = np.asarray(series)
    rows: dict[str, list[dict[str, float]]] = {}
    for start in range(0, n, block):
        sims = vectors[start:start + block] @ vectors.T
        for qi, row in enumerate(sims, start):
            allowed = (pat != pat[qi]) & (ser != ser[qi])
            relevant = allowed & (lab == lab[qi])
            n_rel = int(relevant.sum())
            if n_rel == 0:
                continue
            order = np.argsort(-np.where(allowed, row, -np.inf), kind="stable")[: int(allowed.sum())]
            hits = relevant[order]
            m = {f"P@{k}": float(hits[:k].mean()) for k in KS}
            precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
            m["mAP"] = float(precision_at_hit.mean()) if n_rel else 0.0
            m["top1_accuracy"] = float(lab[order[0]] == lab[qi])
            vote = Counter(lab[order[:5]]).most_common()
            m["top5_majority_accuracy"] = float(vote[0][0] == lab[qi] and (len(vote) == 1 or vote[0][1] > vote[1][1]))
            rows.setdefault(str(lab[qi]), []).append(m)
    per_class = {c: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for c, rs in sorted(rows.items())}
    every = [r for rs in rows.values() for r in rs]
    overall = {k: float(np.mean([r[k] for r in every])) for k in every[0]} if every else {}
    return RetrievalMetrics(overall, per_class, {c: len(rs) for c, rs in rows.items()})
