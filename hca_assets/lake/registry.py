"""The table registry: one :class:`TableSpec` per Delta table — name, schema, zone, partition column, key
columns — the one place writers, readers, checks, the SQL views and the dbt sources take a table's facts from.

``zone`` is ``restricted`` for tables that may hold PHI (kept under ``restricted/tables``, never a view unless
asked for) and ``lake`` for everything else. ``keys`` are the columns that identify a row; dbt and Great
Expectations test them for uniqueness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from hca_assets.lake import schemas as s

if TYPE_CHECKING:
    from hca_assets.config import Settings
    from hca_assets.lake.delta import WriteResult

__all__ = ["TABLES", "TableSpec", "lake_tables", "restricted_names", "spec"]

Zone = Literal["lake", "restricted"]


@dataclass(frozen=True)
class TableSpec:
    """A Delta table's facts; ``uri``/``read``/``write`` apply them so call sites never repeat them."""

    name: str
    schema: pa.Schema
    zone: Zone
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ("batch",)
    description: str = ""

    def __post_init__(self) -> None:
        missing = [c for c in (*self.keys, *self.partition_by) if c not in self.schema.names]
        if missing:
            raise ValueError(f"table {self.name}: columns {missing} are not in its schema")

    @property
    def restricted(self) -> bool:
        return self.zone == "restricted"

    def uri(self, settings: Settings) -> str:
        """Where the table lives under ``settings``' storage root."""
        return settings.table_uri(self.name, restricted=self.restricted)

    def read(self, settings: Settings, *, where: Mapping[str, str] | None = None) -> pa.Table:
        """The table (or the rows matching every ``column = value`` of ``where``); empty if not written yet."""
        from hca_assets.lake.delta import read_table

        return read_table(self.uri(settings), schema=self.schema, where=where)

    def write(self, settings: Settings, data: pa.Table, *, match: Mapping[str, str]) -> WriteResult:
        """Replace the slice ``match`` names (e.g. one batch) with ``data``: idempotent per slice."""
        from hca_assets.lake.delta import write_partition

        return write_partition(self.uri(settings), data, match=match, schema=self.schema, partition_by=self.partition_by)


_SPECS = (
    TableSpec("raw_instances", s.RAW_INSTANCES, "restricted", ("batch", "path"),
              description="every file claimed from the landing zone, with its original (PHI) attributes"),
    TableSpec("quarantine", s.QUARANTINE, "lake", ("batch", "stage", "kept_as"),
              description="what a stage could not process, with a PHI-free reason and where it is kept"),
    TableSpec("deid_instances", s.DEID_INSTANCES, "lake", ("sop_instance_uid",),
              description="de-identified instances (pseudonymous UIDs, shifted dates) and their files"),
    TableSpec("deid_audit", s.DEID_AUDIT, "lake", ("sop_instance_uid",),
              description="per instance, how many attributes each PS3.15 action touched"),
    TableSpec("deid_crosswalk", s.DEID_CROSSWALK, "restricted", ("batch", "kind", "original"),
              description="original identifiers to pseudonyms (PHI)"),
    TableSpec("images", s.IMAGES, "lake", ("sop_instance_uid", "frame"),
              description="one 1024² 8-bit PNG per frame, with its windowing"),
    TableSpec("volumes", s.VOLUMES, "lake", ("series_instance_uid",),
              description="one NIfTI per 3D series, with its shape and RAS affine"),
    TableSpec("embeddings", s.EMBEDDINGS, "lake", ("sop_instance_uid", "frame", "code_version"),
              description="one vector per image frame and embedding code_version"),
    TableSpec("series_embeddings", s.SERIES_EMBEDDINGS, "lake", ("series_instance_uid", "aggregation", "code_version"),
              description="series vectors aggregated from image vectors"),
    TableSpec("labels", s.LABELS, "lake", ("sop_instance_uid",), description="class and lesion labels per instance"),
    TableSpec("evaluations", s.EVALUATIONS, "lake", ("run_id", "metric", "level", "target", "label", "aggregation"),
              partition_by=(), description="retrieval and segmentation metrics per run and code_version"),
    TableSpec("audit_log", s.AUDIT_LOG, "lake", ("event_id",), partition_by=(),
              description="PHI-free record of restricted reads, CLI actions and run outcomes (who, when, counts)"),
    TableSpec("segmentations", s.SEGMENTATIONS, "lake", ("series_instance_uid", "sop_instance_uid", "structure",
                                                          "code_version"),
              description="one row per series (3D) or image (2D) and prompted structure, with its mask files"),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in _SPECS}


def spec(name: str) -> TableSpec:
    """The registered table ``name``; ``KeyError`` naming the known tables otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no table {name!r} in the registry (known: {', '.join(sorted(TABLES))})") from None


def restricted_names() -> frozenset[str]:
    """Names of the tables in the restricted zone."""
    return frozenset(t.name for t in TABLES.values() if t.restricted)


def lake_tables() -> list[TableSpec]:
    """The PHI-free tables: what SQL, dbt and Great Expectations see by default."""
    return [t for t in TABLES.values() if not t.restricted]
