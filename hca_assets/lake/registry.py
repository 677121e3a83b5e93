"""The table registry: one :class:`TableSpec` per Delta table — name, schema, zone, partition column, key
columns — the one place writers, readers, checks, the SQL views and the dbt sources take a table's facts from.

``zone`` is ``restricted`` for tables that may hold PHI (kept under ``restricted/tables``, never a view unless
asked for) and ``lake`` for everything else. ``keys`` are the columns that identify a row; dbt and Great
Expectations test them for uniqueness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pyarrow as pa

    from hca_assets.config import Settings
    from hca_assets.lake.delta import WriteResult

__all__ = ["AUDIT_LOG", "DEID_AUDIT", "DEID_CROSSWALK", "DEID_INSTANCES", "DRIFT", "EMBEDDINGS", "EVALUATIONS", "EXPORTS",
           "FEEDBACK", "IMAGES", "INDEX_BUILDS", "LABELS", "OOD_SCORES", "QUARANTINE", "RAW_INSTANCES", "REPORTS", "RUNS",
           "SEGMENTATIONS", "SERIES", "SERIES_EMBEDDINGS", "STUDIES", "STUDY_ARRIVALS", "TABLES", "VOLUMES", "TableSpec",
           "Writer", "lake_tables", "restricted_names", "spec"]

Zone = Literal["lake", "restricted"]
Owns = Literal["batch", "run", "all"]

# the `stage` of a quarantine row: which step set the item aside (each the name of the asset that writes it)
INGEST_STAGE, DEID_STAGE, RENDER_STAGE = "raw_dicom", "deid_dicom", "images"
REVIEWED_TARGET = "reviewed"  # evaluations.target of the accuracy on reviewed items (feedback)


@dataclass(frozen=True)
class Writer:
    """An asset that writes a table, and the slice one materialization of it replaces: its ``batch`` (partition),
    its ``run`` (run_id) or ``all`` of the table; ``where`` adds columns that narrow that slice (quarantine's stage)."""

    asset: str
    owns: Owns = "batch"
    where: tuple[tuple[str, str], ...] = ()
    expectations: bool = True  # its slice validated by the table's Great Expectations suite after each materialization


@dataclass(frozen=True)
class TableSpec:
    """A Delta table's facts; ``uri``/``read``/``write`` apply them so call sites never repeat them.

    Call sites name a table by its module constant (``registry.IMAGES.read(settings, where=...)``), never by a string.
    """

    name: str
    zone: Zone
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ("batch",)
    description: str = ""
    writers: tuple[Writer, ...] = ()  # the assets writing it, the dbt source's first; () = written outside an asset

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema :mod:`hca_assets.lake.schemas` defines under the table's name in capitals (imported on
        first use: the SQL views need names and places, not pyarrow)."""
        from hca_assets.lake import schemas

        return getattr(schemas, self.name.upper())

    @property
    def restricted(self) -> bool:
        return self.zone == "restricted"

    def uri(self, settings: Settings) -> str:
        """Where the table lives under ``settings``' storage root."""
        return settings.table_uri(self.name, restricted=self.restricted)

    def exists(self, settings: Settings) -> bool:
        """Whether the table has been written under ``settings``' storage root."""
        from hca_assets.lake.delta import table_exists

        return table_exists(self.uri(settings))

    def read(self, settings: Settings, *, where: Mapping[str, str] | None = None,
             columns: Sequence[str] | None = None) -> pa.Table:
        """The table (or the rows matching every ``column = value`` of ``where``, only ``columns`` if given);
        empty with this schema if not written yet."""
        from hca_assets.lake.delta import read_table

        return read_table(self.uri(settings), schema=self.schema, where=where, columns=columns)

    def write(self, settings: Settings, data: pa.Table, *, match: Mapping[str, str]) -> WriteResult:
        """Replace the slice ``match`` names (e.g. one batch) with ``data``: idempotent per slice."""
        from hca_assets.lake.delta import write_partition

        return write_partition(self.uri(settings), data, match=match, schema=self.schema, partition_by=self.partition_by)


RAW_INSTANCES = TableSpec(
    "raw_instances", "restricted", ("batch", "path"),
    description="every file claimed from the landing zone, with its original (PHI) attributes",
    writers=(Writer("raw_dicom"),))
QUARANTINE = TableSpec(
    "quarantine", "lake", ("batch", "stage", "item"),
    description="what a stage could not process, with a PHI-free reason and where it is kept",
    writers=(Writer("raw_dicom", where=(("stage", INGEST_STAGE),)), Writer("deid_staged", where=(("stage", DEID_STAGE),)),
             Writer("images", where=(("stage", RENDER_STAGE),))))
DEID_INSTANCES = TableSpec(
    "deid_instances", "lake", ("sop_instance_uid",),
    description="de-identified instances (pseudonymous UIDs, shifted dates) and their files",
    writers=(Writer("deid_dicom"),))
DEID_AUDIT = TableSpec(
    "deid_audit", "lake", ("sop_instance_uid",),
    description="per instance, how many attributes each PS3.15 action touched",
    writers=(Writer("deid_dicom"),))
