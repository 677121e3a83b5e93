"""`hca deid IN OUT` with its defaults on real public DICOM (hca_assets_tests/realdata.py): every file comes
out unless it truly cannot be made safe, with no OCR-readable header PHI left in its pixels and no header
value left outside them. The heavy cines (> 10 MB) are left to `make bench`; the rest run here."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from hca_assets.cli import main
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets_tests.conftest import TEST_KEY
from hca_assets_tests.realdata import RealCase, header_leaks, readable_phi, real_corpus

CASES = [c for c in real_corpus() if not c.heavy]


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | None]:
    """Case name → its output file (None if none was written), from one `hca deid` run over the corpus."""
    root = tmp_path_factory.mktemp("real")
    source, out = root / "in", root / "out"
    source.mkdir()
    for case in CASES:
        case.copy_to(source)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HCA_DATA_DIR", str(root / "data"))
        mp.setenv("HCA_DEID_KEY", TEST_KEY)
        result = CliRunner().invoke(main, ["deid", str(source), str(out), "--workers", "2"])
    assert result.exit_code in (0, 1), result.output
    pseudo = Pseudonymizer(TEST_KEY.encode())
    outputs: dict[str, Path | None] = {}
    for case in CASES:
        sop = str(pydicom.dcmread(source / f"{case.name}.dcm", stop_before_pixels=True, force=True).get("SOPInstanceUID", ""))
        found = list(out.rglob(f"{pseudo.uid(sop)}.dcm")) if sop else []
        outputs[case.name] = found[0] if found else None
    return outputs


def test_the_corpus_is_real_and_varied() -> None:
    assert len(CASES) >= 20
    assert {c.modality for c in CASES} >= {"US", "CT", "MR", "CR", "XA"}
    assert {c.photometric for c in CASES} >= {"RGB", "PALETTE COLOR", "YBR_FULL_422", "MONOCHROME1", "MONOCHROME2"}
    assert sum(bool(c.burned_in_phi) for c in CASES) >= 5  # header PHI burned into the pixels of the originals


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_real_file_deidentified_without_readable_or_header_phi(case: RealCase, deidentified: dict[str, Path | None]) -> None:
    output = deidentified[case.name]
    if case.expected == "quarantined":  # only what cannot be made safe (here: no UIDs to pseudonymise)
        assert output is None
        return
    assert output is not None, f"{case.name} was not de-identified"
    data = output.read_bytes()
    assert header_leaks(case.data(), data) == []
    assert readable_phi(case.data(), data) == []
    if case.burned_in_text:
        ds = pydicom.dcmread(output)
        assert ds.BurnedInAnnotation == "NO" and "113101" in {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
