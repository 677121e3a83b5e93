"""``hca feedback``: one reviewer verdict on a search hit or a mask."""

from __future__ import annotations

import click

from hca_assets.cli._common import UserError, _settings, audit_note, main


@main.command("feedback")
@click.option("--hit", "hit", default=None, help="The search hit judged: its pseudonymous sop_instance_uid.")
@click.option("--query", "query", default=None, help="The query instance the hit answered (optional).")
@click.option("--series", "series", default=None, help="The mask judged: its pseudonymous series_instance_uid.")
@click.option("--structure", default=None, help="The mask's structure (with --series).")
@click.option("--verdict", type=click.Choice(["correct", "wrong", "corrected"]), required=True)
@click.option("--label", default=None, help="The corrected class label (with --verdict corrected).")
@click.option("--reviewer", required=True, help="Who reviewed (a name; recorded with the time).")
def feedback_cmd(hit: str | None, query: str | None, series: str | None, structure: str | None, verdict: str,
                 label: str | None, reviewer: str) -> None:
    """Record a reviewer's verdict on a search hit (--hit) or a mask (--series, --structure) in Delta feedback;
    corrected labels are what the retrieval adapter trains on next."""
    from hca_assets.evaluation.feedback import FeedbackError, feedback_row
    from hca_assets.stages.feedback import record_feedback

    if (hit is None) == (series is None):
        raise click.UsageError("give --hit (a search hit) or --series with --structure (a mask), not both")
    try:
        row = record_feedback(_settings(), feedback_row(
            kind="search_hit" if hit else "mask", verdict=verdict, reviewer=reviewer, source="cli",
            sop_instance_uid=hit, query_sop_instance_uid=query, series_instance_uid=series, structure=structure,
            corrected_label=label))
    except FeedbackError as exc:
        raise UserError(str(exc)) from exc
    audit_note(verdicts=1)
    click.echo(f"recorded {row['verdict']} on {row['kind']} (feedback {row['feedback_id']}, {row['code_version']})")
