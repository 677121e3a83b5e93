"""Scaling run (issue 12 item 4), the "scaling" part of ``make bench`` (``python -m benchmarks.run scaling``).

Synthetic studies (small slices) go batch by batch through the real assets — ingest, de-identification, images,
embeddings, then the FAISS index — each batch one Dagster run of one dynamic partition on a throwaway instance,
as ``hca ingest`` runs them. Per batch: seconds per instance of each stage (Dagster step times, checks included),
peak RSS of the process tree, the index's mode; then ``hca sql`` on the grown lake and one landing-sensor tick
with ≥ 1,000 batch partitions. ``HCA_SCALING_TOTAL`` (instances, default 100,000), ``HCA_SCALING_BATCH`` (5,000)
and ``HCA_SCALING_BUDGET_SECONDS`` (stop adding batches after this long; 0: no limit) size the run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
from dagster._core.storage.tags import PARTITION_NAME_TAG

from benchmarks.sql import QUERY, time_sql
from hca_assets.config import Settings
from hca_assets.definitions import build_defs
from hca_assets.lake import registry as tables
from hca_assets.models import embedder_code_version
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.search.index import EXACT_LIMIT, index_embeddings
from hca_assets.sensors.landing import landing_sensor
from hca_assets.sources.claims import claim
from hca_assets.synthetic import GeneratorOptions, generate

SECTION = "## Scaling run (issue 12 item 4)"
STUDY = GeneratorOptions(patients=1, ct_slices=48, ct_size=64, cxr_size=64, mr_slices=24, mr_size=64)
NO_TELEMETRY = {"telemetry": {"enabled": False}}  # else Dagster writes a user id into ~/.dagster
FIRST = 1_000  # the first batch is the 1k point; later batches fill up to multiples of the batch size
STAGES = ("ingest", "deid", "images", "embeddings", "index")
STEP_STAGE = (("raw_dicom", "ingest"), ("deid_", "deid"), ("images", "images"), ("labels", "embeddings"),
              ("embeddings", "embeddings"), ("faiss_index", "index"))  # Dagster step key prefix → stage
PARTITIONS = int(os.environ.get("HCA_SCALING_PARTITIONS", "1000"))  # registered batch partitions for the sensor tick


def _stage(step_key: str) -> str:
    return next(stage for prefix, stage in STEP_STAGE if step_key.startswith(prefix))


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (shared pages split among their users), 0 if it is gone."""
    try:
        line = next(ln for ln in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if ln.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1]) * 1024


TICK = os.sysconf("SC_CLK_TCK")


