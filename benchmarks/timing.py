"""What every benchmark part shares: repeats, best-of timing and a clustered synthetic vector corpus."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["REPEATS", "best_of", "clustered_vectors"]

REPEATS = 3


def best_of(fn: Callable[[], object]) -> float:
    """The fastest of ``REPEATS`` wall-clock runs of ``fn`` (damps noise from other work on the machine)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def clustered_vectors(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors scattered around ``centres`` (a corpus with neighbourhoods, like real embeddings)."""
    v = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        chunk = centres[rng.integers(len(centres), size=m)] + 0.5 * rng.normal(size=(m, dim)).astype(np.float32)
        v[start:start + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return v
