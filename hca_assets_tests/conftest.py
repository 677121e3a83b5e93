"""Shared fixtures: isolated settings, a fixed key, small synthetic studies, the public DICOM test files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from hca_assets.config import Settings
from hca_assets.synthetic import GeneratorOptions, generate

TEST_KEY = "test-key-0123456789abcdef"
SMALL = GeneratorOptions(patients=1, seed=7, ct_slices=12, ct_size=64, cxr_size=128, mr_slices=8, mr_size=64)


@pytest.fixture(autouse=True)
def _fixed_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fixed key, and a data folder of the test's own (the `settings` fixture's): no test, nor a CLI it starts,
    writes into the checkout's data/, where `make` points HCA_DATA_DIR (a later `make demo` would refuse it)."""
    monkeypatch.setenv("HCA_DEID_KEY", TEST_KEY)
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), settle_seconds=0.0, workers=1)


@pytest.fixture(scope="session")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One small synthetic patient: (dicom folder, truth folder). Read-only: copy before claiming."""
    root = tmp_path_factory.mktemp("small_study")
    generate(root / "dicom", root / "truth", SMALL)
    return root / "dicom", root / "truth"


def manifest_strings(truth: Path) -> list[str]:
    """The identifying strings a generated study carries (its ``phi_manifest.json``), those long enough (≥ 4
    characters) to look for in output bytes without matching by chance."""
    manifest = json.loads((truth / "phi_manifest.json").read_text())
    return [s for s in manifest["strings"] if len(s) >= 4]


@pytest.fixture(scope="session")
def phi_strings(small_study: tuple[Path, Path]) -> list[str]:
    return manifest_strings(small_study[1])


@pytest.fixture
def leaky_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sabotage de-identification so that PatientAddress survives (in this process): gates must catch it."""
    from hca_assets.dicom import deid

    real_apply = deid._apply

    def leaky_apply(ds, ctx, path):  # type: ignore[no-untyped-def]
        address = None if path else ds.get("PatientAddress")
        real_apply(ds, ctx, path)
        if address:
            ds.PatientAddress = address

    monkeypatch.setattr(deid, "_apply", leaky_apply)
    monkeypatch.setattr(deid, "_clean_residue", lambda ds, found, pseudo: 0)  # and the clean-up where values survive


def public_test_files() -> list[Path]:
    """pydicom's own test files and the pydicom-data package's files (read directly: no downloads)."""
    pydicom_dir = Path(pydicom.__file__).parent / "data" / "test_files"
    import data_store

    store_dir = Path(data_store.__file__).parent / "data"
    files = [p for p in sorted(pydicom_dir.rglob("*")) + sorted(store_dir.glob("*"))
             if p.is_file() and p.suffix not in (".py", ".pyc", ".gz", ".bz2", ".json", ".txt", ".zip")]
    return files


@pytest.fixture
def pacs() -> Iterator[dict[str, object]]:
    """A real Orthanc (REST, DICOMweb and DICOM port) on loopback for this test, awaited until it answers."""
    from hca_assets_tests.services import orthanc

    with orthanc() as server:
        yield server