def _tree_sample() -> tuple[int, int, float]:
    """(RSS of this process, PSS of it and all its descendants — worker processes share pages with it — in bytes,
    CPU seconds of the tree: user + system of each live process and of the children it reaped)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
            cpu[int(stat.parent.name)] = sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):  # the process ended while being read
            continue
    tree, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    own = int(next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmRSS:")).split()[1])
    return own * 1024, sum(_pss(pid) for pid in tree), sum(cpu.get(pid, 0.0) for pid in tree)


@dataclass
class Sampler:
    """Samples the process tree every ``interval`` s in a thread: peak RSS / PSS since ``reset``, and CPU seconds
    over time, so that a step's CPU is the difference between its start and its end."""

    interval: float = 0.25
    own: int = 0
    tree: int = 0
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.own, self.tree, _ = _tree_sample()

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds of the tree between two POSIX times (interpolated between samples)."""
        return float(np.interp(end, self.times, self.cpu) - np.interp(start, self.times, self.cpu))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            own, tree, cpu = _tree_sample()
            self.own, self.tree = max(self.own, own), max(self.tree, tree)
            self.times.append(time.time())
            self.cpu.append(max(cpu, self.cpu[-1] if self.cpu else 0.0))  # a process gone unreaped loses its share

    def __enter__(self) -> Sampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


@dataclass(frozen=True)
class BatchFigures:
    corpus: int  # instances ingested so far, this batch included
    instances: int
    seconds: dict[str, float]  # stage → step seconds (checks included)
    cpu: dict[str, float]  # stage → CPU seconds of the process tree during its steps
    run_wall: float  # both runs, Dagster included
    rss_own: int
    rss_tree: int
    index: str
    load: float


def _defs(settings: Settings) -> dg.Definitions:
    """The product's definitions plus the two jobs of this run: one batch's stages, and the index."""
    batch_job = dg.define_asset_job("scaling_batch", selection=dg.AssetSelection.groups("ingest", "deid", "images",
                                                                                          "embeddings"))
    index_job = dg.define_asset_job("scaling_index", selection=dg.AssetSelection.assets("faiss_index"))
    return dg.Definitions.merge(build_defs(settings), dg.Definitions(jobs=[batch_job, index_job]))


def _step_times(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, float, float]]:
    """(stage, start, end) of each step of a run, POSIX seconds."""
    return [(_stage(step.step_key), step.start_time, step.end_time) for step in instance.get_run_step_stats(run_id)
            if step.start_time is not None and step.end_time is not None]


def _land(work: Path, landing: Path, instances: int, seed: int) -> None:
    """At least ``instances`` generated instances (whole patients) moved into ``landing``."""
    gen = work / "gen"
    shutil.rmtree(gen, ignore_errors=True)
    patients = math.ceil(instances / STUDY.instances_per_patient)
    generate(gen / "dicom", gen / "truth", dataclasses.replace(STUDY, patients=patients, seed=seed))
    landing.mkdir(parents=True, exist_ok=True)
    for folder in (gen / "dicom").iterdir():
        folder.rename(landing / f"{seed}_{folder.name}")


def grow(work: Path, total: int, batch: int, budget: float) -> tuple[Settings, list[BatchFigures], dict[str, float]]:
    """Run batches until ``total`` instances (or ``budget`` seconds); `hca sql` best seconds after the first and
    the last batch."""
    settings = Settings(data_dir=str(work / "data"), settle_seconds=0.0)
    settings.ensure_restricted()
    (work / "dagster_home").mkdir(parents=True)
    instance = dg.DagsterInstance.local_temp(str(work / "dagster_home"), overrides=NO_TELEMETRY)
    defs = _defs(settings)
    batch_job, index_job = defs.resolve_job_def("scaling_batch"), defs.resolve_job_def("scaling_index")
    figures: list[BatchFigures] = []
    sql: dict[str, float] = {}
    corpus, started = 0, time.monotonic()
    with Sampler() as peak:
        while corpus < total and not (budget and figures and time.monotonic() - started > budget):
            target = min(total, FIRST if not figures else (corpus // batch + 1) * batch)
            _land(work, Path(settings.landing), target - corpus, seed=len(figures))
            claimed = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0.0)
            assert claimed is not None
            instance.add_dynamic_partitions(INGEST_BATCHES, [claimed.key])
            peak.reset()
            start = time.perf_counter()
            ran = batch_job.execute_in_process(instance=instance, partition_key=claimed.key)
            indexed = index_job.execute_in_process(instance=instance)
            wall = time.perf_counter() - start
            n = tables.RAW_INSTANCES.read(settings, where={"batch": claimed.key}, columns=["batch"]).num_rows
            corpus += n
            time.sleep(2 * peak.interval)  # a sample after the last step's end
            steps = _step_times(instance, ran.run_id) + _step_times(instance, indexed.run_id)
            seconds = {s: sum(e - b for st, b, e in steps if st == s) for s in STAGES}
            cpu = {s: sum(peak.cpu_between(b, e) for st, b, e in steps if st == s) for s in STAGES}
            build = tables.INDEX_BUILDS.read(settings, where={"run_id": indexed.run_id, "level": "image"}).to_pylist()[0]
            figures.append(BatchFigures(corpus, n, seconds, cpu, wall, peak.own, peak.tree,
                                        f"{build['index_type']} {build['ntotal']:,} ({build['mode']})", os.getloadavg()[0]))
            print(f"scaling: {corpus:,} instances, {wall:.0f} s for {n}: "
                  f"{ {k: round(v / n * 1000, 1) for k, v in seconds.items()} } ms/instance, "
                  f"CPU { {k: round(v / n * 1000, 1) for k, v in cpu.items()} } ms/instance, "
                  f"tree RSS {peak.tree / 2**20:.0f} MiB, {figures[-1].index}", flush=True)
            if len(figures) == 1:
                sql["first"] = time_sql(settings, 3)[0]
    sql["last"] = time_sql(settings, 3)[0]
    return settings, figures, sql


def rebuild(settings: Settings, work: Path) -> str:
    """What a from-scratch build of the grown image index chooses (IVF is only tried on a rebuild above
    ``EXACT_LIMIT``), and how long it takes."""
    version = embedder_code_version(settings)
    table = tables.EMBEDDINGS.read(settings, where={"code_version": version})
    start = time.perf_counter()
    manifest = index_embeddings(table, "image", work / "rebuilt", version)
    approximate = manifest.get("approximate") or {}
    assert isinstance(approximate, dict)
    detail = (f", nlist {approximate['nlist']}, nprobe {approximate['nprobe']}, recall@10 "
              f"{approximate['recall_at_10']:.3f} ({'accepted' if approximate['accepted'] else 'refused'})"
              if approximate else "")
    return (f"{manifest['type']} of {manifest['count']:,} vectors in {time.perf_counter() - start:.1f} s{detail}")


def sensor_tick(work: Path, partitions: int) -> tuple[float, float, float]:
    """Seconds of one landing-sensor tick with ``partitions`` committed, registered, successfully run batches:
    (setup, landing empty, one new file); each tick best of 3."""
    start = time.perf_counter()
    settings = Settings(data_dir=str(work / "data"), settle_seconds=0.0)
    settings.ensure_restricted()
    (work / "dagster_home").mkdir(parents=True)
    instance = dg.DagsterInstance.local_temp(str(work / "dagster_home"), overrides=NO_TELEMETRY)
    landing, raw = Path(settings.landing), Path(settings.raw_batches)
    landing.mkdir(parents=True)

    def succeeded(key: str) -> None:
        instance.add_run(dg.DagsterRun(job_name="ingest_job", run_id=str(uuid.uuid4()),
                                       status=dg.DagsterRunStatus.SUCCESS, tags={PARTITION_NAME_TAG: key}))

    keys = []
    for i in range(partitions):
        (landing / f"f{i}.dcm").write_bytes(b"\0" * 132)
        batch = claim(landing, raw, settle_seconds=0.0)
        assert batch is not None
        keys.append(batch.key)
        succeeded(batch.key)
    instance.add_dynamic_partitions(INGEST_BATCHES, keys)
    setup = time.perf_counter() - start
    resources = {"storage": SettingsResource.from_settings(settings)}
    empty, new = math.inf, math.inf
    for i in range(3):
        start = time.perf_counter()
        result = landing_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        empty = min(empty, time.perf_counter() - start)
        assert isinstance(result, dg.SkipReason), result
        (landing / f"new{i}.dcm").write_bytes(b"\0" * 132)
        start = time.perf_counter()
        result = landing_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        new = min(new, time.perf_counter() - start)
        assert isinstance(result, dg.SensorResult) and len(result.run_requests or []) == 1, result
        key = result.run_requests[0].partition_key
        assert key is not None
        instance.add_dynamic_partitions(INGEST_BATCHES, [key])
        succeeded(key)
    assert len(instance.get_dynamic_partitions(INGEST_BATCHES)) == partitions + 3
    return setup, empty, new


def bench_scaling(work: Path) -> list[str]:
    """The scaling section of RESULTS.md; sized by ``HCA_SCALING_TOTAL`` / ``_BATCH`` / ``_BUDGET_SECONDS``."""
    os.environ.setdefault("HCA_DEID_KEY", "benchmark-key-0123456789")
    total = int(os.environ.get("HCA_SCALING_TOTAL", "100000"))
    batch = int(os.environ.get("HCA_SCALING_BATCH", "5000"))
    budget = float(os.environ.get("HCA_SCALING_BUDGET_SECONDS", "0"))
    shutil.rmtree(work, ignore_errors=True)
    started, load_before = time.perf_counter(), os.getloadavg()
    setup, empty, new = sensor_tick(work / "sensor", PARTITIONS)
    settings, figures, sql = grow(work / "grow", total, batch, budget)
    rebuilt = rebuild(settings, work / "grow")
    shutil.rmtree(work, ignore_errors=True)
    per = [{s: f.seconds.get(s, 0.0) / f.instances for s in STAGES} for f in figures]
    cpu = [{s: f.cpu.get(s, 0.0) / f.instances for s in STAGES} for f in figures]
    lines = [
        SECTION, "",
        f"`HCA_SCALING_TOTAL={total} HCA_SCALING_BATCH={batch} python -m benchmarks.run scaling` "
        f"({time.perf_counter() - started:.0f} s in all; {'stopped by its time budget at ' if figures[-1].corpus < total else ''}"
        f"{figures[-1].corpus:,} instances). Generated studies with small slices "
        f"(per patient {STUDY.instances_per_patient} instances: CT {STUDY.ct_slices}×{STUDY.ct_size}², "
        f"MR {STUDY.mr_slices}×{STUDY.mr_size}², CR/DX {STUDY.cxr_size}², US 640×480), one claimed batch per row, "
        "each one Dagster run of the real assets (ingest → de-identification → images → embeddings, blocking checks "
        "and expectation suites included; catalogue, segmentation, evaluation and dbt left out) on one partition, "
        f"then a run of `faiss_index`; default settings ({settings.workers} workers, OCR screening on). "
        "Per stage, ms per instance as wall / CPU: the stage's Dagster step seconds, and the CPU seconds of this "
        "process and all its workers during those steps (from /proc every 0.25 s: not inflated by other processes' "
        "load), ÷ the batch's instances; wall s = both runs. RSS = peak RSS of "
        "this process / peak PSS of it with all its worker processes (sampled every 0.25 s). **Load average** "
        f"{load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f} before, {os.getloadavg()[0]:.1f} at the end "
        "(2 cores shared with other work: wall times are inflated when it is above 2; the per-row load is in the table).",
        "",
        "| corpus | batch | " + " | ".join(f"{s} ms/inst wall / CPU" for s in STAGES)
        + " | wall s | inst/s | RSS / tree PSS MiB | image index after | load |",
        "|---:|---:|" + "---:|" * len(STAGES) + "---:|---:|---:|---|---:|",
    ]
    for f, p, c in zip(figures, per, cpu, strict=True):
        lines.append(f"| {f.corpus:,} | {f.instances:,} | "
                     + " | ".join(f"{p[s] * 1000:.1f} / {c[s] * 1000:.1f}" for s in STAGES)
                     + f" | {f.run_wall:.0f} | {f.instances / f.run_wall:.0f} | {f.rss_own / 2**20:.0f} / "
                       f"{f.rss_tree / 2**20:.0f} | {f.index} | {f.load:.1f} |")
    mark = {}
    for size in (1_000, 10_000, 100_000):
        at = next((i for i, f in enumerate(figures) if f.corpus >= size), None)
        if at is not None:
            mark[size] = at
    ref = mark.get(10_000, min(1, len(figures) - 1))  # the 1k batch carries each run's fixed costs alone
    last = len(figures) - 1
    drift = ", ".join(f"{s} {cpu[last][s] / cpu[ref][s]:.2f}× ({per[last][s] / per[ref][s]:.2f}×)"
                      for s in STAGES if per[ref][s] and cpu[ref][s])
    seconds = sum(cpu[last].values())
    lines += [
        "",
        f"Per-instance CPU (wall) of the last batch ({figures[last].corpus:,}) against the batch reaching "
        f"{figures[ref].corpus:,}: {drift} (goal: each within 0.8–1.2×; the first, 1k batch also carries every "
        "run's fixed costs — worker start-up, model loading — alone). Peak tree PSS "
        f"{min(f.rss_tree for f in figures) / 2**20:.0f}–{max(f.rss_tree for f in figures) / 2**20:.0f} MiB over the "
        f"batches (process alone {min(f.rss_own for f in figures) / 2**20:.0f}–"
        f"{max(f.rss_own for f in figures) / 2**20:.0f} MiB).",
        "",
        "What reads every batch on each run (from the code; the ingest and index columns measure it): `raw_dicom` "
        "reads three columns of all of `raw_instances` (its dedupe map) and its check all SOP Instance UIDs; "
        "`faiss_index` reads every embedding row (image and series level, all 1024 floats) and the index's id file, "
        "and its check reads them again and reloads and hashes the index file. Every other stage reads only its "
        "own batch (`where={\"batch\": …}`).",
        "",
        f"**FAISS**: the index grows by extension (`mode` above), so it stays exact however large it gets: IVF is "
        f"only tried when an index is built from scratch above {EXACT_LIMIT:,} vectors. A from-scratch build of the "
        f"grown image index: {rebuilt}.",
        "",
        f"**`hca sql \"{QUERY}\"`** (whole process, best of 3) on the grown lake: {sql['first']:.2f} s after the "
        f"first batch, {sql['last']:.2f} s after the last ({len(figures)} batches).",
        "",
        f"**Landing sensor with {PARTITIONS:,} batch partitions** (committed batch folders, registered dynamic "
        "partitions and a successful run each; SQLite instance; tick = `landing_sensor` evaluated with "
        f"`build_sensor_context`, best of 3): landing empty **{empty:.2f} s**, one new file (claimed into a new "
        f"batch, one run requested) **{new:.2f} s** (goal < 1 s); setting up the {PARTITIONS:,} batches took "
        f"{setup:.0f} s.",
        "",
        f"**Extrapolation**: the last batch cost {seconds * 1000:.1f} CPU ms per instance over the five stages, "
        f"i.e. ≈ **{86_400 / seconds:,.0f} instances/day per core** at full use (Dagster's own work included); a "
        f"hospital network's 10⁵–10⁶ instances/day needs ≈ {100_000 * seconds / 86_400:.1f}–"
        f"{1_000_000 * seconds / 86_400:.1f} such cores — for these small slices, before segmentation, catalogue, "
        "evaluation and dbt, and before real-size images, whose de-identification (OCR screening) and rendering "
        "cost more (sections above).",
        "",
    ]
    return lines
