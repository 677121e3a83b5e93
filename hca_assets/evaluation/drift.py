"""Embedding drift and out-of-distribution scores of one batch against a reference window (numpy only, no Dagster).

Drift: the unbiased MMD² between the batch's and the reference's vectors under an RBF kernel whose bandwidth is the
median pairwise squared distance of the *reference* (so every batch compared with one reference is measured on one
scale), a permutation p-value (fixed seed), and a per-dimension mean / variance shift summary. The statistic is
flagged when it exceeds a threshold calibrated on the reference (the largest MMD² of one reference batch against the
others, never below a floor) *and* the p-value is below alpha: slices of one patient are not exchangeable, so a small
p-value alone only says "other patients"; the calibrated effect size says "further than the reference's own batches
are from each other".

OOD: an instance's score is its distance to the k-th nearest reference vector; calibrated by the reference's own
leave-one-group-out k-th neighbour distances (a group is a patient: a slice's neighbours in its own series would make
the reference look far tighter than a new patient can be). The threshold is their ``quantile``; ``ratio`` > 1 is OOD.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MmdResult",
    "OodReference",
    "drift_plot_png",
    "mmd_test",
    "rbf_bandwidth",
    "reference_threshold",
    "reference_window",
    "shift_summary",
]

_CHUNK = 1024


def reference_window(batches: Sequence[str], batch: str, size: int) -> list[str]:
    """The earliest ``size`` batches (batch keys sort by claim time) other than ``batch`` itself."""
    return [b for b in sorted(set(batches))[:size] if b != batch]


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def rbf_bandwidth(reference: np.ndarray, *, max_samples: int = 1000, seed: int = 0) -> float:
    """The median heuristic: median pairwise squared distance of (a sample of) the reference; 1.0 if all coincide."""
    x = _sample(reference.astype(np.float64), max_samples, seed)
    d = _sq_distances(x, x)[np.triu_indices(len(x), k=1)]
    median = float(np.median(d)) if d.size else 0.0
    return median if median > 0 else 1.0


def _sample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(x) <= n:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))]


def _mmd2(kernel: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each row of ``members`` (booleans: True = first sample) over the pooled ``kernel``."""
    k0 = kernel - np.diag(np.diag(kernel))
    s = members.astype(np.float64)
    t = 1.0 - s
    n, m = s.sum(1), t.sum(1)
    ks, kt = s @ k0, t @ k0
    xx, yy, xy = (ks * s).sum(1), (kt * t).sum(1), (ks * t).sum(1)
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (n * m)


@dataclass(frozen=True)
class MmdResult:
    statistic: float  # unbiased MMD²
    p_value: float
    bandwidth: float


def mmd_test(reference: np.ndarray, batch: np.ndarray, *, bandwidth: float, permutations: int = 200, seed: int = 0,
             max_samples: int = 1000) -> MmdResult:
    """MMD² of ``batch`` vs ``reference`` (each sampled to ≤ ``max_samples``) with a permutation p-value."""
    x = _sample(reference.astype(np.float64), max_samples, seed)
    y = _sample(batch.astype(np.float64), max_samples, seed + 1)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"MMD needs at least 2 vectors on each side, got {len(x)} and {len(y)}")
    pooled = np.concatenate([x, y])
    kernel = np.exp(-_sq_distances(pooled, pooled) / bandwidth)
    observed = np.zeros((1, len(pooled)), dtype=bool)
    observed[0, : len(x)] = True
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(observed[0]) for _ in range(permutations)]) if permutations else observed[:0]
    statistic = float(_mmd2(kernel, observed)[0])
    null = _mmd2(kernel, shuffled) if permutations else np.zeros(0)
    return MmdResult(statistic, float((1 + (null >= statistic).sum()) / (1 + len(null))), bandwidth)


def reference_threshold(groups: Sequence[np.ndarray], *, bandwidth: float, floor: float, seed: int = 0,
                        max_samples: int = 1000) -> float:
    """The largest MMD² of one reference batch against the other reference batches (``floor`` at least; the floor
    alone when the window has fewer than two batches)."""
    usable = [g for g in groups if len(g) >= 2]
    if len(usable) < 2:
        return floor
    spread = [mmd_test(np.concatenate(usable[:i] + usable[i + 1:]), g, bandwidth=bandwidth, permutations=0, seed=seed,
                       max_samples=max_samples).statistic for i, g in enumerate(usable)]
    return max(floor, *spread)


