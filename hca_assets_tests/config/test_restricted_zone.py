"""Least privilege on disk: after a real ingest + de-identification, nothing under restricted/ can be listed
or read by another user (checked with stat and by trying, as an unprivileged user)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.ingest import raw_dicom
from hca_assets.config import Settings
from hca_assets.lake import read_table
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.sources.claims import claim

# Root reads everything: the reads are tried as nobody, as another local user would.
AS_OTHER_USER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
TRY_READ = """
import json, os, sys
paths = json.loads(sys.stdin.read())
readable = []
for p in paths:
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p, "rb").close()
        readable.append(p)
    except OSError:
        pass
print(json.dumps(readable))
"""


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A data folder other users can reach (pytest's own tmp folders are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="hca-zone-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def _readable_by_others(paths: list[Path]) -> list[str]:
    proc = subprocess.run([*AS_OTHER_USER, sys.executable, "-c", TRY_READ], input=json.dumps([str(p) for p in paths]),
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)


def test_restricted_zone_is_private_after_a_real_run(
    shared_root: Path, small_study: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HCA_DEID_KEY")  # the key file is created under restricted/ too
    settings = Settings(data_dir=str(shared_root / "data"), settle_seconds=0.0, workers=1)
    shutil.copytree(small_study[0], Path(settings.landing))
    (Path(settings.landing) / "broken.dcm").write_bytes(b"DICM but not really")  # a quarantine copy, restricted
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    with dg.instance_for_test() as instance, pytest.warns(UserWarning, match="created a random key"):
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        result = dg.materialize([raw_dicom, deid_staged], instance=instance, partition_key=batch.key,
                                resources={"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey()})
        assert result.success
        assert dg.materialize([deid_dicom], instance=instance, partition_key=batch.key,
                              resources={"storage": SettingsResource.from_settings(settings),
                                         "pseudonym_key": PseudonymKey()}).success

    restricted = Path(settings.restricted)
    inside = sorted(restricted.rglob("*"))
    files = [p for p in inside if p.is_file()]
    assert stat.S_IMODE(restricted.stat().st_mode) == 0o700
    for written in (Path(settings.key_file), Path(settings.key_pin)):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, written.name
    assert read_table(settings.table_uri("quarantine")).num_rows >= 1 and any(Path(settings.quarantine).rglob("*"))
    kinds = {p.relative_to(restricted).parts[0] for p in files}
    assert {"raw", "quarantine", "tables", "hca.key", "key_pin.json"} <= kinds, kinds  # the zone really holds PHI

    lake_files = [p for p in Path(settings.lake).rglob("*") if p.is_file()]
    control = _readable_by_others(lake_files[:3])
    assert control == [str(p) for p in lake_files[:3]]  # the PHI-free lake stays readable: other users can reach here
    assert _readable_by_others([restricted, *inside]) == []
