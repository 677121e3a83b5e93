"""Ordered map over worker processes with a progress callback and a per-item timeout (used by ingest,
de-identification and rendering).

With a timeout every item runs in a worker process, even with one worker: a thread cannot be stopped and
``SIGALRM`` works only in the main thread and never inside native code (decoders, OCR), but a process can
always be killed. A worker that overruns is killed and replaced; the item's place in the output holds an
:class:`ItemFailed` (so callers quarantine it) and the remaining items go on in the new worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int], None]
# a pipeline run starts its fork server once and every stage forks from it, so all stage modules are
# imported there up front; a command that runs one stage (hca deid) starts it earlier with only its own
# module (warm_up), and then this list has no effect
PIPELINE_PRELOAD = ("hca_assets.stages.ingest", "hca_assets.stages.deid", "hca_assets.stages.images")
_DEPTH = 2  # items queued per worker: the next one is ready the moment the previous result is sent
_PIPELINE_BYTES = 16 << 10  # a second item is queued only if it fits the pipe: a send to a busy worker never blocks
_READY = -1  # index of the message a worker sends once its initializer has run


@dataclass(frozen=True)
class ItemFailed:
    """Yielded in place of an item's result when its worker process was lost: killed at the per-item
    timeout (``timed_out``), or dead on its own (out of memory, a crash in native code)."""

    index: int
    timed_out: bool
    seconds: float
    exitcode: int | None = None

    @property
    def message(self) -> str:
        """PHI-free description for a quarantine row."""
        if self.timed_out:
            return f"stopped at the per-file timeout after {self.seconds:.0f} s"
        return f"worker process died (exit code {self.exitcode}) after {self.seconds:.0f} s, e.g. out of memory"


@dataclass(frozen=True)
class _Raised:
    error: BaseException


def ordered_map(
    fn: Callable[[T], R],
    items: list[T],
    *,
    workers: int = 1,
    progress: Progress | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: Iterable[Any] = (),
    min_parallel: int = 4,
    timeout: float | None = None,
) -> Iterator[R | ItemFailed]:
    """``map(fn, items)`` in input order, in ``workers`` processes when there is enough work or a
    ``timeout`` (seconds per item) is set; calls ``progress(done, total)`` after each item.
    ``initializer`` runs once per process. An item that overruns ``timeout`` or whose worker dies yields
    an :class:`ItemFailed`; an exception raised by ``fn`` is re-raised here, in the item's turn.

    Workers come from a fork server, not a plain fork: the callers (Dagster, ONNX runtime) run threads,
    and forking a threaded process can deadlock or crash the child (deltalake's runtime refuses to run in one)."""
    total = len(items)
    if timeout is None and (workers <= 1 or total < min_parallel):
        if initializer is not None:
            initializer(*initargs)
        results: Iterator[R | ItemFailed] = map(fn, items)
    else:
        results = _pool_map(fn, items, max(1, min(workers, total)), initializer, tuple(initargs), timeout)
    for done, result in enumerate(results, 1):
        if progress:
            progress(done, total)
        yield result


def _serve(conn: Connection, fn: Callable[[Any], Any], initializer: Callable[..., None] | None,
           initargs: tuple[Any, ...]) -> None:
    """Worker loop: run the initializer, say ready, then answer ``(index, item)`` messages until ``None``."""
    try:
        if initializer is not None:
            initializer(*initargs)
        conn.send((_READY, None))
        while (message := conn.recv()) is not None:
            index, item = message
            try:
                result: Any = fn(item)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, re-raised in its process
                result = _Raised(_portable(exc))
            try:
                conn.send((index, result))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send((index, _Raised(RuntimeError(f"result of item {index} cannot be pickled: {type(exc).__name__}"))))
    except EOFError:  # the parent is gone
        return
    except Exception as exc:  # noqa: BLE001 - an initializer failure is the caller's to see
        conn.send((_READY, _Raised(_portable(exc))))


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (many exception classes do not), else a plain stand-in."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure means "not portable"
        return RuntimeError(f"{type(exc).__name__} in a worker process")
    return exc


class _Worker:
    """One worker process, its pipe, the indices it holds and when its current item started."""

    def __init__(self, context: Any, args: tuple[Any, ...]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.queue: deque[int] = deque()
        self.since = time.monotonic()  # start of the current item (or of the process, until ready)

    def stop(self, *, kill: bool) -> None:
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def warm_up(modules: tuple[str, ...]) -> None:
    """Start the fork server now, importing ``modules``, so that its start-up overlaps the caller's own
    preparation (a no-op once it runs; later pools fork from it)."""
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(modules))
    forkserver.ensure_running()


def _pool_map(fn: Callable[[T], R], items: list[T], workers: int, initializer: Callable[..., None] | None,
              initargs: tuple[Any, ...], timeout: float | None) -> Iterator[R | ItemFailed]:
    context = multiprocessing.get_context("forkserver")
    # imported once in the server (which lives as long as this process), not in every worker of every pool
    context.set_forkserver_preload([*PIPELINE_PRELOAD, fn.__module__])  # no effect once warm_up started it
    args = (fn, initializer, initargs)
    pending = deque(range(len(items)))
    finished: dict[int, R | ItemFailed | _Raised] = {}
    pool = [_Worker(context, args) for _ in range(workers)]
    following = 0
    clean = False
    try:
        while following < len(items):
            for worker in pool:
                _dispatch(worker, items, pending)
            while following in finished:
                result = finished.pop(following)
                following += 1
                if isinstance(result, _Raised):
                    raise result.error
                yield result
            if following == len(items):
                break
            busy = [w for w in pool if w.queue or not w.ready]
            deadline = min(w.since for w in busy) + timeout if timeout is not None else None
            wait([c for w in busy for c in (w.conn, w.process.sentinel)],
                 None if deadline is None else max(0.0, deadline - time.monotonic()))
            for position, worker in enumerate(pool):
                _drain(worker, finished)
                lost = _lost(worker, timeout)
                if lost is not None or not worker.process.is_alive():
                    if lost is not None:
                        finished[lost.index] = lost
                    pending.extendleft(reversed(worker.queue))  # queued behind it, not started: run them elsewhere
                    worker.stop(kill=True)
                    pool[position] = _Worker(context, args)
        clean = True
    finally:
        for worker in pool:
            worker.stop(kill=not clean)


def _dispatch(worker: _Worker, items: list[Any], pending: deque[int]) -> None:
    """Keep up to ``_DEPTH`` items queued in a live worker."""
    while pending and len(worker.queue) < _DEPTH:
        index = pending[0]
        payload = pickle.dumps((index, items[index]))
        if worker.queue and len(payload) > _PIPELINE_BYTES:
            return
        try:
            worker.conn.send_bytes(payload)
        except OSError:  # died: it is replaced after the next wait
            return
        pending.popleft()
        if not worker.queue and worker.ready:
            worker.since = time.monotonic()
        worker.queue.append(index)


def _drain(worker: _Worker, finished: dict[int, Any]) -> None:
    """Take every message the worker has sent; re-raise an initializer failure."""
    try:
        while worker.conn.poll():
            index, result = worker.conn.recv()
            if index == _READY:
                if isinstance(result, _Raised):
                    raise result.error
                worker.ready = True
            else:
                worker.queue.popleft()
                finished[index] = result
            worker.since = time.monotonic()  # its next item starts now
    except (EOFError, OSError):
        pass  # died mid-send: is_alive() tells


def _lost(worker: _Worker, timeout: float | None) -> ItemFailed | None:
    """The current item of a worker that died or overran ``timeout`` (taken off its queue), else None."""
    seconds = time.monotonic() - worker.since
    if not worker.process.is_alive():
        if not worker.ready:
            raise RuntimeError(f"a worker process exited during start-up (exit code {worker.process.exitcode})")
        return ItemFailed(worker.queue.popleft(), False, seconds, worker.process.exitcode) if worker.queue else None
    if timeout is None or seconds < timeout or not (worker.queue or not worker.ready):
        return None
    if not worker.ready:
        raise TimeoutError(f"a worker process did not start within {timeout:.0f} s")
    return ItemFailed(worker.queue.popleft(), True, seconds)
