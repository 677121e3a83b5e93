"""The storage root on an object store: Azurite (npm) started on loopback, with a fault proxy before it for
throttling and outages. Files go through hca_assets._infra.storage, Delta tables through deltalake; both read the
credentials of AZURE_STORAGE_CONNECTION_STRING."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hca_assets._infra import storage
from hca_assets._infra.storage import Store, StoreError
from hca_assets_tests.services import FaultProxy, azurite, azurite_connection, free_port

HCA = [str(Path(sys.executable).parent / "hca")]


@pytest.fixture(scope="module")
def blob_port() -> Iterator[int]:
    with azurite() as port:
        yield port


@pytest.fixture
def proxy(blob_port: int) -> Iterator[FaultProxy]:
    p = FaultProxy(blob_port)
    yield p
    p.close()


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy) -> FaultProxy:
    """The process's Azure credentials point at Azurite through the proxy; retries give up after 3 s."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection(proxy.port))
    monkeypatch.delenv("AZURE_STORAGE_USE_EMULATOR", raising=False)
    monkeypatch.setattr(storage, "RETRY_SECONDS", 3.0)
    return proxy


def _tree(root: Path) -> None:
    for rel, data in {"b1/s1/a.dcm": b"a" * 10, "b1/s1/b.dcm": b"b" * 20, "b1/s2/c.dcm": b"c"}.items():
        (root / "deid" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "deid" / rel).write_bytes(data)


def test_push_pull_prune_round_trip(connected: FaultProxy, tmp_path: Path) -> None:
    store = Store("az://hca/unit-roundtrip")
    _tree(tmp_path / "a")
    assert store.push(tmp_path / "a", "deid/b1") == 3
    assert store.push(tmp_path / "a", "deid/b1") == 0  # same names and sizes: one listing, nothing sent
    assert store.listing("deid/b1") == {"deid/b1/s1/a.dcm": 10, "deid/b1/s1/b.dcm": 20, "deid/b1/s2/c.dcm": 1}
    assert store.pull("deid/b1", tmp_path / "b") == 3
    assert (tmp_path / "b" / "deid/b1/s1/b.dcm").read_bytes() == b"b" * 20
    assert store.pull("deid/b1", tmp_path / "b") == 0
    keep = {"deid/b1/s1/a.dcm"}
    assert store.remove("deid/b1", keep) == 2
    assert set(store.listing("deid/b1")) == keep
    assert store.write("pin.json", b"1", create=True) and not store.write("pin.json", b"2", create=True)
    assert store.read("pin.json") == b"1" and store.read("missing.json") is None


@pytest.mark.parametrize("status", [503, 429])
def test_throttling_is_retried_with_backoff(connected: FaultProxy, tmp_path: Path, status: int) -> None:
    store = Store(f"az://hca/unit-throttle-{status}")
    _tree(tmp_path)
    connected.status, connected.fail_next = status, 3
    assert store.push(tmp_path, "deid/b1") == 3
    assert connected.failed == 3
    assert len(store.listing("deid/b1")) == 3


def test_an_outage_fails_in_one_phi_free_line_after_its_retries(connected: FaultProxy, tmp_path: Path) -> None:
    store = Store("az://hca/unit-outage")
    secret_name = "Doe^Jane-19700101"
    (tmp_path / "raw" / secret_name).parent.mkdir(parents=True)
    (tmp_path / "raw" / secret_name).write_bytes(b"x")
    connected.fail_next = -1
    with pytest.raises(StoreError) as failed:  # gives up: the outage never ends
        store.push(tmp_path, "raw")
    message = str(failed.value)
    assert "HTTP 503" in message and secret_name not in message and "Doe" not in message and "\n" not in message
    assert connected.failed >= 3  # retried with backoff before giving up


def test_wrong_credentials_and_unreachable_store_fail_clearly(monkeypatch: pytest.MonkeyPatch, blob_port: int) -> None:
    monkeypatch.setattr(storage, "RETRY_SECONDS", 2.0)
    monkeypatch.delenv("AZURE_STORAGE_USE_EMULATOR", raising=False)
    wrong = "A" * 86 + "=="  # a well-formed key the account does not have: an expired or rotated secret
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection(blob_port, key=wrong))
    with pytest.raises(StoreError, match="HTTP 403"):
        Store("az://hca/unit-creds").read("anything")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection(free_port()))
    with pytest.raises(StoreError, match="failed to read an object"):
        Store("az://hca/unit-down").read("anything")


def _hca(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HCA, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_graph_runs_on_azurite_and_a_failed_upload_publishes_nothing(proxy: FaultProxy, tmp_path: Path) -> None:
    """`hca demo` end to end with the root on Azurite; `hca sql` answers from a second, empty working copy; an
    upload failing mid-batch fails the run before its commit, and the retried batch then lands whole."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HCA_", "AZURE_", "DAGSTER_"))}
    env |= {"HCA_DEID_KEY": os.environ["HCA_DEID_KEY"], "HCA_DATA_DIR": "az://hca/e2e", "HCA_STORE_RETRY_SECONDS": "2",
            "HCA_WORK_DIR": str(tmp_path / "work"), "AZURE_STORAGE_CONNECTION_STRING": azurite_connection(proxy.port)}
    demo = _hca(["demo", "--fresh", "--patients", "1", "--seed", "3"], env)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "unaccounted" in demo.stdout and not (tmp_path / "work" / "lake").exists()  # tables live in the store only

    elsewhere = env | {"HCA_WORK_DIR": str(tmp_path / "elsewhere")}
    count = _hca(["sql", "SELECT count(*) AS n FROM deid_instances", "--format", "json"], elsewhere)
    assert count.returncode == 0, count.stderr
    published = json.loads(count.stdout)["n"]
    paths = _hca(["sql", "SELECT path FROM deid_instances", "--format", "csv"], elsewhere).stdout.splitlines()[1:]
    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = env["AZURE_STORAGE_CONNECTION_STRING"]
    try:
        objects = Store("az://hca/e2e").listing("deid")
    finally:
        del os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    assert published > 0 and {f"deid/{p}" for p in paths} == set(objects)  # every row's file, and nothing else
    marts = _hca(["sql", "SELECT sum(instances) AS n FROM modality_bodypart_counts", "--format", "json"], elsewhere)
    assert json.loads(marts.stdout)["n"] == published  # the marts came from the store too

    # a second batch whose de-identified uploads fail: the run fails, no row of it is published
    new = _hca(["generate", "--patients", "1", "--seed", "4", "--ct-size", "64",
                "--out", str(tmp_path / "work" / "landing" / "late")], env)
    assert new.returncode == 0, new.stderr
    proxy.status, proxy.fail_next = 503, -1
    proxy.fail_only = "/e2e/deid/"  # the published zone's uploads only
    failed = _hca(["ingest", "--settle-seconds", "0"], env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    after = _hca(["sql", "SELECT count(*) AS n FROM deid_instances", "--format", "json"], elsewhere)
    assert json.loads(after.stdout)["n"] == published
    proxy.fail_next = 0
    retried = _hca(["ingest", "--retry-failed"], env)
    assert retried.returncode == 0, retried.stdout[-2000:] + retried.stderr[-2000:]
    whole = _hca(["sql", "SELECT count(*) AS n FROM deid_instances", "--format", "json"], elsewhere)
    assert json.loads(whole.stdout)["n"] > published
