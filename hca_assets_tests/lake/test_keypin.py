"""The key pin: first use pins, another key is refused, rotation is explicit and keeps the crosswalk's pseudonyms."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from hca_assets._infra.keys import KeyRefused, key_fingerprint
from hca_assets.config import Settings
from hca_assets.dicom.pseudonyms import Pseudonymizer
from hca_assets.lake import write_partition
from hca_assets.lake.keypin import kept_pseudonyms, lake_key, read_pin, rotate_key
from hca_assets.lake.schemas import DEID_AUDIT, DEID_CROSSWALK
from hca_assets_tests.conftest import TEST_KEY

ROOT = Path(__file__).parents[2]
OTHER_KEY = "another-key-fedcba9876543210"


def test_first_use_pins_and_another_key_is_refused(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lake_key(settings) == TEST_KEY.encode()
    pin_file = Path(settings.key_pin)
    pin = read_pin(pin_file)
    assert pin is not None and pin.fingerprint == key_fingerprint(TEST_KEY.encode()) and pin.retired == ()
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(settings.restricted).stat().st_mode) == 0o700
    before = pin_file.read_bytes()
    assert lake_key(settings) == TEST_KEY.encode()  # the same key, again: accepted
    monkeypatch.setenv("HCA_DEID_KEY", OTHER_KEY)
    with pytest.raises(KeyRefused) as refused:
        lake_key(settings)
    message = str(refused.value)
    assert "\n" not in message and "hca rekey" in message
    assert pin.fingerprint in message and key_fingerprint(OTHER_KEY.encode()) in message
    assert OTHER_KEY not in message and TEST_KEY not in message
    with pytest.raises(KeyRefused):
        lake_key(settings, OTHER_KEY)  # a secret passed directly (the resource's EnvVar) is checked the same way
    assert pin_file.read_bytes() == before


def test_a_read_only_check_does_not_pin(settings: Settings) -> None:
    assert lake_key(settings, pin=False) == TEST_KEY.encode()
    assert read_pin(Path(settings.key_pin)) is None


def test_pinned_lake_with_a_lost_key_file_is_refused_not_given_a_new_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HCA_DEID_KEY")
    with pytest.warns(UserWarning, match="created a random key"):
        first = lake_key(settings)
    Path(settings.key_file).unlink()
    with pytest.raises(KeyRefused, match=r"restricted/hca\.key is missing: restore that key"):
        lake_key(settings)
    assert not Path(settings.key_file).exists()
    Path(settings.key_file).write_bytes(first)
    assert lake_key(settings) == first


def test_short_secret_is_refused(settings: Settings) -> None:
    with pytest.raises(KeyRefused, match="at least 16 characters, got 5"):
        lake_key(settings, "short")


def test_lake_without_pin_is_pinned_to_the_key_its_audit_recorded(settings: Settings) -> None:
    """A lake written before pins existed: its deid_audit names the key(s); the latest one is pinned."""
    old, used = key_fingerprint(b"x" * 32), key_fingerprint(OTHER_KEY.encode())
    now = datetime.now(UTC)
    rows = [{"batch": "b1", "sop_instance_uid": f"2.25.{i}", "profile": "basic", "key_fingerprint": fp, "removed": 0,
             "emptied": 0, "dummied": 0, "uids_replaced": 0, "cleaned": 0, "kept": 0, "private_removed": 0,
             "burned_in": "none", "dates_shifted": True, "audited_at": now + timedelta(seconds=i)}
            for i, fp in enumerate([old, used])]
    write_partition(settings.table_uri("deid_audit"), pa.Table.from_pylist(rows, schema=DEID_AUDIT), match={"batch": "b1"},
                    schema=DEID_AUDIT)
    with pytest.raises(KeyRefused, match=used):
        lake_key(settings)
    pin = read_pin(Path(settings.key_pin))
    assert pin is not None and (pin.fingerprint, pin.retired) == (used, (old,))
    assert lake_key(settings, OTHER_KEY) == OTHER_KEY.encode()


def test_rotation_is_explicit_and_retires_the_old_key(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert rotate_key(settings) == (None, key_fingerprint(TEST_KEY.encode()))  # nothing pinned yet: pins
    monkeypatch.setenv("HCA_DEID_KEY", OTHER_KEY)
    old, new = key_fingerprint(TEST_KEY.encode()), key_fingerprint(OTHER_KEY.encode())
    assert rotate_key(settings) == (old, new)
    pin = read_pin(Path(settings.key_pin))
    assert pin is not None and (pin.fingerprint, pin.retired) == (new, (old,))
    assert stat.S_IMODE(Path(settings.key_pin).stat().st_mode) == 0o600
    assert lake_key(settings) == OTHER_KEY.encode()
    assert rotate_key(settings) == (new, new)  # again: nothing to do
    monkeypatch.setenv("HCA_DEID_KEY", TEST_KEY)
    with pytest.raises(KeyRefused, match="retired by `hca rekey`"):
        lake_key(settings)


def _crosswalk(settings: Settings, batch: str, rows: list[tuple[str, str, str, int | None]]) -> None:
    table = pa.Table.from_pylist([{"batch": batch, "kind": k, "original": o, "pseudonym": p, "date_offset_days": d}
                                  for k, o, p, d in rows], schema=DEID_CROSSWALK)
    write_partition(settings.table_uri("deid_crosswalk", restricted=True), table, match={"batch": batch},
                    schema=DEID_CROSSWALK)


def test_kept_pseudonyms_only_after_a_rotation_earliest_batch_wins(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _crosswalk(settings, "b20260101", [("patient", "MRN1", "PSNA", -10), ("study", "1.2.3", "2.25.1", None),
                                       ("instance", "1.2.3.4", "2.25.2", None)])
    _crosswalk(settings, "b20260102", [("patient", "MRN1", "PSNB", -20), ("patient", "MRN2", "PSNC", 0),
                                       ("series", "1.2.3.5", "2.25.3", None)])
    lake_key(settings)
    assert kept_pseudonyms(settings).uids == {} and kept_pseudonyms(settings).patients == {}  # one key: it decides
    monkeypatch.setenv("HCA_DEID_KEY", OTHER_KEY)
    rotate_key(settings)
    kept = kept_pseudonyms(settings)
    assert kept.patients == {"MRN1": "PSNA", "MRN2": "PSNC"}
    assert kept.date_offsets == {"MRN1": -10}  # 0: that batch kept dates, no offset to keep
    assert kept.uids == {"1.2.3": "2.25.1", "1.2.3.4": "2.25.2", "1.2.3.5": "2.25.3"}
    pseudo = Pseudonymizer(OTHER_KEY.encode(), kept.uids, kept.patients, kept.date_offsets)
    assert (pseudo.patient_id("MRN1"), pseudo.date_offset_days("MRN1"), pseudo.uid("1.2.3")) == ("PSNA", -10, "2.25.1")
    fresh = Pseudonymizer(OTHER_KEY.encode())
    assert pseudo.uid("9.9") == fresh.uid("9.9") and pseudo.date_offset_days("MRN9") == fresh.date_offset_days("MRN9")


def test_date_offsets_outside_the_shift_range_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"outside -3650\.\.-1"):
        Pseudonymizer(TEST_KEY.encode(), date_offsets={"MRN1": 5})


PINNER = """
import sys, time
from pathlib import Path
from hca_assets.config import Settings
from hca_assets._infra.keys import KeyRefused
from hca_assets.lake.keypin import lake_key
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.0005)
try:
    lake_key(Settings(data_dir=sys.argv[1]))
    print("accepted")
