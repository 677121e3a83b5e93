"""Ordered map over worker processes with a progress callback (used by ingest and de-identification)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int], None]
_PRELOAD = ("hca_assets.ingest", "hca_assets.deid_run", "hca_assets.images_run")


def ordered_map(
    fn: Callable[[T], R],
    items: list[T],
    *,
    workers: int = 1,
    progress: Progress | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: Iterable[Any] = (),
    min_parallel: int = 4,
) -> Iterator[R]:
    """``map(fn, items)`` in input order, in ``workers`` processes when there is enough work;
    calls ``progress(done, total)`` after each item. ``initializer`` runs once per process.

    Workers come from a fork server, not a plain fork: the callers (Dagster, ONNX runtime) run threads,
    and forking a threaded process can deadlock or crash the child."""
    total = len(items)
    pool = None
    if workers <= 1 or total < min_parallel:
        if initializer is not None:
            initializer(*initargs)
        results: Iterator[R] = map(fn, items)
    else:
        context = multiprocessing.get_context("forkserver")
        # imported once in the server (which lives as long as this process), not in every worker of every pool
        context.set_forkserver_preload([*_PRELOAD, fn.__module__])
        pool = ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=tuple(initargs), mp_context=context)
        results = pool.map(fn, items, chunksize=max(1, min(8, total // (workers * 8))))
    try:
        for done, result in enumerate(results, 1):
            if progress:
                progress(done, total)
            yield result
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
