"""Rows of the ``runs`` table: per run and stage (asset step) its outcome, the rows it reported and its seconds.
Plain data in, Arrow out — the run-status sensors (:mod:`hca_assets.sensors.run_status`) gather it from Dagster."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from hca_assets.lake.schemas import RUNS

__all__ = ["StageRun", "runs_table"]


@dataclass(frozen=True)
class StageRun:
    """One stage (step) of a finished run; times are POSIX seconds, ``instances`` the rows it reported."""

    stage: str
    outcome: str  # success | failure | skipped | incomplete
    instances: int | None = None
    started: float | None = None
    finished: float | None = None


def runs_table(run_id: str, job: str, partition: str | None, stages: Iterable[StageRun]) -> pa.Table:
    """The ``runs`` rows of one run, one per stage."""
    def when(t: float | None) -> datetime | None:
        return None if t is None else datetime.fromtimestamp(t, UTC)

    rows = [{"run_id": run_id, "job": job, "stage": s.stage, "partition": partition, "outcome": s.outcome,
             "instances": s.instances, "started_at": when(s.started), "finished_at": when(s.finished),
             "seconds": None if s.started is None or s.finished is None else round(s.finished - s.started, 3)}
            for s in sorted(stages, key=lambda s: (s.started or 0.0, s.stage))]
    return pa.Table.from_pylist(rows, schema=RUNS)
