import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hca_assets._infra.keys import KeyRefused, key_fingerprint, keyed_digest, load_key

ROOT = Path(__file__).parents[2]


def test_env_key_wins(tmp_path: Path) -> None:
    assert load_key(str(tmp_path / "k")) == b"test-key-0123456789abcdef"
    assert not (tmp_path / "k").exists()


def test_key_file_created_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HCA_DEID_KEY")
    path = tmp_path / "restricted" / "hca.key"
    with pytest.warns(UserWarning, match="HCA_DEID_KEY is not set"):
        first = load_key(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_key(str(path)) == first and len(first) == 64
    assert sorted(p.name for p in path.parent.iterdir()) == ["hca.key"]  # no temporary file left behind


def test_fingerprint_is_short_stable_and_reveals_no_key_material() -> None:
    key = b"0123456789abcdef" * 4
    fingerprint = key_fingerprint(key)
    assert len(fingerprint) == 16 and all(c in "0123456789abcdef" for c in fingerprint)
    assert fingerprint == key_fingerprint(key) and fingerprint != key_fingerprint(key[:-1] + b"0")
    assert fingerprint not in key.decode()  # not a slice of the key (e.g. its first 16 characters)
    assert fingerprint != keyed_digest(key, "")[:16]  # nor a digest the pseudonyms are made of


def test_short_env_key_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HCA_DEID_KEY", "short")
    with pytest.raises(KeyRefused, match="HCA_DEID_KEY must be at least 16 characters, got 5"):
        load_key(str(tmp_path / "k"))


def test_short_or_empty_key_file_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HCA_DEID_KEY")
    (tmp_path / "k").write_text("abc\n")
    with pytest.raises(KeyRefused, match="at least 16 characters, got 3"):
        load_key(str(tmp_path / "k"))


def test_missing_key_file_not_created_when_told_not_to(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HCA_DEID_KEY")
    with pytest.raises(KeyRefused, match="no HCA_DEID_KEY set and no key file"):
        load_key(str(tmp_path / "k"), create=False)
    assert not (tmp_path / "k").exists()


def test_keyed_digest_depends_on_key_and_parts() -> None:
    a = keyed_digest(b"k1" * 8, "patient", "123")
    assert a == keyed_digest(b"k1" * 8, "patient", "123")
    assert a != keyed_digest(b"k2" * 8, "patient", "123")
    assert keyed_digest(b"k", "a", "bc") != keyed_digest(b"k", "ab", "c")


RACER = """
import sys, time, warnings
from pathlib import Path
from hca_assets._infra.keys import load_key
key_file, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.0005)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    key = load_key(key_file)
print(key.decode(), sum("created a random key" in str(w.message) for w in caught))
"""


def test_processes_creating_the_key_at_once_all_get_the_same_key(tmp_path: Path) -> None:
    """Released together, several processes find no key file: one creates it, all read that one key."""
    env = {k: v for k, v in os.environ.items() if k != "HCA_DEID_KEY"} | {"PYTHONPATH": str(ROOT)}
    racers = 6
    for round_ in range(4):
        key_file = tmp_path / f"round{round_}" / "restricted" / "hca.key"
        go = tmp_path / f"go{round_}"
        ready = [tmp_path / f"ready{round_}-{i}" for i in range(racers)]
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(key_file), str(r), str(go)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in ready]
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * racers, [err for _, err in outputs]
        keys = {out.split()[0] for out, _ in outputs}
        assert keys == {key_file.read_text()} and len(next(iter(keys))) == 64
        assert sum(int(out.split()[1]) for out, _ in outputs) == 1  # exactly one process created (and warned)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert sorted(p.name for p in key_file.parent.iterdir()) == ["hca.key"]


def test_key_location_is_inside_one_absolute_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without HCA_DATA_DIR the data folder is ./data of the directory the settings were read in, made absolute
    once: moving elsewhere afterwards never moves the key (or any zone)."""
    from hca_assets.config import Settings

    monkeypatch.delenv("HCA_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    assert settings.data_dir == str(tmp_path / "data")
    assert Settings(data_dir="elsewhere/d").data_dir == str(tmp_path / "elsewhere" / "d")
    monkeypatch.chdir(tmp_path.parent)
    assert settings.key_file == str(tmp_path / "data" / "restricted" / "hca.key")
    assert Path(settings.key_file).parent == Path(settings.restricted) and Path(settings.key_pin).parent == Path(settings.restricted)
    assert Settings(data_dir="s3://bucket/hca").data_dir == "s3://bucket/hca"  # object-store roots are left as given
