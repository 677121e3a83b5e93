"""Chaos harness shared by ``sources/test_claims_chaos.py`` and ``benchmarks/chaos.py``: concurrent claimers killed at
random points, ``hca ingest`` killed during a stage, and the invariants every round must keep."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from hca_assets.config import Settings
from hca_assets.lake import read_table
from hca_assets.lake.schemas import DEID_INSTANCES, IMAGES, QUARANTINE, RAW_INSTANCES, VOLUMES
from hca_assets.sources.claims import MANIFEST, claim, claim_lock, committed_batches, load_batch, recover
from hca_assets.stages.deid import STAGE as DEID_STAGE
from hca_assets.stages.images import RENDER_STAGE
from hca_assets.stages.ingest import STAGE as INGEST_STAGE

REPO = Path(__file__).parents[1]
HCA = [sys.executable, "-c", "from hca_assets.cli import main; main()"]

CLAIMER = """
import os, random, signal, sys, time
from pathlib import Path
from hca_assets.sources import claims
from hca_assets.sources.claims import claim, claim_lock, recover
landing, raw, die_after = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
real_rename, renames = os.rename, [0]

def rename(src, dst):
    renames[0] += 1
    if renames[0] == die_after:  # die inside a claim: files half moved, or the commit not done
        os.kill(os.getpid(), signal.SIGKILL)
    real_rename(src, dst)

claims.os.rename = rename
while True:
    with claim_lock(raw) as lock:
        recover(raw, lock=lock)
        claim(landing, raw, settle_seconds=0, lock=lock)
    time.sleep(random.random() * 0.005)