except KeyRefused:
    print("refused")
"""


def test_concurrent_first_pins_with_different_keys_one_key_wins(tmp_path: Path) -> None:
    """Two deployments started at once with different keys: exactly one key is pinned, the other refused."""
    keys = [TEST_KEY, OTHER_KEY] * 2
    for round_ in range(3):
        data = tmp_path / f"data{round_}"
        go = tmp_path / f"go{round_}"
        ready = [tmp_path / f"ready{round_}-{i}" for i in range(len(keys))]
        procs = [subprocess.Popen([sys.executable, "-c", PINNER, str(data), str(r), str(go)], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=os.environ | {"HCA_DEID_KEY": k, "PYTHONPATH": str(ROOT)})
                 for k, r in zip(keys, ready, strict=True)]
        deadline = time.monotonic() + 120  # generous: each racer imports pyarrow on a busy machine
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * len(keys), [err for _, err in outputs]
        pin = json.loads((data / "restricted" / "key_pin.json").read_text())
        winner = next(k for k in (TEST_KEY, OTHER_KEY) if key_fingerprint(k.encode()) == pin["fingerprint"])
        verdicts = [out.strip() for out, _ in outputs]
        assert verdicts == ["accepted" if k == winner else "refused" for k in keys]
        assert sorted(p.name for p in (data / "restricted").iterdir()) == ["key_pin.json"]
