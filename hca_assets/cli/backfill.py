"""``hca backfill``: an asset backfill over ingest batches, run by the daemon."""

from __future__ import annotations

import click

from hca_assets.cli._common import UserError, _settings, audit_note, main


@main.command("backfill")
@click.argument("asset")
@click.option("--all-batches", is_flag=True, help="Every registered ingest batch.")
@click.option("--batch", "batches", multiple=True, help="An ingest batch (repeatable).")
def backfill_cmd(asset: str, all_batches: bool, batches: tuple[str, ...]) -> None:
    """Launch a Dagster backfill of ASSET (e.g. embeddings) in the instance at DAGSTER_HOME: the daemon (`make ui`)
    runs it, one run per batch, and the UI lists it under Overview → Backfills."""
    from hca_assets.definitions import build_defs
    from hca_assets.in_process import open_instance
    from hca_assets.orchestration.backfills import BackfillRefused, launch_backfill

    settings = _settings()
    try:
        launched = launch_backfill(open_instance(settings), build_defs(settings), asset, batches=batches,
                                   all_batches=all_batches)
    except BackfillRefused as exc:
        raise UserError(str(exc)) from exc
    audit_note(assets=[asset], batches=len(launched.batches))
    click.echo(f"backfill {launched.backfill_id}: {asset} for {len(launched.batches) or 'its only'} partition(s); "
               "the Dagster daemon runs it (see Overview → Backfills in the UI)")
