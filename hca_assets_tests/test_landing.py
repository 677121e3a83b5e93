"""Claims: atomic, never twice, never lost — also when the claimer dies halfway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hca_assets import landing
from hca_assets.landing import claim, committed_batches, load_batch, recover


def make_files(root: Path, n: int) -> list[str]:
    names = [f"study{i % 3}/file{i:03d}.dcm" for i in range(n)]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    return names


def test_claim_moves_everything_once(tmp_path: Path) -> None:
    names = make_files(tmp_path / "landing", 7)
    batch = claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=0)
    assert batch is not None and sorted(batch.files) == sorted(names) and batch.received == 7
    assert all((batch.files_dir / n).read_bytes() == n.encode() for n in names)
    assert not any(p.is_file() for p in (tmp_path / "landing").rglob("*"))
    assert claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=0) is None
    assert committed_batches(tmp_path / "raw") == [batch.key]
    assert load_batch(tmp_path / "raw", batch.key) == batch


def test_unsettled_and_in_progress_files_wait(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "fresh.dcm").write_bytes(b"x")
    (tmp_path / "landing" / "upload.dcm.part").write_bytes(b"x")
    (tmp_path / "landing" / ".hidden").write_bytes(b"x")
    assert claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=60) is None
    batch = claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=60, now=time.time() + 120)
    assert batch is not None and batch.files == ("fresh.dcm",)
    assert (tmp_path / "landing" / "upload.dcm.part").exists()


def test_crash_mid_claim_loses_nothing_and_duplicates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = make_files(tmp_path / "landing", 10)
    real_rename = os.rename
    calls = {"n": 0}

    def dying_rename(src: str | Path, dst: str | Path) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("process killed")
        real_rename(src, dst)

    monkeypatch.setattr(landing.os, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=0)
    monkeypatch.setattr(landing.os, "rename", real_rename)
    assert committed_batches(tmp_path / "raw") == []  # nothing half-committed

    recovered = recover(tmp_path / "raw")
    rest = claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=0)
    assert len(recovered) == 1 and rest is not None
    claimed = list(recovered[0].files) + list(rest.files)
    assert sorted(claimed) == sorted(names)  # every file exactly once
    assert len(recovered[0].files) == 4
    assert recover(tmp_path / "raw") == []


def test_crash_after_staging_before_commit_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_files(tmp_path / "landing", 3)

    def die(*_: object) -> None:
        raise SystemExit("killed before commit")

    monkeypatch.setattr(landing, "_commit", die)
    with pytest.raises(SystemExit):
        claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=0)
    monkeypatch.undo()
    assert committed_batches(tmp_path / "raw") == []
    (batch,) = recover(tmp_path / "raw")
    assert batch.received == 3 and committed_batches(tmp_path / "raw") == [batch.key]


UNREADABLE_SCRIPT = """
import sys
from pathlib import Path
from hca_assets.landing import claim
b = claim(Path(sys.argv[1]), Path(sys.argv[2]), settle_seconds=0)
print(b.key, len(b.files), len(b.unreadable))
"""


def test_unreadable_directory_is_moved_whole_and_recorded() -> None:
    """Root reads everything, so the claim runs as an unprivileged user, as a real deployment would."""
    root = Path(tempfile.mkdtemp(prefix="hca-unreadable-"))
    try:
        root.chmod(0o777)
        (root / "landing").mkdir(mode=0o777)
        (root / "raw").mkdir(mode=0o777)
        (root / "landing" / "ok.dcm").write_bytes(b"x")
        locked = root / "landing" / "locked"
        locked.mkdir()
        (locked / "inside.dcm").write_bytes(b"y")
        for p in (root / "landing", root / "raw", locked, root / "landing" / "ok.dcm", locked / "inside.dcm"):
            os.chmod(p, 0o777 if p.is_dir() else 0o666)
        locked.chmod(0o000)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        proc = subprocess.run([*drop, sys.executable, "-c", UNREADABLE_SCRIPT, str(root / "landing"), str(root / "raw")],
                             check=False, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout.split()
        key, n_files, n_unreadable = out[0], int(out[1]), int(out[2])
        assert (n_files, n_unreadable) == (1, 1)
        batch = load_batch(root / "raw", key)
        assert batch.unreadable == ("locked",)
        assert (locked / "inside.dcm").exists()  # left in place, nothing lost
        again = subprocess.run([*drop, sys.executable, "-c", UNREADABLE_SCRIPT.replace("print(b.key", "print(b is None) #"),
                                str(root / "landing"), str(root / "raw")], check=False, capture_output=True, text=True, env=env)
        assert again.stdout.strip() == "True", again.stderr  # reported once, not at every tick
        locked.chmod(0o777)  # once readable, its files are claimed like any others
        later = claim(root / "landing", root / "raw", settle_seconds=0)
        assert later is not None and later.files == ("locked/inside.dcm",) and later.unreadable == ()
    finally:
        for p in root.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(root)
