"""Batch ingest core: counts add up, duplicates resolved, quarantined files kept under PHI-free names."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from hca_assets.dicom.enum import QuarantineReason
from hca_assets.ingest import ingest_batch
from hca_assets.landing import claim
from hca_assets.synthetic.bad_inputs import write_bad_inputs

KEY = b"k" * 16


def test_batch_with_bad_inputs(small_study: tuple[Path, Path], phi_strings: list[str], tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(small_study[0], landing / "good")
    valid = min((landing / "good").rglob("ct/0001.dcm"))
    expected = write_bad_inputs(valid, landing / "zz_bad", unreadable_dir=False)
    batch = claim(landing, tmp_path / "raw", settle_seconds=0)
    assert batch is not None
    out = ingest_batch(batch, key=KEY, quarantine_root=tmp_path / "q", known={}, workers=2)

    n_good = len(list((batch.files_dir / "good").rglob("*.dcm")))
    assert out.instances.num_rows == n_good
    assert out.received == out.instances.num_rows + out.quarantine.num_rows
    assert out.reasons == dict(sorted({str(r): list(expected.values()).count(r) for r in set(expected.values())}.items()))
    for row in out.quarantine.to_pylist():
        kept = tmp_path / "q" / row["kept_as"]
        assert kept.is_file() and hashlib.sha256(kept.read_bytes()).hexdigest() == row["sha256"]
        assert not [s for s in phi_strings if s in row["message"] or s in row["kept_as"]]
    assert len(set(out.instances.column("sop_instance_uid").to_pylist())) == n_good


def test_rerun_is_identical_and_cross_batch_duplicates_are_caught(small_study: tuple[Path, Path], tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(small_study[0], landing)
    batch = claim(landing, tmp_path / "raw", settle_seconds=0)
    assert batch is not None
    first = ingest_batch(batch, key=KEY, quarantine_root=tmp_path / "q", known={})
    second = ingest_batch(batch, key=KEY, quarantine_root=tmp_path / "q", known={})
    assert first.instances.drop(["ingested_at"]).equals(second.instances.drop(["ingested_at"]))

    known = dict(zip(first.instances.column("sop_instance_uid").to_pylist(),
                     first.instances.column("sha256").to_pylist(), strict=True))
    shutil.copytree(small_study[0], landing / "again")
    resent = claim(landing, tmp_path / "raw", settle_seconds=0)
    assert resent is not None
    out = ingest_batch(resent, key=KEY, quarantine_root=tmp_path / "q", known=known)
    assert out.instances.num_rows == 0
    assert out.reasons == {str(QuarantineReason.DUPLICATE_INSTANCE): first.instances.num_rows}
