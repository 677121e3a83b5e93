import stat
from pathlib import Path

import pytest

from hca_assets.keys import key_fingerprint, keyed_digest, load_key


def test_env_key_wins(tmp_path: Path) -> None:
    assert load_key(str(tmp_path / "k")) == b"test-key-0123456789abcdef"
    assert not (tmp_path / "k").exists()


def test_key_file_created_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HCA_DEID_KEY")
    path = tmp_path / "restricted" / "hca.key"
    with pytest.warns(UserWarning, match="HCA_DEID_KEY is not set"):
        first = load_key(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(str(path)) == first and len(first) == 64
    assert str(first) not in key_fingerprint(first)


def test_short_env_key_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HCA_DEID_KEY", "short")
    with pytest.raises(ValueError, match="at least 16"):
        load_key(str(tmp_path / "k"))


def test_keyed_digest_depends_on_key_and_parts() -> None:
    a = keyed_digest(b"k1" * 8, "patient", "123")
    assert a == keyed_digest(b"k1" * 8, "patient", "123")
    assert a != keyed_digest(b"k2" * 8, "patient", "123")
    assert keyed_digest(b"k", "a", "bc") != keyed_digest(b"k", "ab", "c")