"""


def env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **extra}


@dataclass(frozen=True)
class ClaimStress:
    claimers: int
    rounds: int
    files: int
    kills: int  # SIGKILL from outside, at random times
    self_kills: int  # SIGKILL to itself at a random rename inside a claim
    cut_claims: int  # claims a kill interrupted, committed afterwards by a recovery
    batches: int
    seconds: float


def _land(landing: Path, name: str) -> None:
    """Write a file the way an uploader does: under an in-progress name, then renamed. With no settle time a
    claimer may prune the new folder before the file is in it: the uploader then tries again."""
    target = landing / name
    part = target.with_name(target.name + ".part")
    for _ in range(100):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(name.encode())
            os.rename(part, target)
            return
        except (FileNotFoundError, FileExistsError):  # a folder on the path pruned while being made
            continue
    raise RuntimeError(f"could not land {name}")


def claim_stress(root: Path, *, claimers: int = 3, rounds: int = 3, files_per_round: int = 600,
                 seed: int = 0) -> ClaimStress:
    """``claimers`` processes start together on a landing zone holding half a round's files and claim it
    while the other half arrives; claimers are killed (SIGKILL) from outside at random times, each one
    started with a round kills itself inside a claim (at a random rename: files half moved, or the commit not
    done), restarted claimers do so half the time; all are killed when the round ends. After each round
    every invariant of :func:`check_claims` holds."""
    rng = random.Random(seed)
    landing, raw = root / "landing", root / "raw"
    landing.mkdir(parents=True)
    landed: set[str] = set()
    kills = self_kills = 0

    def start(*, die: bool) -> subprocess.Popen[bytes]:
        die_after = rng.randint(1, 80) if die else -1
        return subprocess.Popen([sys.executable, "-c", CLAIMER, str(landing), str(raw), str(die_after)], env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart_dead() -> None:
        nonlocal self_kills
        for i, p in enumerate(procs):
            if p.poll() is not None:
                self_kills += 1
                procs[i] = start(die=rng.random() < 0.5)

    def wait_until(done: Callable[[], bool], seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            restart_dead()
            time.sleep(0.01)

    def landing_empty() -> bool:  # os.walk, not rglob: folders vanish under it while claimers prune
        return not any(files for _, _, files in os.walk(landing))

    started = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for r in range(rounds):
            names = [f"r{r}/study{i % 7}/f{i:05d}.dcm" for i in range(files_per_round)]
            half = len(names) // 2
            for name in names[:half]:
                _land(landing, name)
                landed.add(name)
            procs = [start(die=True) for _ in range(claimers)]
            wait_until(landing_empty)  # the first half, claimed by claimers that start together (and die)
            for at in range(half, len(names), 40):  # the second half arrives while they claim
                for name in names[at:at + 40]:
                    _land(landing, name)
                    landed.add(name)
                restart_dead()
                if rng.random() < 0.6:
                    victim = rng.randrange(claimers)
                    time.sleep(rng.uniform(0, 0.02))
                    procs[victim].send_signal(signal.SIGKILL)
                    procs[victim].wait()
                    kills += 1
                    procs[victim] = start(die=rng.random() < 0.5)
                time.sleep(rng.uniform(0.005, 0.03))
            wait_until(landing_empty)
            for p in procs:  # the round ends with every claimer killed wherever it is
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    kills += 1
                else:
                    self_kills += 1
                p.wait()
            with claim_lock(raw) as lock:
                recover(raw, lock=lock)
                claim(landing, raw, settle_seconds=0, lock=lock)
            check_claims(landing, raw, landed)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    keys = committed_batches(raw)
    cut = sum(json.loads((raw / k / MANIFEST).read_text())["recovered"] for k in keys)
    return ClaimStress(claimers, rounds, len(landed), kills, self_kills, cut, len(keys), time.perf_counter() - started)


def check_claims(landing: Path, raw: Path, landed: set[str]) -> None:
    """Files landed = files in committed manifests + files still in landing, none twice, no file in a batch
    folder that its manifest does not list, no claim left half-done."""
    in_manifests: Counter[str] = Counter()
    for key in committed_batches(raw):
        batch = load_batch(raw, key)
        on_disk = {str(p.relative_to(batch.files_dir)) for p in batch.files_dir.rglob("*") if p.is_file()}
        assert on_disk == set(batch.files), f"batch {key}: {len(on_disk)} files on disk, {len(batch.files)} in manifest"
        in_manifests.update(batch.files)
    twice = [n for n, c in in_manifests.items() if c > 1]
    assert not twice, f"{len(twice)} files in two batches"
    left = {str(p.relative_to(landing)) for p in landing.rglob("*") if p.is_file()}
    assert not (left & set(in_manifests)), "a file both claimed and still in landing"
    assert set(in_manifests) | left == landed, f"lost: {len(landed - set(in_manifests) - left)}"
    assert not list(raw.glob(".claiming-*")), "a claim left uncommitted"
    assert not [p for p in raw.iterdir() if p.is_dir() and not (p / MANIFEST).is_file()], "a batch folder without manifest"


def run_hca(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HCA, *args], env=env(**hca_env(settings)), capture_output=True, text=True,
                          timeout=timeout, check=False)


def hca_env(settings: Settings) -> dict[str, str]:
    return {"HCA_DATA_DIR": settings.data_dir, "HCA_WORKERS": "1", "HCA_SETTLE_SECONDS": "0",
            "DAGSTER_HOME": str(Path(settings.data_dir) / "dagster_home")}


def kill_during(settings: Settings, marker: str, *, timeout: float = 300) -> tuple[bool, float]:
    """Start ``hca ingest`` and SIGKILL it as soon as a log line contains ``marker``; (killed, seconds)."""
    started = time.perf_counter()
    proc = subprocess.Popen([*HCA, "ingest"], env=env(**hca_env(settings)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    killed = False
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
        proc.wait(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
    return killed, time.perf_counter() - started


def _rows(settings: Settings, name: str, schema: object, *, restricted: bool = False) -> list[dict[str, object]]:
    return read_table(settings.table_uri(name, restricted=restricted), schema=schema).to_pylist()  # type: ignore[arg-type]


def check_published(settings: Settings) -> None:
    """Nothing half-published: the de-identified zone holds exactly the files ``deid_instances`` lists (no
    batch's files before its checks passed, none left over) and no temporary file."""
    deid_root = Path(settings.deid)
    on_disk = {str(p.relative_to(deid_root)) for p in deid_root.rglob("*") if p.is_file()} if deid_root.exists() else set()
    assert on_disk == {str(r["path"]) for r in _rows(settings, "deid_instances", DEID_INSTANCES)}, \
        "de-identified files on disk differ from deid_instances"


def check_rendered(settings: Settings) -> None:
    """The images zone holds exactly the PNG and NIfTI files ``images`` and ``volumes`` list: no temporary
    file, no orphan of a killed rendering."""
    root = Path(settings.images)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    listed = {str(r["path"]) for name, schema in (("images", IMAGES), ("volumes", VOLUMES))
              for r in _rows(settings, name, schema)}
    assert on_disk == listed, f"images zone: {len(on_disk - listed)} files not listed, {len(listed - on_disk)} missing"


def check_ledger(settings: Settings, landed: int) -> dict[str, int]:
    """Every landed file is accounted for once: received = ingested + quarantined at ingest; ingested =
    published + quarantined at de-identification; published = rendered + quarantined at rendering; no SOP
    Instance UID twice; published and rendered files match their tables. Returns the totals."""
    raw = Path(settings.raw_batches)
    received = sum(load_batch(raw, k).received for k in committed_batches(raw))
    assert received == landed, f"{landed} files landed, {received} received by committed batches"
    quarantine = Counter(str(r["stage"]) for r in _rows(settings, "quarantine", QUARANTINE))
    ingested = _rows(settings, "raw_instances", RAW_INSTANCES, restricted=True)
    published = _rows(settings, "deid_instances", DEID_INSTANCES)
    rendered = {str(r["sop_instance_uid"]) for r in _rows(settings, "images", IMAGES)}
    assert received == len(ingested) + quarantine[INGEST_STAGE]
    assert len(ingested) == len(published) + quarantine[DEID_STAGE]
    assert len(published) == len(rendered) + quarantine[RENDER_STAGE]
    for rows in (ingested, published):
        sops = [r["sop_instance_uid"] for r in rows]
        assert len(sops) == len(set(sops)), "a SOP Instance UID twice"
    check_published(settings)
    check_rendered(settings)
    return {"received": received, "ingested": len(ingested), "published": len(published), "rendered": len(rendered),
            "quarantined": sum(quarantine.values())}


def runs(settings: Settings) -> list[dg.DagsterRun]:
    """Every run of the data folder's Dagster instance."""
    with dg.DagsterInstance.from_config(str(Path(settings.data_dir) / "dagster_home")) as instance:
        return list(instance.get_runs())


SENSOR = """
# the landing sensor as the daemon runs it: the partitions of each tick registered, then its runs executed
import sys, time
import dagster as dg
from hca_assets.config import Settings
from hca_assets.definitions import build_defs
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.in_process import open_instance
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.sensors.landing import landing_sensor

settings = Settings.from_env()
instance = open_instance(settings)
job = build_defs(settings).resolve_job_def("ingest_job")
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:  # what the daemon does with each tick: partitions first, then the runs
    context = dg.build_sensor_context(instance=instance, resources={"storage": SettingsResource.from_settings(settings)})
    result = landing_sensor(context)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(INGEST_BATCHES, list(request.partition_keys))
        for run in result.run_requests or []:
            job.execute_in_process(instance=instance, partition_key=run.partition_key, raise_on_error=False,
                                   tags={"dagster/run_key": run.run_key, "dagster/sensor_name": "landing_sensor"})
            print(run.partition_key, flush=True)
    time.sleep(0.2)
"""



def ingests_and_sensor_at_once(settings: Settings, first: Path, second: Path,
                               *, sensor_seconds: float = 25) -> tuple[list[int], float]:
    """The sensor and two ``hca ingest`` start on a landing zone holding study ``first``; study ``second``
    lands (whole, by a rename) once the first is claimed. Returns the exit codes (sensor first) and the seconds."""
    landing = Path(settings.landing)
    shutil.copytree(first, landing / "first")
    child_env = env(**hca_env(settings), HCA_HANDOFF_SECONDS="600")  # the emulated daemon runs requests in turn
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", SENSOR, str(sensor_seconds)], env=child_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    procs += [subprocess.Popen([*HCA, "ingest"], env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    upload = Path(settings.data_dir) / "upload"
    shutil.copytree(second, upload)
    deadline = time.monotonic() + 120
    while not committed_batches(Path(settings.raw_batches)) and time.monotonic() < deadline:
        time.sleep(0.05)  # the second study lands once the first is claimed: two batches, likely two runners
    os.rename(upload, landing / "second")
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode not in (0, 3):
            print(err[-3000:], file=sys.stderr)
    return [p.returncode for p in procs], time.perf_counter() - started
