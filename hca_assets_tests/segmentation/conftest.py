"""Shared by the `hca segment` tests: one generated patient (ct/, cxr/, mr/, us/ series) and the command runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hca_assets.cli import main
from hca_assets.synthetic import GeneratorOptions, generate

OPTIONS = GeneratorOptions(patients=1, seed=3, ct_slices=12, ct_size=96, cxr_size=128, mr_slices=8, mr_size=64,
                           lesion_rate=0.0)


@pytest.fixture(scope="session")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one patient's folder: ct/, cxr/, mr/, us/ (one series each). Tests copy before they change a file."""
    root = tmp_path_factory.mktemp("segment_patient")
    generate(root / "dicom", root / "truth", OPTIONS)
    (folder,) = (root / "dicom").iterdir()
    return folder


def run_segment(*args: object) -> Result:
    """``hca segment ARGS`` in-process."""
    return CliRunner().invoke(main, ["segment", *map(str, args)])