def shift_summary(reference: np.ndarray, batch: np.ndarray, *, z: float = 3.0) -> dict[str, float | int]:
    """Per-dimension shift of ``batch`` from ``reference``: standardised mean shift |Δμ|/σ_ref (mean, max, dimensions
    beyond ``z``) and the largest |log variance ratio|."""
    mu_r, mu_b = reference.mean(0), batch.mean(0)
    var_r, var_b = reference.var(0), batch.var(0)
    eps = 1e-3 * float(var_r.mean()) + 1e-12  # a constant reference dimension does not divide by zero
    shift = np.abs(mu_b - mu_r) / np.sqrt(var_r + eps)
    log_ratio = np.abs(np.log((var_b + eps) / (var_r + eps)))
    return {"mean_shift": float(shift.mean()), "max_mean_shift": float(shift.max()),
            "shifted_dims": int((shift > z).sum()), "max_log_var_ratio": float(log_ratio.max())}


def _kth_distances(queries: np.ndarray, reference: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Distance from each query to its k-th nearest reference vector, ignoring pairs where ``exclude`` is True."""
    out = np.empty(len(queries))
    for start in range(0, len(queries), _CHUNK):
        d = _sq_distances(queries[start:start + _CHUNK], reference)
        if exclude is not None:
            d[exclude[start:start + _CHUNK]] = np.inf
        out[start:start + _CHUNK] = np.sqrt(np.partition(d, k - 1, axis=1)[:, k - 1])
    return out


@dataclass(frozen=True)
class OodReference:
    """Reference vectors and their leave-one-group-out k-th neighbour distances (sorted): the OOD calibration."""

    vectors: np.ndarray
    calibration: np.ndarray
    k: int
    threshold: float

    @classmethod
    def fit(cls, vectors: np.ndarray, groups: Sequence[str], *, k: int = 5, quantile: float = 0.99,
            max_samples: int = 2000, seed: int = 0) -> OodReference:
        """Calibrate on ``vectors`` (≤ ``max_samples`` kept); neighbours in a vector's own group do not count."""
        keep = _sample(np.arange(len(vectors)), max_samples, seed)
        x = vectors[keep].astype(np.float64)
        g = np.asarray(groups, dtype=object)[keep]
        same = g[:, None] == g[None, :]
        if (~same).sum(1).min(initial=len(x)) < k:  # too few other groups: leave out only the vector itself
            same = np.eye(len(x), dtype=bool)
        k = min(k, len(x) - 1)
        if k < 1:
            raise ValueError(f"OOD calibration needs at least 2 reference vectors, got {len(x)}")
        calibration = np.sort(_kth_distances(x, x, k, same))
        threshold = float(np.quantile(calibration, quantile))
        return cls(x, calibration, k, threshold if threshold > 0 else float(np.finfo(float).eps))

    def score(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k-th neighbour distance, distance / threshold, percentile among the calibration distances) per vector."""
        kth = _kth_distances(vectors.astype(np.float64), self.vectors, self.k)
        percentile = np.searchsorted(self.calibration, kth, side="right") / len(self.calibration)
        return kth, kth / self.threshold, percentile


def drift_plot_png(points: Sequence[tuple[str, float | None, float | None]], *, height: int = 300) -> bytes | None:
    """A bar per batch (MMD², red when above its threshold) with its threshold as a tick, labelled by the end of
    the batch key; None without points."""
    from PIL import Image, ImageDraw

    points = [(b, s, t) for b, s, t in points if s is not None]
    if not points:
        return None
    width = max(640, 70 * len(points) + 60)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, bottom, top = 50, height - 40, 20
    top_value = max(max(s, 0.0, t or 0.0) for _, s, t in points) * 1.1 or 1.0
    y = lambda v: bottom - (bottom - top) * max(v, 0.0) / top_value  # noqa: E731 - a local scale
    slot = (width - left - 10) / len(points)
    draw.line([(left, top), (left, bottom), (width - 10, bottom)], fill="black")
    for frac in (0.0, 0.5, 1.0):
        draw.text((4, y(top_value * frac) - 6), f"{top_value * frac:.3f}", fill="black")
    for i, (batch, statistic, threshold) in enumerate(points):
        x0 = left + i * slot + slot * 0.2
        x1 = left + (i + 1) * slot - slot * 0.2
        flagged = threshold is not None and statistic > threshold
        draw.rectangle([x0, y(statistic), x1, bottom], fill="#d62728" if flagged else "#1f77b4")
        if threshold is not None:
            draw.line([(x0 - slot * 0.15, y(threshold)), (x1 + slot * 0.15, y(threshold))], fill="#ff7f0e", width=3)
        draw.text((x0, bottom + 4), batch[-8:], fill="black")
    draw.text((left + 6, 2), "MMD^2 per batch (bars, red above its threshold) vs threshold (orange)", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
