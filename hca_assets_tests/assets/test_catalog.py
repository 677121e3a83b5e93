"""series and studies through Dagster on a small synthetic patient, with a tilted / gapped / scout-mixed copy of
its CT; every asset reports table_uri, delta_version and row_count; the runs sensor writes each stage; keys are
unique in every table written; no PHI in series, studies, runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.compute as pc
import pydicom

from hca_assets.assets.catalog import series, studies
from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.ingest import raw_dicom
from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.sensors.run_status import record_run, run_success_audit
from hca_assets.sources.claims import claim

ASSETS = [raw_dicom, deid_staged, deid_dicom, series, studies]


def _faulty_ct_copy(ct_files: list[Path], target: Path) -> None:
    """The CT series as a new series whose slices are tilted 10° about x (the table still moves along z: the stack
    shears), one slice dropped, one position duplicated and a localizer added: each fault the QA must name."""
    target.mkdir(parents=True)
    uid = pydicom.uid.generate_uid()
    datasets = sorted((pydicom.dcmread(p) for p in ct_files), key=lambda ds: float(ds.ImagePositionPatient[2]))
    tilt = np.radians(10.0)
    for i, ds in enumerate(datasets):
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageOrientationPatient = [1, 0, 0, 0, np.cos(tilt), -np.sin(tilt)]  # tilted gantry, table moves along z
        if i == 3:
            continue  # a missing slice
        ds.save_as(target / f"{i:03d}.dcm")
        if i == 5:  # a second instance at the same position
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(target / f"{i:03d}b.dcm")
    scout = datasets[0]
    scout.SOPInstanceUID = pydicom.uid.generate_uid()
    scout.file_meta.MediaStorageSOPInstanceUID = scout.SOPInstanceUID
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    scout.save_as(target / "scout.dcm")


def test_series_studies_runs(settings: Settings, small_study: tuple[Path, Path], phi_strings: list[str]) -> None:
    landing = Path(settings.landing)
    shutil.copytree(small_study[0], landing)
    shutil.copytree(small_study[1], Path(settings.truth_file).parent)
    ct = [p for p in landing.rglob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"]
    _faulty_ct_copy(ct, landing / "faulty")
    batch = claim(landing, Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    storage = SettingsResource.from_settings(settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        result = dg.materialize(ASSETS, instance=instance, partition_key=batch.key,
                                resources={"storage": storage, "pseudonym_key": PseudonymKey()})
        assert result.success
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            assert {"table_uri", "delta_version", "dagster/row_count"} <= set(meta), event.asset_key
            assert Path(meta["table_uri"].value, "_delta_log").is_dir()
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        context = dg.build_run_status_sensor_context(
            sensor_name=run_success_audit.name, dagster_instance=instance, dagster_run=run,
            dagster_event=result.get_run_success_event(), resources={"storage": storage})
        run_success_audit(context)
        assert record_run(instance, run, storage) == len(ASSETS)  # idempotent: the run's rows replaced, not added

    rows = {r["series_instance_uid"]: r for r in tables.SERIES.read(settings).to_pylist()}
    published = tables.DEID_INSTANCES.read(settings).to_pylist()
    assert sum(r["instances"] for r in rows.values()) == len(published)
    clean_ct = next(r for r in rows.values() if r["modality"] == "CT" and not r["geometry_issues"])
    assert clean_ct["instances"] == len(ct) and clean_ct["slice_spacing_mm"] > 0 and clean_ct["gantry_tilt_deg"] == 0
    assert clean_ct["study_date"] is not None and clean_ct["manufacturer"] and clean_ct["pixel_spacing_row_mm"] > 0
    faulty = next(r for r in rows.values() if r["modality"] == "CT" and r["geometry_issues"])
    assert set(faulty["geometry_issues"]) == {"missing_slices", "duplicate_positions", "gantry_tilt", "localizers"}
    assert faulty["missing_slices"] == 1 and faulty["duplicate_positions"] == 1 and faulty["localizers"] == 1
    assert abs(faulty["gantry_tilt_deg"] - 10.0) < 0.05
    assert {r["modality"] for r in rows.values() if not r["slices"]} <= {"CR", "DX", "US"}  # planar: no stack

    study_rows = tables.STUDIES.read(settings).to_pylist()
    assert sum(s["series"] for s in study_rows) == len(rows)
    assert sum(s["series_with_geometry_issues"] for s in study_rows) == 1

    runs = tables.RUNS.read(settings).to_pylist()
    assert {r["stage"] for r in runs} == {a.key.to_user_string() for a in ASSETS}
    assert {r["outcome"] for r in runs} == {"success"} and {r["partition"] for r in runs} == {batch.key}
    assert next(r for r in runs if r["stage"] == "series")["instances"] == len(rows)
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in runs)

    for spec in tables.TABLES.values():  # the registry's keys identify rows in every table written
        table = spec.read(settings)
        if table.num_rows:
            keys = table.group_by(list(spec.keys)).aggregate([([], "count_all")])
            assert pc.max(keys.column("count_all")).as_py() == 1, spec.name
    for spec in (tables.SERIES, tables.STUDIES, tables.RUNS):
        text = json.dumps(spec.read(settings).to_pylist(), default=str).lower()
        assert not [s for s in phi_strings if s.lower() in text], spec.name
