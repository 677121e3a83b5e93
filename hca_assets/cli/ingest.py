"""``hca ingest``: claim what landed and run the graph for every batch that needs a run."""

from __future__ import annotations

import sys

import click

from hca_assets.cli._common import _lake_key, _settings, main


@main.command("ingest")
@click.option("--settle-seconds", type=float, default=None, help="Only claim files older than this.")
@click.option("--retry-failed", is_flag=True, help="Also run again the batches whose last run failed.")
def ingest_cmd(settle_seconds: float | None, retry_failed: bool) -> None:
    """Claim the landing zone into new batches and materialize them (runs appear in the UI); batches whose
    run died (killed, machine restart) run again.

    Exit code 0: every batch is done; 1: a run failed, now or earlier (see --retry-failed); 3: none failed, but
    some are still running in another process or handed to the Dagster daemon.
    """
    from hca_assets.in_process import ingest_pending, open_instance, outstanding
    from hca_assets.sensors.landing import BatchState

    settings = _settings(**({} if settle_seconds is None else {"settle_seconds": settle_seconds}))
    _lake_key(settings)  # a refused key stops here, before anything is claimed
    instance = open_instance(settings)
    runs = ingest_pending(settings, instance, retry_failed=retry_failed)
    left = [s for s in outstanding(settings, instance) if s.key not in {r.batch for r in runs}]
    if not runs and not left:
        click.echo(f"nothing to ingest in {settings.landing}")
    for run in runs:
        click.echo(f"batch {run.batch}: run {run.run_id} {'succeeded' if run.success else 'FAILED'}"
                   f"{f' ({run.note})' if run.note else ''}")
    for status in left:
        click.echo(f"batch {status.key}: {status.state.value.replace('_', ' ')} ({status.note})", err=True)
    if not all(r.success for r in runs) or any(s.state is BatchState.FAILED for s in left):
        sys.exit(1)
    if left:
        sys.exit(3)
