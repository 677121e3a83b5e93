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

from hca_assets.sources import claims as landing
from hca_assets.sources.claims import claim, committed_batches, load_batch, recover


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
from hca_assets.sources.claims import claim
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
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
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


def test_symlinks_are_refused_unread_and_reported_once(tmp_path: Path) -> None:
    (tmp_path / "landing" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    secret = tmp_path / "outside" / "secret.dcm"
    secret.write_bytes(b"not yours")
    (tmp_path / "landing" / "ok.dcm").write_bytes(b"x")
    (tmp_path / "landing" / "sub" / "link.dcm").symlink_to(secret)
    (tmp_path / "landing" / "dirlink").symlink_to(tmp_path / "outside", target_is_directory=True)
    batch = claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=0)
    assert batch is not None and batch.files == ("ok.dcm",)
    assert batch.symlinks == ("dirlink", "sub/link.dcm") and batch.received == 3
    assert not (batch.files_dir / "secret.dcm").exists() and secret.read_bytes() == b"not yours"
    assert all((batch.path / "refused" / s).is_symlink() for s in batch.symlinks)  # the links, not their targets
    assert claim(tmp_path / "landing", tmp_path / "raw", settle_seconds=0) is None  # reported once


def test_fifos_are_refused_unopened_and_emptied_folders_removed(tmp_path: Path) -> None:
    """A FIFO would block its reader: moved aside and reported (``not_regular_file``); the folders the claim
    emptied — one named after the patient — go with their files, also when a later claim finds nothing."""
    from hca_assets.stages.ingest import ingest_batch

    landing_dir = tmp_path / "landing"
    (landing_dir / "DOE^JOHN" / "series1").mkdir(parents=True)
    (landing_dir / "DOE^JOHN" / "series1" / "a.dcm").write_bytes(b"x")
    os.mkfifo(landing_dir / "pipe.dcm")
    (landing_dir / "empty_old").mkdir()
    batch = claim(landing_dir, tmp_path / "raw", settle_seconds=0)
    assert batch is not None and batch.files == ("DOE^JOHN/series1/a.dcm",) and batch.specials == ("pipe.dcm",)
    assert batch.received == 2 and list(landing_dir.iterdir()) == []
    rows = ingest_batch(batch, key=b"k" * 16, quarantine_root=tmp_path / "q", known={}).quarantine.to_pylist()
    assert [r["reason"] for r in rows if r["sha256"] is None] == ["not_regular_file"]
    assert not any("DOE" in str(v) or "pipe" in str(v) for r in rows for v in r.values())
    (landing_dir / "later").mkdir()
    assert claim(landing_dir, tmp_path / "raw", settle_seconds=60, now=time.time() + 120) is None
    assert list(landing_dir.iterdir()) == []  # an empty folder past the settle time is pruned with nothing to claim


def test_file_swapped_for_a_symlink_before_the_commit_is_refused(tmp_path: Path) -> None:
    staging = tmp_path / "raw" / ".claiming-b20260101T000000000000-abcdef" / "files"
    staging.mkdir(parents=True)
    (staging / "real.dcm").write_bytes(b"x")
    (staging / "swapped.dcm").symlink_to("/etc/passwd")
    (batch,) = recover(tmp_path / "raw")
    assert batch.files == ("real.dcm",) and batch.symlinks == ("swapped.dcm",)


def test_dot_names_stay_and_are_reported_once_as_quarantine_rows(tmp_path: Path) -> None:
    from hca_assets.stages.ingest import ingest_batch

    landing_dir = tmp_path / "landing"
    (landing_dir / ".git").mkdir(parents=True)
    (landing_dir / ".git" / "config").write_bytes(b"x")
    (landing_dir / ".DS_Store").write_bytes(b"x")
    (landing_dir / "ok").symlink_to("/etc/passwd")
    batch = claim(landing_dir, tmp_path / "raw", settle_seconds=0)
    assert batch is not None and batch.files == () and batch.hidden == (".DS_Store", ".git")
    assert (landing_dir / ".DS_Store").exists() and (landing_dir / ".git" / "config").exists()  # left where they are
    assert claim(landing_dir, tmp_path / "raw", settle_seconds=0) is None  # once, not at every tick
    outcome = ingest_batch(batch, key=b"k" * 16, quarantine_root=tmp_path / "q", known={})
    rows = outcome.quarantine.to_pylist()
    assert sorted(r["reason"] for r in rows) == ["hidden_name", "hidden_name", "symlink_refused"]
    assert outcome.received == 3 and all(r["sha256"] is None for r in rows)
    assert not any(".DS_Store" in str(v) or ".git" in str(v) or "passwd" in str(v) for r in rows for v in r.values())


def test_recover_never_commits_a_claim_while_its_claimer_holds_the_lock(tmp_path: Path) -> None:
    """A live claimer holds the claim lock: another process's recovery waits instead of committing its claim."""
    raw = tmp_path / "raw"
    staging = raw / ".claiming-b20260101T000000000000-abcdef" / "files"
    staging.mkdir(parents=True)
    (staging / "a.dcm").write_bytes(b"x")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from hca_assets.sources.claims import claim_lock\nwith claim_lock(Path(sys.argv[1])):\n"
                               "    print('held', flush=True); time.sleep(60)", str(raw)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen([sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
                                   "from hca_assets.sources.claims import recover\nprint(len(recover(Path(sys.argv[1]))))", str(raw)],
                                  stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=1.5)
        assert committed_batches(raw) == [] and staging.exists()  # the claim in progress is left alone
        holder.kill()  # the holder dies: the kernel releases its lock
        holder.wait()
        out, _ = waiter.communicate(timeout=30)
        assert out.strip() == "1" and len(committed_batches(raw)) == 1
    finally:
        holder.kill()
        holder.wait()


def test_leftover_claims_never_make_later_claims_fail(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / ".claiming-b20260101T000000000000-aaaaaa").mkdir(parents=True)  # died before its files/ folder
    half = raw / ".claiming-b20260101T000000000001-bbbbbb" / "files" / "study"
    half.mkdir(parents=True)
    (half / "moved.dcm").write_bytes(b"x")
    names = make_files(tmp_path / "landing", 4)
    recovered = recover(raw)
    batch = claim(tmp_path / "landing", raw, settle_seconds=0)
    assert [b.files for b in recovered] == [("study/moved.dcm",)]  # the empty one is dropped, not committed
    assert batch is not None and sorted(batch.files) == sorted(names)
    assert not list(raw.glob(".claiming-*")) and len(committed_batches(raw)) == 2
