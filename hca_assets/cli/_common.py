"""What every ``hca`` command shares: settings with user errors, the audit row of each run, the group."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click

from hca_assets.config import Settings, is_uri

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

    from hca_assets._infra.files import atomic_write

    folder.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            csv.writer(fh).writerows([("sha256", "reason", "message"), *rows])

    report = folder / f"rejected-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.csv"
    atomic_write(report, write)
    return report


def _apart(folders: dict[str, Path]) -> None:
    """Refuse folders that overlap (one inside another, or the same): outputs would mix with PHI originals."""
    resolved = {name: path.resolve() for name, path in folders.items()}
    for a, pa in resolved.items():
        for b, pb in resolved.items():
            if a < b and (pa.is_relative_to(pb) or pb.is_relative_to(pa)):
                raise UserError(f"{a} and {b} overlap (one is inside the other): give folders apart")


def _lake_key(settings: Settings) -> bytes:
    """The configured key if the lake accepts it (compared with its pin, never pinning); else a :class:`UserError`."""
    from hca_assets._infra.keys import KeyRefused
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


