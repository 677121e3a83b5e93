"""The PHI-free audit log (Delta ``audit_log`` in the lake): restricted reads, CLI actions and run outcomes.

A row says who (the OS user), when, what (command, job, assets, partition), how it ended and how much (named
counts) — never a query's text, a path, or a value read from data. An ``audit_log`` written before the run and
CLI columns existed is migrated in place on the next write (its rows kept, ``event`` = ``restricted_read``).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from hca_assets._infra.locks import FileLock
from hca_assets._infra.storage import delta_options
from hca_assets.config import Settings, is_uri
from hca_assets.lake import registry
from hca_assets.lake.delta import delta_table, table_exists
from hca_assets.lake.schemas import AUDIT_LOG

__all__ = ["AuditEvent", "AuditUnavailable", "actor", "migrate", "record"]

RESTRICTED_READ, CLI, RUN = "restricted_read", "cli", "run"


class AuditUnavailable(RuntimeError):
    """The event could not be recorded; the message is one PHI-free line."""


def actor() -> str:
    """The operating-system user running this process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class AuditEvent:
    """One audited event. ``counts`` are named numbers (files written, rows, instances), never values."""

    event: str  # restricted_read | cli | run
    command: str  # the CLI command (sql, deid, search, segment, backfill, …), or "run" for a Dagster run
    outcome: str | None = None  # ok | error | failed (CLI); success | failure (runs); None before a read runs
    restricted: bool = False  # a --restricted action
    query_sha256: str | None = None
    restricted_tables: Sequence[str] | None = None
    job_name: str | None = None
    run_id: str | None = None
    assets: Sequence[str] | None = None
    partition: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)

    def row(self, at: datetime, user: str) -> dict[str, object]:
        return {"accessed_at": at, "user_name": user, "command": self.command, "query_sha256": self.query_sha256,
                "restricted_tables": sorted(self.restricted_tables) if self.restricted_tables is not None else None,
                "event_id": uuid.uuid4().hex, "event": self.event, "outcome": self.outcome,
                "restricted": self.restricted, "job_name": self.job_name, "run_id": self.run_id,
                "assets": sorted(self.assets) if self.assets is not None else None, "partition": self.partition,
                "counts": [{"name": k, "value": int(v)} for k, v in sorted(self.counts.items())] or None}


def _uri(settings: Settings) -> str:
    return registry.AUDIT_LOG.uri(settings)


def _current(uri: str) -> bool:
    return [f.name for f in delta_table(uri).schema().fields] == AUDIT_LOG.names  # reads the log only


def migrate(settings: Settings) -> bool:
    """Rewrite an ``audit_log`` of an older schema to the current one (rows kept; a new Delta version, so the
    old one stays in the table's history). Returns whether it did."""
    uri = _uri(settings)
    if not table_exists(uri) or _current(uri):
        return False
    with contextlib.nullcontext() if is_uri(uri) else FileLock(Path(uri).parent / ".audit_log.migrate.lock"):
        if _current(uri):  # another process migrated it while this one waited
            return False
        rows = delta_table(uri).to_pyarrow_table().to_pylist()
        for r in rows:
            seed = f"{r.get('accessed_at')}|{r.get('user_name')}|{r.get('query_sha256')}"
            r.setdefault("event_id", hashlib.sha256(seed.encode()).hexdigest()[:32])
            r.setdefault("event", RESTRICTED_READ)
            r.setdefault("restricted", True)
        migrated = pa.Table.from_pylist([{name: r.get(name) for name in AUDIT_LOG.names} for r in rows], schema=AUDIT_LOG)
        write_deltalake(uri, migrated, mode="overwrite", schema_mode="overwrite", storage_options=delta_options(uri))
        return True


def _one_row(row: Mapping[str, object]) -> pa.Table:
    """The row as an ``AUDIT_LOG`` table, parsed from JSON: pyarrow's conversion of Python objects imports pandas
    (~0.25 s), which every CLI command would pay for its audit row."""
    text = json.dumps({k: v.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(v, datetime) else v for k, v in row.items()})
    options = pa_json.ParseOptions(explicit_schema=AUDIT_LOG, unexpected_field_behavior="error")
    return pa_json.read_json(io.BytesIO(text.encode()), parse_options=options).cast(AUDIT_LOG)


def record(settings: Settings, event: AuditEvent, *, user: str | None = None, attempts: int = 5) -> None:
    """Append ``event`` as one row (migrating an older table first); :class:`AuditUnavailable` if it cannot be."""
    data = _one_row(event.row(datetime.now(UTC), user or actor()))
    for attempt in range(attempts):  # concurrent first appends race to create the table
        try:
            migrate(settings)
            write_deltalake(_uri(settings), data, mode="append", storage_options=delta_options(_uri(settings)))
            return
        except CommitFailedError:
            if attempt == attempts - 1:
                raise AuditUnavailable("audit_log is busy: the event could not be recorded, try again") from None
            time.sleep(0.1 * 2**attempt)
        except (DeltaError, OSError, pa.ArrowException) as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise AuditUnavailable(f"audit_log cannot be written ({first[:200]})") from None
