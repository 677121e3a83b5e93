"""A changed key never splits a patient: refused before any row (assets and CLI), or rotated deliberately
with every pseudonym and date offset already given kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pydicom
import pytest
from pydicom.uid import generate_uid

from hca_assets._infra.keys import key_fingerprint
from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.ingest import raw_dicom
from hca_assets.config import Settings
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets.lake import read_table
from hca_assets.lake.keypin import lake_key, read_pin, rotate_key
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.sources.claims import claim
from hca_assets_tests.conftest import TEST_KEY

ROOT = Path(__file__).parents[2]
OTHER_KEY = "another-key-fedcba9876543210"
HCA = [str(Path(sys.executable).parent / "hca")]


def _run(settings: Settings, instance: dg.DagsterInstance, batch: str) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions(INGEST_BATCHES, [batch])
    return dg.materialize([raw_dicom, deid_staged, deid_dicom], instance=instance, partition_key=batch,
                          raise_on_error=False,
                          resources={"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey()})


def _claim(settings: Settings) -> str:
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    return batch.key


def _follow_up(study: Path, landing: Path) -> dict[str, str]:
    """A later visit of the same patient: three new instances in a new series of the first CT study."""
    series_uid = generate_uid()
    landing.mkdir(parents=True)
    originals = {}
    for i, path in enumerate(sorted(study.rglob("ct/*.dcm"))[:3]):
        ds = pydicom.dcmread(path)
        originals.update(patient=str(ds.PatientID), study=str(ds.StudyInstanceUID), series=series_uid,
                         study_date=str(ds.StudyDate))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(landing / f"followup-{i}.dcm")
    return originals


def _rows(settings: Settings, batch: str) -> dict[str, int]:
    tables = {"raw_instances": settings.table_uri("raw_instances", restricted=True),
              "deid_crosswalk": settings.table_uri("deid_crosswalk", restricted=True),
              "quarantine": settings.table_uri("quarantine"), "deid_instances": settings.table_uri("deid_instances"),
              "deid_audit": settings.table_uri("deid_audit")}
    return {name: read_table(uri, where={"batch": batch}).num_rows for name, uri in tables.items()}


def test_other_key_is_refused_before_any_row_then_rotation_keeps_every_pseudonym(
    settings: Settings, small_study: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(small_study[0], Path(settings.landing) / "first")
    with dg.instance_for_test() as instance:
        first = _claim(settings)
        assert _run(settings, instance, first).success
        originals = _follow_up(small_study[0], Path(settings.landing) / "later")
        second = _claim(settings)

        monkeypatch.setenv("HCA_DEID_KEY", OTHER_KEY)
        refused = _run(settings, instance, second)
        assert not refused.success
        failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
        text = str(failure.step_failure_data.error)
        assert "KeyRefused" in text and "hca rekey" in text and key_fingerprint(TEST_KEY.encode()) in text
        assert originals["patient"] not in text and OTHER_KEY not in text
        assert all(n == 0 for n in _rows(settings, second).values()), _rows(settings, second)
        assert not (Path(settings.deid_staging) / second).exists()

        assert rotate_key(settings) == (key_fingerprint(TEST_KEY.encode()), key_fingerprint(OTHER_KEY.encode()))
        assert _run(settings, instance, second).success
    assert _rows(settings, second)["deid_instances"] == 3

    crosswalk = read_table(settings.table_uri("deid_crosswalk", restricted=True)).to_pylist()
    by_batch = {b: {(r["kind"], r["original"]): (r["pseudonym"], r["date_offset_days"]) for r in crosswalk if r["batch"] == b}
                for b in (first, second)}
    for kind in ("patient", "study"):  # same person, same study: the pseudonym (and offset) of the first batch
        assert by_batch[second][(kind, originals[kind])] == by_batch[first][(kind, originals[kind])]
    new_key, old_key = Pseudonymizer(OTHER_KEY.encode()), Pseudonymizer(TEST_KEY.encode())
    assert by_batch[first][("patient", originals["patient"])][0] == old_key.patient_id(originals["patient"])
    assert new_key.patient_id(originals["patient"]) != old_key.patient_id(originals["patient"])  # would have split
    assert by_batch[second][("series", originals["series"])][0] == new_key.uid(originals["series"])  # new: new key

    published = {b: [pydicom.dcmread(p) for p in sorted(Path(settings.deid, b).rglob("*.dcm"))] for b in (first, second)}
    study = by_batch[first][("study", originals["study"])][0]
    earlier = {str(ds.StudyDate) for ds in published[first] if ds.StudyInstanceUID == study}
    later = {str(ds.StudyDate) for ds in published[second]}
    assert len(earlier) == 1 and later == earlier and later != {originals["study_date"]}  # the same shift, still shifted
    assert {ds.PatientID for ds in published[second]} == {ds.PatientID for ds in published[first]}


def _hca(args: list[str], settings: Settings, key: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"HCA_DATA_DIR": settings.data_dir, "HCA_DEID_KEY": key, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*HCA, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def _one_line_user_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr.strip()


def test_cli_refuses_short_and_unpinned_keys_in_one_line_and_rekey_rotates(settings: Settings, tmp_path: Path) -> None:
    landing = Path(settings.landing)
    landing.mkdir(parents=True)
    (landing / "waiting.dcm").write_bytes(b"not claimed while the key is refused")
    short = _one_line_user_error(_hca(["ingest"], settings, "short"))
    assert short == "Error: HCA_DEID_KEY must be at least 16 characters, got 5"

    lake_key(settings)  # the lake is pinned to TEST_KEY
    line = _one_line_user_error(_hca(["ingest"], settings, OTHER_KEY))
    assert key_fingerprint(TEST_KEY.encode()) in line and "hca rekey" in line and OTHER_KEY not in line
    assert (landing / "waiting.dcm").exists() and not Path(settings.raw_batches).exists()  # nothing claimed
    (tmp_path / "in").mkdir()
    _one_line_user_error(_hca(["deid", str(tmp_path / "in"), str(tmp_path / "out")], settings, OTHER_KEY))

    rekey = _hca(["rekey"], settings, OTHER_KEY)
    assert rekey.returncode == 0, rekey.stderr
    assert f"key {key_fingerprint(TEST_KEY.encode())} retired" in rekey.stdout
    pin = read_pin(Path(settings.key_pin))
    assert pin is not None and pin.fingerprint == key_fingerprint(OTHER_KEY.encode())
    assert pin.retired == (key_fingerprint(TEST_KEY.encode()),)
    _one_line_user_error(_hca(["deid", str(tmp_path / "in"), str(tmp_path / "out")], settings, TEST_KEY))  # retired now