DEID_CROSSWALK = TableSpec(
    "deid_crosswalk", "restricted", ("batch", "kind", "original"),
    description="original identifiers to pseudonyms (PHI)",
    writers=(Writer("deid_staged"),))
SERIES = TableSpec(
    "series", "lake", ("batch", "series_instance_uid"),
    description="one row per series and batch (a series spread over batches has a row in each): modality, body "
                "part, manufacturer, shifted dates, spacing, instance counts and slice geometry QA",
    writers=(Writer("series", expectations=False),))
STUDIES = TableSpec(
    "studies", "lake", ("batch", "study_instance_uid"),
    description="one row per study and batch, aggregated from its series",
    writers=(Writer("studies", expectations=False),))
IMAGES = TableSpec(
    "images", "lake", ("sop_instance_uid", "frame"),
    description="one 1024² 8-bit PNG per frame, with its windowing",
    writers=(Writer("images"),))
VOLUMES = TableSpec(
    "volumes", "lake", ("series_instance_uid",),
    description="one NIfTI per 3D series, with its shape and RAS affine",
    writers=(Writer("images"),))
EMBEDDINGS = TableSpec(
    "embeddings", "lake", ("sop_instance_uid", "frame", "code_version"),
    description="one vector per image frame and embedding code_version",
    writers=(Writer("embeddings"),))
SERIES_EMBEDDINGS = TableSpec(
    "series_embeddings", "lake", ("series_instance_uid", "aggregation", "code_version"),
    description="series vectors aggregated from image vectors",
    writers=(Writer("embeddings"),))
LABELS = TableSpec(
    "labels", "lake", ("sop_instance_uid",), description="class and lesion labels per instance",
    writers=(Writer("labels"),))
INDEX_BUILDS = TableSpec(
    "index_builds", "lake", ("run_id", "level"), partition_by=(),
    description="every FAISS index build or extension: version, level, type, size, recall where measured, file",
    writers=(Writer("faiss_index", owns="run", expectations=False),))
EVALUATIONS = TableSpec(
    "evaluations", "lake", ("run_id", "metric", "level", "target", "label", "aggregation", "code_version"),
    partition_by=(), description="retrieval and segmentation metrics per run and code_version",
    writers=(Writer("retrieval_eval", owns="run"), Writer("segmentation_eval", owns="run"),
             Writer("retrieval_adapter", owns="run"), Writer("feedback", owns="run", where=(("target", REVIEWED_TARGET),))))
SEGMENTATIONS = TableSpec(
    "segmentations", "lake", ("series_instance_uid", "sop_instance_uid", "structure", "code_version"),
    description="one row per series (3D) or image (2D) and prompted structure, with its mask files",
    writers=(Writer("segmentations"),))
REPORTS = TableSpec(
    "reports", "lake", ("study_instance_uid", "finding_index", "code_version"),
    description="CXRReportGen findings per chest X-ray study: sentence, boxes (0-1 and pixels), or a failed study",
    writers=(Writer("reports", expectations=False),))
STUDY_ARRIVALS = TableSpec(
    "study_arrivals", "lake", ("source", "study_key"), partition_by=(),
    description="per network source and study (keyed digest): expected and received instances, complete or not")
EXPORTS = TableSpec(
    "exports", "lake", ("batch", "study_instance_uid"),
    description="per batch and de-identified study: where it was exported (STOW-RS or C-STORE), the outcome, "
                "counts sent and confirmed, and its FHIR ImagingStudy file",
    writers=(Writer("export", expectations=False),))
RUNS = TableSpec(
    "runs", "lake", ("run_id", "stage"), partition_by=(),
    description="per Dagster run and stage: outcome, rows processed, seconds")
AUDIT_LOG = TableSpec(
    "audit_log", "lake", ("event_id",), partition_by=(),
    description="PHI-free record of restricted reads, CLI actions and run outcomes (who, when, counts)")

DRIFT = TableSpec(
    "drift", "lake", ("batch", "code_version"),
    description="per batch and embedding code_version: MMD² (permutation p-value) against the reference window, "
                "its calibrated threshold, per-dimension mean/variance shift and the out-of-distribution fraction",
    writers=(Writer("embedding_drift"),))
OOD_SCORES = TableSpec(
    "ood_scores", "lake", ("sop_instance_uid", "frame", "code_version"),
    description="per image and embedding code_version: distance to the k-th nearest reference vector, calibrated",
    writers=(Writer("embedding_drift"),))

FEEDBACK = TableSpec(
    "feedback", "lake", ("feedback_id",), partition_by=(),
    description="reviewer verdicts on search hits and masks (correct, wrong, corrected label): pseudonymous ids, "
                "reviewer and time",
    writers=(Writer("feedback", owns="all"),))

TABLES: dict[str, TableSpec] = {t.name: t for t in (
    RAW_INSTANCES, QUARANTINE, DEID_INSTANCES, DEID_AUDIT, DEID_CROSSWALK, SERIES, STUDIES, IMAGES, VOLUMES, EMBEDDINGS,
    SERIES_EMBEDDINGS, LABELS, INDEX_BUILDS, EVALUATIONS, SEGMENTATIONS, REPORTS, STUDY_ARRIVALS, EXPORTS, RUNS, AUDIT_LOG, FEEDBACK, DRIFT, OOD_SCORES)}


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
