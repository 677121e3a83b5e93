"""Apache Spark reads the lake unchanged: every Delta table of a small materialized lake, read by pyspark in
local mode from its Delta log and Parquet files, has the row count, keys and column types DuckDB sees.

Spark replays the Delta log itself (JSON commits, Parquet checkpoint, add/remove per file), takes the schema
from the log's ``schemaString`` (Spark's own StructType JSON) and reads the active files; it needs no help
from deltalake. The delta-spark JARs are not used: they are published on Maven Central only, which this
project's machines cannot reach, so the test does by hand the replay those JARs do (reader protocol 1 only,
which the test asserts: no deletion vectors or column mapping that a plain replay would misread).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from hca_assets.assets.catalog import series, studies
from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.embeddings import embedding_drift, embeddings, labels
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.search import faiss_index, retrieval_eval
from hca_assets.assets.segmentation import segmentations_asset
from hca_assets.config import Settings
from hca_assets.lake import audit, warehouse
from hca_assets.lake import registry as tables
from hca_assets.lake.maintenance import maintain_lake
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import (
    EmbeddingEndpoint,
    PseudonymKey,
    SegmentationEndpoint,
    SettingsResource,
)
from hca_assets.sensors.run_status import record_run
from hca_assets.sources.claims import claim
from hca_assets.synthetic import generate
from hca_assets.synthetic.bad_inputs import write_bad_inputs
from hca_assets_tests.conftest import SMALL

pytestmark = pytest.mark.spark

PER_BATCH = [raw_dicom, deid_staged, deid_dicom, series, studies, images, embeddings, labels, segmentations_asset(Settings()),
             embedding_drift]
STUDY = dataclasses.replace(SMALL, patients=2, seed=11)  # as test_search_assets: retrieval_eval passes


# tables this one-batch lake leaves empty — their producers need a server (C-STORE / DICOMweb peers, a PACS, the
# CXRReportGen endpoint), a reviewer, or earlier batches (OOD scores are against a reference window): one row of each
# column's type, written through the registry as their producers write
NOT_WRITTEN_HERE = ("study_arrivals", "exports", "reports", "feedback", "ood_scores")


def _one_row(schema: pa.Schema) -> pa.Table:
    def value(t: pa.DataType) -> object:
        if pa.types.is_list(t):
            return [value(t.value_type)]
        if pa.types.is_timestamp(t):
            return datetime.now(UTC)
        return {pa.types.is_string: "x", pa.types.is_integer: 1, pa.types.is_floating: 0.5,
                pa.types.is_boolean: True}[next(k for k in (pa.types.is_string, pa.types.is_integer,
                                                               pa.types.is_floating, pa.types.is_boolean) if k(t))]
    return pa.Table.from_pylist([{f.name: value(f.type) for f in schema}], schema=schema)


def _materialize_lake(settings: Settings) -> None:
    """Every table of the registry written by the real assets on two small synthetic patients and bad inputs, then
    maintained as a long-lived lake is (a checkpoint, compaction)."""
    generate(Path(settings.landing), Path(settings.truth_file).parent, STUDY)
    write_bad_inputs(min(Path(settings.landing).rglob("ct/0001.dcm")), Path(settings.landing, "zz_bad"),
                     unreadable_dir=False)  # quarantine rows
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    storage = SettingsResource.from_settings(settings)
    resources = {"storage": storage, "pseudonym_key": PseudonymKey(), "embedding_endpoint": EmbeddingEndpoint(),
                 "segmentation_endpoint": SegmentationEndpoint()}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        per_batch = dg.materialize(PER_BATCH, instance=instance, partition_key=batch.key, resources=resources)
        whole = dg.materialize([faiss_index, retrieval_eval], instance=instance, resources=resources)
        assert per_batch.success and whole.success
        for result in (per_batch, whole):
            run = instance.get_run_by_id(result.run_id)
            assert run is not None
            for _ in range(2):  # the second call replaces the run's rows: the log gets remove actions to replay
                record_run(instance, run, storage)
    for name in NOT_WRITTEN_HERE:
        spec = tables.spec(name)
        match = {c: "x" for c in spec.partition_by} or {spec.keys[0]: "x"}
        spec.write(settings, _one_row(spec.schema), match=match)
    audit.record(settings, audit.AuditEvent(event="cli", command="sql", outcome="ok", counts={"rows": 1}))
    DeltaTable(tables.RUNS.uri(settings)).create_checkpoint()  # as delta-rs does every 100 commits of a long-lived lake
    assert sum(m.files_compacted for m in maintain_lake(settings)) > 0  # compaction commits after the checkpoint


def _spark_session():  # type: ignore[no-untyped-def]
    """A one-core, low-memory local Spark on loopback, with no UI."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (SparkSession.builder.master("local[1]").appName("hca-lake-read")
            .config("spark.driver.memory", "512m").config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "1").config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false").getOrCreate())


