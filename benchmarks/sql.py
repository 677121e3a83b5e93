"""`python -m benchmarks.run sql`: a whole `hca sql` process grouping generated ``deid_instances`` rows (one Delta
partition per batch, written as the assets write them), at 1M and 10M rows, against the issue's goals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from hca_assets.config import Settings
from hca_assets.lake import registry

QUERY = "SELECT modality, count(*) AS n FROM deid_instances GROUP BY 1 ORDER BY 1"  # the group-by
MODALITIES = np.array(["CT", "MR", "CR", "DX", "US"])
CASES = ((1_000_000, 200, 0.5), (10_000_000, 200, 2.0))  # rows, batches, goal in seconds (whole process)


def write_rows(settings: Settings, rows: int, batches: int) -> None:
    """``rows`` generated de-identified instance rows in ``batches`` batches, each written by the registry."""
    rng = np.random.default_rng(0)
    per = rows // batches
    now = pa.array([datetime.now(UTC)] * per, pa.timestamp("us", tz="UTC"))
    for b in range(batches):
        i = np.arange(b * per, (b + 1) * per)
        sop = pa.array(np.char.add("2.25.1", i.astype(str)))
        table = pa.table({
            "batch": pa.array([f"b{b:05d}"] * per), "sop_instance_uid": sop,
            "series_instance_uid": pa.array(np.char.add("2.25.2", (i // 100).astype(str))),
            "study_instance_uid": pa.array(np.char.add("2.25.3", (i // 400).astype(str))),
            "patient_pseudonym": pa.array(np.char.add("PSN", (i // 2000).astype(str))),
            "modality": pa.array(MODALITIES[rng.integers(0, len(MODALITIES), per)]),
            "sop_class_uid": pa.array(["1.2.840.10008.5.1.4.1.1.2"] * per),
            "transfer_syntax": pa.array(["1.2.840.10008.1.2.1"] * per), "path": sop, "sha256": sop,
            "burned_in": pa.array(["none"] * per), "published_at": now})
        registry.DEID_INSTANCES.write(settings, table, match={"batch": f"b{b:05d}"})


def time_sql(settings: Settings, repeats: int, *, audited: bool = True) -> tuple[float, str]:
    """Best wall seconds of ``repeats`` whole ``hca sql`` processes, and the last one's output; not ``audited``:
    the same query through ``run_sql`` in a bare process (no ``audit_log`` row), to show what the row costs."""
    hca = [str(Path(sys.executable).with_name("hca")), "sql", QUERY, "--format", "csv"]
    bare = [sys.executable, "-c", "from hca_assets.cli import _settings, run_sql; "
            f"print(run_sql(_settings(), {QUERY!r}, restricted=False, fmt='csv'), end='')"]
    env = {**os.environ, "HCA_DATA_DIR": settings.data_dir}
    best, out = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(hca if audited else bare, env=env, capture_output=True, text=True, check=True,
                              timeout=300)
        best, out = min(best, time.perf_counter() - start), done.stdout
    return best, out


def bench_sql(work: Path, repeats: int) -> list[str]:
    """The `sql` section of RESULTS.md."""
    lines = ["## SQL over the lake (`hca sql`, whole process)", "",
             f"`hca sql \"{QUERY}\"` as a subprocess (start-up, Delta log, views, query, output); generated rows "
             "written through the registry, one Delta partition per batch. DuckDB reads the active Parquet files "
             "the Delta log lists, natively; no pyarrow, pandas or polars import on this path.", "",
             "| rows | batches | write s | `hca sql` s | without its audit_log row s | goal s |",
             "|---:|---:|---:|---:|---:|---:|"]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - start
    for rows, batches, goal in CASES:
        shutil.rmtree(work, ignore_errors=True)
        settings = Settings(data_dir=str(work / "data"))
        start = time.perf_counter()
        write_rows(settings, rows, batches)
        written = time.perf_counter() - start
        seconds, out = time_sql(settings, repeats)
        bare, bare_out = time_sql(settings, repeats, audited=False)
        for text in (out, bare_out):
            counted = sum(int(line.split(",")[1]) for line in text.splitlines()[1:])
            assert counted == rows, f"{counted} rows counted, {rows} written"
        lines.append(f"| {rows:,} | {batches} | {written:.1f} | **{seconds:.2f}** | {bare:.2f} | < {goal} |")
    shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    return [*lines, "", f"Best of {repeats} runs each. An empty Python start-up (`python -c pass`, this venv) takes "
            f"{python:.2f} s of each figure. Each `hca` command appends its row to `audit_log` (issue 11 item 6): "
            "pyarrow (the row is parsed from JSON: no pandas) and a Delta commit, the difference between the two columns. Load average "
            f"{load:.1f} on 2 cores at the end of the part (other processes).", ""]
