"""``hca demo``: generate, land and run the whole graph, then answer questions from the marts."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import click

from hca_assets.cli._common import DEMO_MARKER, UserError, _lake_key, _settings, main
from hca_assets.cli.generate import _generate
from hca_assets.cli.sql import run_sql
from hca_assets.config import Settings, is_uri
from hca_assets.lake import registry as tables


def _rmtree(path: Path) -> None:
    """Remove a tree, including folders whose permissions were locked (the demo's unreadable folder)."""
    for p in [path, *path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o700)
    shutil.rmtree(path)


def _demo_data_dir(data_dir: Path, *, fresh: bool) -> None:
    """Prepare the demo's data folder: with ``fresh``, delete it only if the demo created it (its marker file);
    if it does not exist, create it with the marker. Any other folder is refused, never deleted."""
    if fresh and (data_dir.exists() or data_dir.is_symlink()):
        marker = data_dir / DEMO_MARKER
        if data_dir.is_symlink() or not marker.is_file() or marker.is_symlink():
            raise UserError(f"--fresh refused: {data_dir} was not created by `hca demo` (no {DEMO_MARKER} marker); "
                            "delete it yourself or point HCA_DATA_DIR at another folder")
        click.echo(f"--fresh: removing {data_dir} (created by the demo)")
        _rmtree(data_dir)
    if not data_dir.exists():
        data_dir.mkdir(parents=True)
        (data_dir / DEMO_MARKER).write_text(f"created by `hca demo` at {datetime.now(UTC).isoformat()}; "
                                            "`hca demo --fresh` may delete this folder\n")


def _demo_store(settings: Settings, *, fresh: bool) -> None:
    """:func:`_demo_data_dir` for an object-store root: with ``fresh``, empty it only if its marker object says the
    demo filled it; a root holding anything else is refused, never emptied."""
    from hca_assets._infra.storage import Store

    store = Store(settings.data_dir)
    if fresh and store.listing(""):
        if store.read(DEMO_MARKER) is None:
            raise UserError(f"--fresh refused: {settings.data_dir} holds data `hca demo` did not write (no {DEMO_MARKER} "
                            "object); empty it yourself or point HCA_DATA_DIR elsewhere")
        click.echo(f"--fresh: emptying {settings.data_dir} (filled by the demo) and its working copy")
        store.remove("")
    store.write(DEMO_MARKER, f"written by `hca demo` at {datetime.now(UTC).isoformat()}\n".encode(), create=True)


def _first(paths: Iterable[Path]) -> Path:
    found = sorted(paths)
    if not found:
        raise click.ClickException("no synthetic CT file found in the claimed batches")
    return found[0]


@main.command("demo")
@click.option("--patients", type=int, default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fresh", is_flag=True, help="Delete the data folder first, only if the demo created it.")
def demo_cmd(patients: int, seed: int, fresh: bool) -> None:
    """Generate synthetic studies and bad inputs, ingest them through the graph, print a summary."""
    from hca_assets._infra.storage import push
    from hca_assets.in_process import ingest_pending, open_instance
    from hca_assets.synthetic import GeneratorOptions
    from hca_assets.synthetic.bad_inputs import write_bad_inputs

    settings = _settings(settle_seconds=0.0)
    if is_uri(settings.data_dir):
        _demo_store(settings, fresh=fresh)
    _demo_data_dir(Path(settings.local_root), fresh=fresh)
    _lake_key(settings)
    landing = Path(settings.landing)
    truth = Path(settings.truth_file).parent
    summary = _generate(landing / f"demo-seed{seed}", truth, GeneratorOptions(patients=patients, seed=seed))
    push(settings, truth)
    click.echo(f"generated {summary.instances} instances ({summary.instances_per_second:.0f}/s)")
    instance = open_instance(settings)
    runs = ingest_pending(settings, instance)
    # a second batch: broken inputs and duplicates of the first batch, to show the quarantine
    with tempfile.TemporaryDirectory() as tmp:
        example = shutil.copy(_first(Path(settings.raw_batches).glob("*/files/demo-*/*/ct/0001.dcm")), tmp)
        write_bad_inputs(Path(example), landing / f"demo-bad-inputs-seed{seed}", seed=seed)
    runs += ingest_pending(settings, instance)
    for run in runs:
        click.echo(f"batch {run.batch}: {'succeeded' if run.success else 'FAILED'} (run {run.run_id})")
    click.echo("\nInstances by modality (restricted raw index):")
    click.echo(run_sql(settings, f"SELECT modality, count(*) AS instances FROM {tables.RAW_INSTANCES.name} GROUP BY 1 ORDER BY 1",
                       restricted=True, fmt="table", command="demo"))
    click.echo("De-identified and published (PHI-free lake):")
    click.echo(run_sql(settings, "SELECT modality, burned_in, count(*) AS instances, count(DISTINCT patient_pseudonym) AS "
                       f"patients FROM {tables.DEID_INSTANCES.name} GROUP BY 1, 2 ORDER BY 1", restricted=False, fmt="table"))
    click.echo("Retrieval (leave-one-out kNN, other patients only), latest evaluation:")
    click.echo(run_sql(settings, f"SELECT level, target, metric, round(value, 3) AS value FROM {tables.EVALUATIONS.name} WHERE label = "
                       "'overall' AND (aggregation IS NULL OR aggregation = 'mean') AND metric IN ('P@1', 'P@5', 'mAP') AND "
                       f"run_id = (SELECT arg_max(run_id, evaluated_at) FROM {tables.EVALUATIONS.name}) ORDER BY 1, 2, 3",
                       restricted=False, fmt="table"))
    click.echo("Segmentations (local backend; mean volume per series in mL, area per image in mm²):")
    click.echo(run_sql(settings, "SELECT modality, structure, count(*) AS masks, round(avg(volume_ml), 1) AS ml, "
                       f"round(avg(area_mm2), 0) AS mm2 FROM {tables.SEGMENTATIONS.name} WHERE status = 'segmented' GROUP BY 1, 2 "
                       "ORDER BY 1, 2", restricted=False, fmt="table"))
    _demo_marts(settings)
    click.echo(f"Data under {settings.data_dir}; see it in the UI with `make ui` (DAGSTER_HOME={settings.dagster_home}).")
    if not all(r.success for r in runs):
        sys.exit(1)


DEMO_QUESTIONS = (  # what an analyst asks, answered from the dbt marts (any DuckDB client can ask the same)
    ("How many studies per modality and body part?",
     "SELECT modality, body_part, studies, series, instances FROM modality_bodypart_counts ORDER BY 1, 2"),
    ("Which model version is best? (latest evaluation per code_version; rank 1 = best)",
     "SELECT task, target, level, metric, code_version, round(value, 3) AS value, rank FROM model_leaderboard "
     "WHERE metric IN ('P@5', 'mAP', 'dice', 'hd95_mm') AND aggregation IN ('none', 'mean', 'synthetic_truth') "
     "ORDER BY 1, 2, 3, 4, rank"),
    ("How much was quarantined, and why?",
     "SELECT stage, reason, items, distinct_files, batches FROM quarantine_summary ORDER BY items DESC, 1, 2"),
    ("Is every item accounted for? (per stage: in = out + quarantined)",
     "SELECT stage, unit, count(*) AS batches, sum(items_in) AS items_in, sum(items_out) AS items_out, "
     "sum(items_quarantined) AS quarantined, sum(unaccounted) AS unaccounted FROM ingest_ledger GROUP BY step, 1, 2 "
     "ORDER BY step"),
)


def _demo_marts(settings: Settings) -> None:
    """Print the answers of :data:`DEMO_QUESTIONS` from the marts dbt built (a line if it built none)."""
    if not Path(settings.warehouse).is_file():
        click.echo(f"No dbt marts in {settings.warehouse}: the analytics step did not complete (see the index run).")
        return
    click.echo(f"Answers from the dbt marts ({settings.warehouse}):")
    for question, query in DEMO_QUESTIONS:
        click.echo(question)
        click.echo(run_sql(settings, query, restricted=False, fmt="table"))
