"""Batch ingest core: counts add up, duplicates resolved, quarantined files kept under PHI-free names."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hca_assets.config import Limits
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.sources.claims import claim
from hca_assets.stages.ingest import ingest_batch
from hca_assets.synthetic.bad_inputs import write_bad_inputs
from hca_assets_tests.crafted import PHI, oversized, rle_bomb

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


def test_over_limit_inputs_are_quarantined_with_their_reason(small_study: tuple[Path, Path], tmp_path: Path) -> None:
    """A decompression bomb and a (sparse) file over the size limit: quarantined undecoded; the huge one is
    kept as its sha256 + a PHI-free header excerpt, not copied."""
    landing = tmp_path / "landing"
    shutil.copytree(small_study[0], landing / "good")
    (landing / "bomb.dcm").write_bytes(rle_bomb(16384, 16384))
    oversized(landing / "huge.dcm", 16 * 2**20)
    batch = claim(landing, tmp_path / "raw", settle_seconds=0)
    assert batch is not None
    limits = Limits(max_file_bytes=6 * 2**20)
    out = ingest_batch(batch, key=KEY, quarantine_root=tmp_path / "q", known={}, workers=2, limits=limits)

    assert out.reasons == {"file_too_large": 1, "too_many_pixels": 1}
    assert out.instances.num_rows == len(list((batch.files_dir / "good").rglob("*.dcm")))
    rows = {r["reason"]: r for r in out.quarantine.to_pylist()}
    bomb = tmp_path / "q" / rows["too_many_pixels"]["kept_as"]
    assert hashlib.sha256(bomb.read_bytes()).hexdigest() == rows["too_many_pixels"]["sha256"]  # small: a full copy
    huge = rows["file_too_large"]
    assert huge["sha256"] == hashlib.sha256((batch.files_dir / "huge.dcm").read_bytes()).hexdigest()
    assert huge["kept_as"] == f"{batch.key}/{huge['sha256']}.header.json"
    text = (tmp_path / "q" / huge["kept_as"]).read_text()
    assert json.loads(text) == {"sha256": huge["sha256"], "file_size": 16 * 2**20, "bytes_parsed": 2**20,
                                "transfer_syntax": "1.2.840.10008.1.2.1", "rows": 256, "columns": 256, "frames": 1,
                                "samples_per_pixel": 1, "bits_allocated": 8}
    kept = [p for p in (tmp_path / "q").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in kept) < bomb.stat().st_size + 4096  # no copy of the huge file
    for row in rows.values():
        assert not [s for s in PHI if s in row["message"] or s in row["kept_as"]]
    assert not [s for s in PHI if s in text]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_past_the_timeout_becomes_a_quarantine_row(small_study: tuple[Path, Path], tmp_path: Path,
                                                         workers: int) -> None:
    """8 MiB of zeros after a valid instance take pydicom ~4 s to parse: stopped at a 1 s timeout, quarantined
    (copied whole: it is under the size limit), and every other file of the batch is still ingested."""
    landing = tmp_path / "landing"
    shutil.copytree(small_study[0], landing / "good")
    oversized(landing / "slow.dcm", 8 * 2**20)
    batch = claim(landing, tmp_path / "raw", settle_seconds=0)
    assert batch is not None
    out = ingest_batch(batch, key=KEY, quarantine_root=tmp_path / "q", known={}, workers=workers,
                       limits=Limits(file_timeout_seconds=1.0))

    assert out.reasons == {"timeout": 1}
    assert out.instances.num_rows == len(list((batch.files_dir / "good").rglob("*.dcm")))
    row = out.quarantine.to_pylist()[0]
    assert row["sha256"] == hashlib.sha256((batch.files_dir / "slow.dcm").read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "q" / row["kept_as"]).read_bytes()).hexdigest() == row["sha256"]
    assert "timeout" in row["message"]
