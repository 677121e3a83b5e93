"""deid_staged → deid_dicom through Dagster: stage, blocking re-verification, publish; PHI never leaves."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pydicom
import pytest
from PIL import Image

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.ingest import raw_dicom
from hca_assets.config import Settings
from hca_assets.dicom import verify as verify_module
from hca_assets.dicom.contact_sheet import OUTLINE
from hca_assets.lake import discover_tables, read_table
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.sources.claims import claim
from hca_assets_tests.conftest import SMALL


def run(settings: Settings, instance: dg.DagsterInstance, key: str) -> dg.ExecuteInJobResult:
    return dg.materialize(
        [raw_dicom, deid_staged, deid_dicom], instance=instance, partition_key=key, raise_on_error=False,
        resources={"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey()},
    )


@pytest.fixture
def batch(settings: Settings, small_study: tuple[Path, Path]) -> str:
    shutil.copytree(small_study[0], Path(settings.landing))
    claimed = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert claimed is not None
    return claimed.key


def test_stage_check_publish_idempotent_and_phi_free(
    settings: Settings, batch: str, small_study: tuple[Path, Path], phi_strings: list[str]
) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch])
        counts = []
        for _ in range(2):
            result = run(settings, instance, batch)
            assert result.success
            assert all(e.passed for e in result.get_asset_check_evaluations())
            counts.append({name: read_table(uri).num_rows for name, uri in discover_tables(settings.lake).items()})
        assert counts[0] == counts[1] and counts[0]["deid_instances"] == SMALL.instances_per_patient
        metadata = json.dumps([{k: str(v.value) for k, v in m.metadata.items()}
                               for node in ("deid_staged", "deid_dicom")
                               for m in result.asset_materializations_for_node(node)])
        (published_md,) = [m.metadata for m in result.asset_materializations_for_node("deid_dicom")]
    sheet = str(published_md["redacted_frames"].value)  # the ultrasound's banner was blacked out: shown to reviewers
    assert sheet.startswith("![") and "data:image/png;base64," in sheet
    png = Image.open(io.BytesIO(base64.b64decode(sheet.split("base64,", 1)[1].rstrip(")"))))
    assert png.format == "PNG" and (np.asarray(png.convert("RGB")) == OUTLINE).all(axis=-1).any()  # boxes outlined
    assert 0 < float(published_md["max_blanked_share"].value) < 0.2
    published = sorted(Path(settings.deid, batch).rglob("*.dcm"))
    assert len(published) == SMALL.instances_per_patient
    assert not (Path(settings.deid_staging) / batch).exists()  # staging emptied by publishing
    strings = [s.lower().encode() for s in phi_strings]
    for path in published:
        data = path.read_bytes().lower()
        assert not [s for s in strings if s in data], path.name
    lake_text = json.dumps([read_table(uri).to_pylist() for uri in discover_tables(settings.lake).values()], default=str)
    assert not [s for s in phi_strings if s in lake_text] and not [s for s in phi_strings if s in metadata]
    crosswalk = read_table(settings.table_uri("deid_crosswalk", restricted=True)).to_pylist()
    assert {r["kind"] for r in crosswalk} == {"patient", "study", "series", "instance"}
    assert "deid_crosswalk" not in discover_tables(settings.lake)


@pytest.mark.usefixtures("leaky_engine")
def test_failed_blocking_check_publishes_nothing(settings: Settings, batch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the engine sabotaged (keeps PatientAddress) and its own gate off, the blocking check must stop publication."""
    monkeypatch.setattr(verify_module, "verify_output", lambda *a, **k: [])  # the engine's own gate, disabled
    in_process = dataclasses.replace(settings, file_timeout_seconds=0)  # no timeout: files run where the patches are
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch])
        result = run(in_process, instance, batch)
    assert not result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "no_phi_residue" in failed
    assert not result.asset_materializations_for_node("deid_dicom")
    assert not Path(settings.deid).exists() or not any(Path(settings.deid).rglob("*.dcm"))
    assert "deid_instances" not in discover_tables(settings.lake)


def test_pixel_check_stops_a_batch_whose_pixels_show_its_own_phi(settings: Settings, batch: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's text cleaning sabotaged (it reports no text and leaves the pixels as they were): the headers
    are clean, so only the check's own OCR of the pixels (names, IDs, birth dates of the originals) can stop it."""
    from hca_assets.dicom import deid as deid_module
    from hca_assets.dicom.burned_in import BurnedInResult, BurnedInStatus

    def claims_clean(ds: pydicom.Dataset, *args: object, **kwargs: object) -> BurnedInResult:
        ds.BurnedInAnnotation = "NO"  # as if it had looked
        return BurnedInResult(BurnedInStatus.NO_TEXT_FOUND, screened_frames=1)

    monkeypatch.setattr(deid_module, "clean_burned_in_text", claims_clean)
    in_process = dataclasses.replace(settings, file_timeout_seconds=0, workers=1)  # files run where the patch is
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch])
        result = run(in_process, instance, batch)
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_phi_residue"]
    assert not check.passed and not result.success, {k: v.value for k, v in check.metadata.items()}
    assert check.metadata["files_with_residue"].value == 0  # headers and bytes: clean
    assert check.metadata["files_with_readable_phi_in_pixels"].value >= 1  # the ultrasound's banner
    assert check.metadata["files_pixels_read"].value >= settings.deid_check_pixels
    assert not result.asset_materializations_for_node("deid_dicom")


def test_pixel_check_passes_what_the_engine_cleaned(settings: Settings, batch: str) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch])
        result = run(settings, instance, batch)
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_phi_residue"]
    assert check.passed and check.metadata["files_pixels_read"].value >= 1
    assert check.metadata["files_with_readable_phi_in_pixels"].value == 0
