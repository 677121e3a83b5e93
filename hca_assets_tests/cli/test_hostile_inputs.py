"""The hostile-input suite (``hostile.py``, ≥ 40 crafted files) through ``hca deid`` and through landing + ``hca
ingest``, as a user runs them (real processes, none over 1.5 GiB resident): per file de-identified or
quarantined with one of its expected reasons, the good files beside them unaffected, nothing written outside the
data folder, the ledger balanced, no PHI in any output."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pydicom
import pytest

from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets_tests import crafted
from hca_assets_tests.hostile import WRITTEN, HostileFile, hostile_files, run_hca

PEAK_MIB = 1536  # the bound on any one process (the command, its workers, dbt)


@pytest.fixture(scope="module")
def suite() -> list[HostileFile]:
    files = hostile_files()
    assert len(files) >= 40 and len({f.name for f in files}) == len(files)
    return files


def _phi_free(path: Path) -> None:
    data = path.read_bytes()
    for value in crafted.PHI:
        assert value.encode() not in data, (path.name, "PHI")


def _outside_untouched(root: Path) -> None:
    assert list((root / "home").iterdir()) == [] and list((root / "cwd").iterdir()) == []


def test_hca_deid_on_the_suite(suite: list[HostileFile], tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in suite:
        (inputs / f.name).write_bytes(f.data)
    done, peak = run_hca(["deid", str(inputs), str(tmp_path / "out"), "--quarantine", str(tmp_path / "q"), "--workers", "2"],
                      tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert peak <= PEAK_MIB, peak  # some inputs not de-identified: exit 1, no traceback
    assert "Traceback" not in done.stderr
    (report,) = (tmp_path / "q" / "cli").glob("rejected-*.csv")
    reasons = {r["sha256"]: r["reason"] for r in csv.DictReader(report.open())}
    written = {pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "out").rglob("*.dcm")}
    for f in suite:
        outcome = reasons.get(hashlib.sha256(f.data).hexdigest(), WRITTEN)
        assert outcome in f.deid, (f.name, outcome)
    assert len(written) == sum(hashlib.sha256(f.data).hexdigest() not in reasons for f in suite)
    assert f"{len(written)} file(s) written" in done.stdout
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert not path.name.startswith("."), path  # no temporary file left
            _phi_free(path)
            assert pydicom.dcmread(path).pixel_array.size  # every output reads back with its pixels
    _outside_untouched(tmp_path)


def test_landing_and_hca_ingest_on_the_suite(suite: list[HostileFile], tmp_path: Path) -> None:
    landing = tmp_path / "data" / "landing" / "hostile"
    landing.mkdir(parents=True)
    for f in suite:
        (landing / f.name).write_bytes(f.data)
    done, peak = run_hca(["ingest", "--settle-seconds", "0"], tmp_path)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert peak <= PEAK_MIB, peak
    settings = Settings(data_dir=str(tmp_path / "data"))
    raw = {r["sha256"]: r["sop_instance_uid"] for r in tables.RAW_INSTANCES.read(settings).to_pylist()}
    quarantine = tables.QUARANTINE.read(settings).to_pylist()
    refused = {(r["stage"], r["sha256"]): r["reason"] for r in quarantine}
    crosswalk = {r["original"]: r["pseudonym"] for r in tables.DEID_CROSSWALK.read(settings).to_pylist()
                 if r["kind"] == "instance"}
    published = set(tables.DEID_INSTANCES.read(settings, columns=["sop_instance_uid"]).column(0).to_pylist())
    for f in suite:
        sha = hashlib.sha256(f.data).hexdigest()
        if sha in raw:
            outcome = refused.get(("deid_dicom", sha)) or (WRITTEN if crosswalk.get(raw[sha]) in published else "lost")
        else:
            outcome = refused.get(("raw_dicom", sha), "lost")
        assert outcome in f.ingest, (f.name, outcome)
    assert len(quarantine) + len(published) == len(suite)  # the ledger: every file landed is in exactly one place
    for path in (tmp_path / "data" / "deid").rglob("*.dcm"):
        _phi_free(path)
    for table in tables.lake_tables():
        if table.name in ("quarantine", "deid_instances", "deid_audit", "images", "series", "studies"):
            dump = str(table.read(settings).to_pylist())
            assert not any(v in dump for v in crafted.PHI), table.name
    _outside_untouched(tmp_path)
