"""The ``hca`` command: generate, ingest, sql, demo. Calls the same core functions as the assets."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hca_assets.config import Settings, is_uri, join

if TYPE_CHECKING:
    from hca_assets.synthetic import GeneratorOptions
from hca_assets.dicom.enum import DeidOption
from hca_assets.segmentation import BACKENDS

TRUTH_DIRNAME = "synthetic_truth"  # keep in step with Settings.truth_file
DEMO_MARKER = ".hca-demo"  # written into a data folder `hca demo` created; `--fresh` deletes no other folder


def _settings(**changes: object) -> Settings:
    """Settings from the environment with ``changes``; an invalid value is a :class:`UserError`."""
    try:
        return dataclasses.replace(Settings.from_env(), **changes)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UserError(f"invalid setting (HCA_* environment or option): {exc}") from exc


class UserError(click.ClickException):
    """A user error: one line on stderr, exit code 2."""

    exit_code = 2


def _write_report(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """``rejected-<time>.csv`` (sha256, reason, message) beside the quarantined copies: which input failed and why,
    by content hash — never by file name, which may be a patient's."""
    import csv

    from hca_assets.files import atomic_write

    folder.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            csv.writer(fh).writerows([("sha256", "reason", "message"), *rows])

    return atomic_write(folder / f"rejected-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.csv", write)


def _apart(folders: dict[str, Path]) -> None:
    """Refuse folders that overlap (one inside another, or the same): outputs would mix with PHI originals."""
    resolved = {name: path.resolve() for name, path in folders.items()}
    for a, pa in resolved.items():
        for b, pb in resolved.items():
            if a < b and (pa.is_relative_to(pb) or pb.is_relative_to(pa)):
                raise UserError(f"{a} and {b} overlap (one is inside the other): give folders apart")


def _lake_key(settings: Settings) -> bytes:
    """The configured key if the lake accepts it (compared with its pin, never pinning); else a :class:`UserError`."""
    from hca_assets.keys import KeyRefused
    from hca_assets.lake.keypin import lake_key

    try:
        return lake_key(settings, pin=False)
    except KeyRefused as exc:
        raise UserError(str(exc)) from exc