def _spark_read_delta(spark, uri: str):  # type: ignore[no-untyped-def]
    """The Delta table at ``uri`` as Spark reads it: log replay → active Parquet files + the log's schema."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType
    from pyspark.sql.window import Window

    log = Path(uri, "_delta_log")
    start = -1
    parts = []
    if (log / "_last_checkpoint").is_file():
        start = json.loads((log / "_last_checkpoint").read_text())["version"]
        checkpoint = spark.read.parquet(str(log / f"{start:020d}.checkpoint.parquet"))
        parts.append(checkpoint.withColumn("version", F.lit(start).cast("long")))
    commits = [str(p) for p in sorted(log.glob("*.json")) if int(p.stem) > start]
    if commits:
        parts.append(spark.read.json(commits).withColumn(
            "version", F.regexp_extract(F.input_file_name(), r"(\d+)\.json$", 1).cast("long")))
    actions = None
    latest: dict[str, tuple[int, dict]] = {}  # metaData / protocol: the newest of each
    for part in parts:
        for kind in ("add", "remove"):
            if kind in part.columns:
                rows = part.where(F.col(kind).isNotNull()).select(
                    F.col(f"{kind}.path").alias("path"), "version", F.lit(kind).alias("kind"))
                actions = rows if actions is None else actions.unionByName(rows)
        for kind in ("metaData", "protocol"):
            newest = (part.where(F.col(kind).isNotNull()).select("version", F.to_json(kind).alias("action"))
                      .orderBy(F.desc("version")).first()) if kind in part.columns else None
            if newest is not None and newest["version"] >= latest.get(kind, (-1, {}))[0]:
                latest[kind] = (newest["version"], json.loads(newest["action"]))
    protocol, metadata = latest["protocol"][1], latest["metaData"][1]
    assert protocol["minReaderVersion"] == 1, f"{uri}: reader features {protocol} need the delta-spark reader"
    schema = StructType.fromJson(json.loads(metadata["schemaString"]))
    files = []
    if actions is not None:  # a table created empty has a schema and no file yet
        by_file = Window.partitionBy("path").orderBy(F.desc("version"))
        live = actions.withColumn("n", F.row_number().over(by_file)).where("n = 1 AND kind = 'add'")
        files = [str(Path(uri, unquote(r["path"]))) for r in live.select("path").collect()]
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).option("basePath", uri).parquet(*files)


def _duckdb_type(t) -> str:  # type: ignore[no-untyped-def]
    """The DuckDB name of Spark type ``t`` (what DESCRIBE prints), to compare schemas across engines."""
    from pyspark.sql import types as T

    simple = {T.StringType: "VARCHAR", T.LongType: "BIGINT", T.IntegerType: "INTEGER", T.ShortType: "SMALLINT",
              T.ByteType: "TINYINT", T.DoubleType: "DOUBLE", T.FloatType: "FLOAT", T.BooleanType: "BOOLEAN",
              T.TimestampType: "TIMESTAMP WITH TIME ZONE", T.TimestampNTZType: "TIMESTAMP", T.DateType: "DATE",
              T.BinaryType: "BLOB"}
    if type(t) in simple:
        return simple[type(t)]
    if isinstance(t, T.DecimalType):
        return f"DECIMAL({t.precision},{t.scale})"
    if isinstance(t, T.ArrayType):
        return f"{_duckdb_type(t.elementType)}[]"
    if isinstance(t, T.MapType):
        return f"MAP({_duckdb_type(t.keyType)}, {_duckdb_type(t.valueType)})"
    if isinstance(t, T.StructType):
        return "STRUCT(" + ", ".join(f"{f.name} {_duckdb_type(f.dataType)}" for f in t.fields) + ")"
    raise AssertionError(f"no DuckDB counterpart for Spark type {t}")


def _normalized(duck_type: str) -> str:
    """DuckDB's type text without identifier quotes and fixed array sizes (Parquet has variable lists only)."""
    return re.sub(r"\[\d+\]", "[]", duck_type.replace('"', ""))


def test_spark_reads_every_table_as_duckdb_does(settings: Settings) -> None:
    _materialize_lake(settings)
    registered = [*tables.lake_tables(), *(tables.spec(n) for n in sorted(tables.restricted_names()))]
    missing = [t.name for t in registered if not t.exists(settings)]
    assert not missing, f"the lake fixture wrote no {missing}: Spark must read every table"
    con = warehouse.connect(settings, restricted=True)
    spark = _spark_session()
    try:
        for table in registered:
            frame = _spark_read_delta(spark, table.uri(settings))
            (duck_rows,) = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()
            assert frame.count() == duck_rows > 0, table.name
            duck_types = {name: _normalized(kind) for name, kind, *_ in con.execute(f'DESCRIBE "{table.name}"').fetchall()}
            spark_types = {f.name: _duckdb_type(f.dataType) for f in frame.schema.fields}
            assert spark_types == duck_types, table.name
            keys = ", ".join(f'"{k}"' for k in table.keys)
            duck_keys = sorted(con.execute(f'SELECT {keys} FROM "{table.name}"').fetchall(), key=repr)
            spark_keys = sorted((tuple(r) for r in frame.select(*table.keys).collect()), key=repr)
            assert spark_keys == duck_keys, table.name
    finally:
        spark.stop()
        con.close()