@contextlib.contextmanager
def _one_line_user_errors() -> Iterator[None]:
    """Any click error (bad usage, refused request) becomes a :class:`UserError`: one line, exit code 2."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # a bare `hca` prints the help
    except click.ClickException as exc:
        raise UserError(" ".join(exc.format_message().split())) from exc


AUDIT_META = "hca.audit"  # ctx.meta key: what a command adds to its audit row


def audit_note(**facts: object) -> None:
    """Add to the running command's audit row: named counts (ints), or ``assets`` / ``partition`` — never values
    read from data, paths or query text."""
    click.get_current_context().meta.setdefault(AUDIT_META, {}).update(facts)


def _record_command(ctx: click.Context, outcome: str) -> None:
    """One ``audit_log`` row for a finished command (who, when, which command, how it ended, counts); a command that
    failed where no lake exists leaves none. A failure to record is a one-line warning, not the command's failure
    (restricted reads are recorded before they run)."""
    from hca_assets.lake.audit import CLI, AuditEvent, AuditUnavailable, record

    facts = dict(ctx.meta.get(AUDIT_META, {}))
    assets, partition = facts.pop("assets", None), facts.pop("partition", None)
    event = AuditEvent(CLI, ctx.command.name or "?", outcome, restricted=bool(ctx.params.get("restricted")),
                       assets=assets, partition=partition, counts={k: int(v) for k, v in facts.items()})
    try:
        settings = Settings.from_env()
    except ValueError:  # refused before anything ran: there is no lake to say where the row would go
        return
    if outcome != "ok" and not is_uri(settings.lake) and not Path(settings.lake).is_dir():
        return  # a refused command creates no lake (nor writes into a folder it was refused) just to log itself
    try:
        record(settings, event)
    except (ValueError, AuditUnavailable) as exc:
        click.echo(f"warning: this action was not recorded in audit_log ({' '.join(str(exc).split())})", err=True)


class _Command(click.Command):
    """A command whose every run (after its arguments parsed) is recorded in ``audit_log`` with its outcome."""

    def invoke(self, ctx: click.Context) -> object:
        outcome = "crashed"
        try:
            result = super().invoke(ctx)
            outcome = "ok"
            return result
        except SystemExit as exc:
            outcome = "ok" if exc.code in (0, None) else "failed"
            raise
        except click.exceptions.Exit as exc:
            outcome = "ok" if exc.exit_code == 0 else "failed"
            raise
        except click.ClickException:
            outcome = "error"
            raise
        finally:
            _record_command(ctx, outcome)


class _Group(click.Group):
    """The ``hca`` group: user errors from parsing and from every command are one line with exit code 2."""

    command_class = _Command

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: object) -> click.Context:
        with _one_line_user_errors():
            return super().make_context(info_name, args, parent, **extra)  # type: ignore[arg-type]

    def invoke(self, ctx: click.Context) -> object:
        with _one_line_user_errors():
            return super().invoke(ctx)


@click.group(cls=_Group)
def main() -> None:
    """hca_assets: DICOM → de-identified images, embeddings, search and a Delta lake."""


@main.command("generate")
@click.option("--patients", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the DICOM files.")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="Folder for ground truth and the PHI manifest [default: <data>/restricted/synthetic_truth].")
@click.option("--ct-slices", type=int, default=48, show_default=True)
@click.option("--ct-size", type=int, default=512, show_default=True)
def generate_cmd(patients: int, seed: int, out: Path, truth: Path | None, ct_slices: int, ct_size: int) -> None:
    """Write synthetic phantom studies with realistic PHI (plus ground truth, outside OUT)."""
    from hca_assets.synthetic import GeneratorOptions

    if truth is None:
        settings = _settings()
        settings.ensure_restricted()  # the truth names patients: owner-only like the rest of the zone
        truth = Path(join(settings.restricted, TRUTH_DIRNAME))

    summary = _generate(out, truth, GeneratorOptions(patients=patients, seed=seed, ct_slices=ct_slices, ct_size=ct_size))
    click.echo(f"{summary.instances} instances for {summary.patients} patients in {summary.seconds:.1f} s "
               f"({summary.instances_per_second:.0f}/s); truth in {summary.truth}")


def _generate(out: Path, truth: Path, options: GeneratorOptions):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    from hca_assets.synthetic import generate

    with tqdm(total=options.patients * options.instances_per_patient, unit="inst", desc="generate") as bar:
        return generate(out, truth, options, progress=lambda done, total: bar.update(done - bar.n))


@main.command("ingest")
@click.option("--settle-seconds", type=float, default=None, help="Only claim files older than this.")
@click.option("--retry-failed", is_flag=True, help="Also run again the batches whose last run failed.")
def ingest_cmd(settle_seconds: float | None, retry_failed: bool) -> None:
    """Claim the landing zone into new batches and materialize them (runs appear in the UI); batches whose
    run died (killed, machine restart) run again.

    Exit code 0: every batch is done; 1: a run failed, now or earlier (see --retry-failed); 3: none failed, but
    some are still running in another process or handed to the Dagster daemon.
    """
    from hca_assets.pipeline import ingest_pending, open_instance, outstanding
    from hca_assets.sensors import BatchState

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


@main.command("sql")
@click.argument("query")
@click.option("--restricted", is_flag=True, help="Also register PHI-bearing tables (restricted zone).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def sql_cmd(query: str, restricted: bool, fmt: str) -> None:
    """Run one SQL statement, QUERY, in a sandboxed DuckDB over every lake Delta table (views named after the
    tables; no file, network, extension or setting access), bounded in time, memory and rows (HCA_SQL_TIMEOUT_SECONDS,
    HCA_SQL_MEMORY_MB, HCA_SQL_MAX_ROWS). With --restricted, the access is logged in audit_log."""
    from hca_assets._parallel import warm_up

    warm_up(("hca_assets.lake.warehouse", "hca_assets.lake.render"))  # the statement's process forks from it
    from hca_assets.lake.warehouse import QueryRefused, bounded_query  # meanwhile: both import DuckDB

    settings = _settings()
    try:
        click.echo(bounded_query(settings, query, restricted=restricted, fmt=fmt), nl=False)
    except QueryRefused as exc:
        raise UserError(str(exc)) from exc


def run_sql(settings: Settings, query: str, *, restricted: bool, fmt: str, command: str = "sql") -> str:
    """Execute ``query`` (one query) and render the result as a text table, CSV or JSON lines."""
    from hca_assets.lake.render import render
    from hca_assets.lake.warehouse import QueryRefused, query_rows

    try:
        columns, rows = query_rows(settings, query, restricted=restricted, command=command)
    except QueryRefused as exc:
        raise UserError(str(exc)) from exc
    return render(columns, rows, fmt)


@main.command("deid")
@click.argument("input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--option", "options", multiple=True, type=click.Choice([o.value for o in DeidOption]),
              help="PS3.15 option (repeatable) [default: rtn_long_modif_dates + rtn_pat_chars].")
@click.option("--basic-only", is_flag=True, help="The Basic Profile with no options.")
@click.option("--uid-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV id_old,id_new for UIDs.")
@click.option("--patient-map", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV id_old,id_new for patient IDs.")
@click.option("--ocr", type=click.Choice(["all", "candidates", "off"]), default="all", show_default=True,
              help="Which images are screened for burned-in text: all, only modalities that commonly carry it, none.")
@click.option("--net/--no-net", default=True, show_default=True,
              help="A learned text detector reads every single-frame image and a sample of each series, whatever the screen says.")
@click.option("--workers", type=int, default=None, help="Worker processes [default: HCA_WORKERS or 2].")
@click.option("--quarantine", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy inputs that fail de-identification here (named by sha256), with cli/rejected-<time>.csv "
                   "(sha256, reason, message).")
def deid_cmd(input_dir: Path, output_dir: Path, options: tuple[str, ...], basic_only: bool, uid_map: Path | None,
             patient_map: Path | None, ocr: str, net: bool, workers: int | None, quarantine: Path | None) -> None:
    """De-identify every DICOM file under INPUT_DIR into OUTPUT_DIR/<study>/<series>/<instance>.dcm.

    Same engine as the deid_dicom asset; each output is verified before it is renamed into place.
    """
    from hca_assets._parallel import warm_up

    _apart({"INPUT_DIR": input_dir, "OUTPUT_DIR": output_dir, **({"--quarantine": quarantine} if quarantine else {})})
    chosen = () if basic_only else (options or Settings.deid_options)
    settings = _settings(deid_options=tuple(chosen), ocr_mode=ocr, deid_net=net, uid_map=str(uid_map) if uid_map else None,
                         patient_map=str(patient_map) if patient_map else None,
                         **({"workers": workers} if workers else {}))
    if settings.workers > 1 or settings.limits.timeout:  # files run in worker processes: start their server
        warm_up(("hca_assets.deid_run",))  # now, so it imports the engine while the key and spec load here

    from hca_assets.deid_run import DeidRecord, deidentify_files, spec_from_settings
    from hca_assets.dicom.enum import QuarantineReason
    from hca_assets.ingest import keep_file

    key = _lake_key(settings)
    try:
        spec = spec_from_settings(settings, key)
        output_dir.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:  # a malformed mapping file, an output path that cannot be a folder
        raise UserError(str(exc).splitlines()[0]) from exc
    found = [p for p in input_dir.rglob("*") if not p.name.startswith(".") and (p.is_symlink() or p.is_file())]
    sources = sorted(p for p in found if not p.is_symlink())
    rejected: Counter[str] = Counter({"symlink_refused": len(found) - len(sources)} if len(found) > len(sources) else {})
    written = duplicates = 0
    from tqdm import tqdm

    report: list[tuple[str, str, str]] = []  # (sha256, reason, PHI-free message) of each input not written
    with tqdm(total=len(sources), unit="file", desc="deid") as bar:
        for i, result in enumerate(deidentify_files(sources, output_dir, spec, workers=settings.workers,
                                                    progress=lambda done, total: bar.update(done - bar.n),
                                                    timeout=settings.limits.timeout)):
            if isinstance(result, DeidRecord):
                written += 1
            elif result.reason == QuarantineReason.DUPLICATE_INSTANCE:
                duplicates += 1  # an identical instance is already in the output: nothing lost, nothing written
            else:
                rejected[str(result.reason)] += 1
                report.append((result.sha256 or "", str(result.reason), result.message))
                if quarantine:
                    keep_file(Path(result.source), quarantine, "cli", result.sha256, i,
                              max_copy_bytes=settings.limits.max_file_bytes)
    if quarantine and report:
        _write_report(quarantine / "cli", report)
    audit_note(inputs=len(found), written=written, duplicates=duplicates, rejected=sum(rejected.values()))
    click.echo(f"{written} file(s) written into {output_dir} from {len(found)} input(s) (profile {spec.profile.name})"
               + (f"; {duplicates} identical duplicate(s) not written again" if duplicates else ""))
    if rejected:
        click.echo("not de-identified (nothing written for them): "
                   + ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items())), err=True)
        sys.exit(1)


@main.command("search")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("-k", "k", type=int, default=5, show_default=True)
@click.option("--level", type=click.Choice(["image", "series", "study"]), default="image", show_default=True)
@click.option("--text", default=None, help="Search by text (backends that embed text only).")
@click.option("--where", default=None, help="SQL condition on the indexed rows (columns: UIDs, patient_pseudonym, modality, "
              "body_part, batch …; subqueries may read PHI-free tables): search only the rows it keeps.")
def search_cmd(file: Path | None, k: int, level: str, text: str | None, where: str | None) -> None:
    """Nearest neighbours of FILE (DICOM or PNG) in the FAISS index, with pseudonymous IDs and labels."""
    from hca_assets.lake.warehouse import QueryRefused
    from hca_assets.search.query import load_query_image, search_similar

    if (file is None) == (text is None):
        raise click.UsageError("give FILE or --text (not both)")
    try:
        image = load_query_image(file) if file else None
    except Exception as exc:  # any unreadable query file (pydicom, PIL and numpy raise many types) is the user's
        raise UserError(f"FILE is neither a readable DICOM image nor a PNG/JPEG ({type(exc).__name__})") from exc
    try:
        found = search_similar(_settings(), image=image, text=text, k=k, level=level, where=where)
    except QueryRefused as exc:
        raise UserError(f"--where refused: {exc}") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    audit_note(results=len(found))
    for rank, n in enumerate(found, 1):
        series = f"series {n.series_instance_uid}  " if n.series_instance_uid else ""
        click.echo(f"{rank:>2}  {n.similarity:.4f}  {n.modality:<3} {n.body_part or '-':<13} study {n.study_instance_uid}  "
                   f"{series}{n.labels or ''}")


@main.command("segment")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--prompt", "prompts", multiple=True, help="Structure to segment (repeatable) [default: the strategy's "
              "prompts for the input's modality and body part].")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for <structure>.nii.gz and seg.dcm: new, empty, or from an earlier `hca segment`.")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Segmentation backend [default: HCA_SEGMENTER, else local].")
def segment_cmd(input_path: Path, prompts: tuple[str, ...], out: Path, backend: str | None) -> None:
    """Segment INPUT (a DICOM series folder, one DICOM file or a NIfTI volume): a NIfTI mask per structure on
    the input's grid, a DICOM SEG for DICOM input, and each structure's volume (mL) or area (mm²)."""
    from hca_assets.segmentation.backends import BackendError, segmenter_for
    from hca_assets.segmentation.base import BackendFailure
    from hca_assets.segmentation.standalone import InputError, segment_input

    try:
        settings = _settings()
        result = segment_input(input_path, out, prompts, segmenter_for(backend or settings.segmenter, settings))
    except (InputError, BackendError, BackendFailure) as exc:  # a failing endpoint or model too: one line, no traceback
        raise UserError(str(exc)) from exc
    audit_note(structures=len(result.structures))
    for s in result.structures:
        m = s.measurement
        size = (f"{m.volume_ml:10.1f} mL" if m.volume_ml is not None else f"{m.area_mm2:10.1f} mm²"
                if m.area_mm2 is not None else "   (no pixel spacing)")
        click.echo(f"{s.structure:<20} {size}  {m.voxels:>9} voxels  {s.path}")
    if result.seg_path:
        click.echo(f"DICOM SEG: {result.seg_path}")
    if result.seg_skipped:
        click.echo(f"no DICOM SEG: {result.seg_skipped} (the NIfTI masks above are complete)")


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
    from hca_assets.storage import Store

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
    from hca_assets.pipeline import ingest_pending, open_instance
    from hca_assets.storage import push
    from hca_assets.synthetic import GeneratorOptions
    from hca_assets.synthetic.bad_inputs import write_bad_inputs

    settings = _settings(settle_seconds=0.0)
    if is_uri(settings.data_dir):
        _demo_store(settings, fresh=fresh)
    _demo_data_dir(Path(settings.local_root), fresh=fresh)
    _lake_key(settings)
    landing = Path(settings.landing)
    truth = Path(join(settings.restricted, TRUTH_DIRNAME))
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
    click.echo(run_sql(settings, "SELECT modality, count(*) AS instances FROM raw_instances GROUP BY 1 ORDER BY 1",
                       restricted=True, fmt="table", command="demo"))
    click.echo("De-identified and published (PHI-free lake):")
    click.echo(run_sql(settings, "SELECT modality, burned_in, count(*) AS instances, count(DISTINCT patient_pseudonym) AS "
                       "patients FROM deid_instances GROUP BY 1, 2 ORDER BY 1", restricted=False, fmt="table"))
    click.echo("Retrieval (leave-one-out kNN, other patients only), latest evaluation:")
    click.echo(run_sql(settings, "SELECT level, target, metric, round(value, 3) AS value FROM evaluations WHERE label = "
                       "'overall' AND (aggregation IS NULL OR aggregation = 'mean') AND metric IN ('P@1', 'P@5', 'mAP') AND "
                       "run_id = (SELECT arg_max(run_id, evaluated_at) FROM evaluations) ORDER BY 1, 2, 3",
                       restricted=False, fmt="table"))
    click.echo("Segmentations (local backend; mean volume per series in mL, area per image in mm²):")
    click.echo(run_sql(settings, "SELECT modality, structure, count(*) AS masks, round(avg(volume_ml), 1) AS ml, "
                       "round(avg(area_mm2), 0) AS mm2 FROM segmentations WHERE status = 'segmented' GROUP BY 1, 2 "
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


@main.command("rekey")
def rekey_cmd() -> None:
    """Make the configured key (HCA_DEID_KEY, else restricted/hca.key) the key of this data folder's lake.

    Patients, studies, series and instances already de-identified keep their pseudonyms and date offsets
    (taken from the restricted crosswalk); only new ones get pseudonyms from the new key.
    """
    from hca_assets.keys import KeyRefused
    from hca_assets.lake.keypin import rotate_key

    try:
        old, new = rotate_key(_settings())
    except KeyRefused as exc:
        raise UserError(str(exc)) from exc
    if old is None:
        click.echo(f"the lake had no key yet: pinned key {new}")
    elif old == new:
        click.echo(f"key {new} is already the lake's key: nothing to rotate")
    else:
        click.echo(f"key {old} retired; the lake now uses key {new} (pseudonyms already given are kept)")


@main.command("listen")
@click.option("--port", type=click.IntRange(1, 65535), default=11112, show_default=True)
@click.option("--ae-title", default="HCA", show_default=True, help="The listener's own AE title.")
@click.option("--allow", "allow", multiple=True, help="A calling AE title to accept (repeatable; none: any).")
@click.option("--host", default="0.0.0.0", show_default=True, help="The address to listen on.")
def listen_cmd(port: int, ae_title: str, allow: tuple[str, ...], host: str) -> None:
    """Receive studies by DICOM C-STORE until SIGINT/SIGTERM: each is collected in restricted/incoming and moved
    into the landing zone once its associations ended and nothing arrived for HCA_CSTORE_STABLE_SECONDS."""
    import logging
    import signal
    import threading
    import time

    import pydicom.config

    from hca_assets.keys import KeyRefused
    from hca_assets.lake.keypin import lake_key
    from hca_assets.sources.cstore import CStoreListener

    if not 0 < len(ae_title.strip()) <= 16 or any(not 0 < len(a.strip()) <= 16 for a in allow):
        raise UserError("an AE title has 1 to 16 characters")
    settings = _settings()
    try:
        key = lake_key(settings)
    except KeyRefused as exc:
        raise UserError(str(exc)) from exc
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("hca_assets.sources.cstore").addHandler(handler)
    logging.getLogger("hca_assets.sources.cstore").setLevel(logging.INFO)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its messages may quote UIDs, and so may pydicom's
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)  # validation warnings about a peer's values:
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE  # this process only keeps the bytes
    listener = CStoreListener(settings, key, ae_title=ae_title, port=port, host=host, allow=allow)
    try:
        listener.start()
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    def progress() -> str:
        s = listener.stats
        return (f"{s.associations} associations ({s.rejected} refused), {s.stored} instances stored, {s.failed} "
                f"refused, {s.released} studies released")

    shown, last_shown = progress(), 0.0
    while not stop.wait(min(1.0, max(0.1, settings.cstore_stable_seconds / 4))):
        listener.poll()
        if (line := progress()) != shown and time.monotonic() - last_shown >= 5:
            click.echo(line, err=True)
            shown, last_shown = line, time.monotonic()
    listener.stop()
    s, held = listener.stats, len(listener.incoming.studies())
    audit_note(associations=s.associations, stored=s.stored, refused=s.failed, released=s.released)
    click.echo(f"stopped: {s.associations} associations ({s.rejected} refused), {s.stored} instances stored, "
               f"{s.failed} refused, {s.released} studies released, {held} held in incoming (released after the "
               "next start)")


@main.command("backfill")
@click.argument("asset")
@click.option("--all-batches", is_flag=True, help="Every registered ingest batch.")
@click.option("--batch", "batches", multiple=True, help="An ingest batch (repeatable).")
def backfill_cmd(asset: str, all_batches: bool, batches: tuple[str, ...]) -> None:
    """Launch a Dagster backfill of ASSET (e.g. embeddings) in the instance at DAGSTER_HOME: the daemon (`make ui`)
    runs it, one run per batch, and the UI lists it under Overview → Backfills."""
    from hca_assets.backfills import BackfillRefused, launch_backfill
    from hca_assets.definitions import build_defs
    from hca_assets.pipeline import open_instance

    settings = _settings()
    try:
        launched = launch_backfill(open_instance(settings), build_defs(settings), asset, batches=batches,
                                   all_batches=all_batches)
    except BackfillRefused as exc:
        raise UserError(str(exc)) from exc
    audit_note(assets=[asset], batches=len(launched.batches))
    click.echo(f"backfill {launched.backfill_id}: {asset} for {len(launched.batches) or 'its only'} partition(s); "
               "the Dagster daemon runs it (see Overview → Backfills in the UI)")


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
    from hca_assets.adapter_run import record_feedback
    from hca_assets.evaluation.feedback import FeedbackError, feedback_row

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
