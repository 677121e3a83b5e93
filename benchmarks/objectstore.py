"""`python -m benchmarks.run objectstore`: the demo graph (`hca demo --patients 2`) with its root on Azurite (npm,
loopback) against the same run on a local folder, and the file layer's push/pull rate against a local copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hca_assets._infra.storage import Store
from hca_assets_tests.services import azurite, azurite_connection

HCA = str(Path(sys.executable).parent / "hca")


def _demo(env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([HCA, "demo", "--fresh", "--patients", "2", "--seed", "0"], env=env, check=False,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"hca demo failed under {env['HCA_DATA_DIR']}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def bench_objectstore(work: Path) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HCA_", "AZURE_", "DAGSTER_"))}
    base["HCA_DEID_KEY"] = "benchmark-key-0123456789"
    local = _demo(base | {"HCA_DATA_DIR": str(work / "local")})
    with azurite() as port:
        conn = azurite_connection(port)
        store_env = base | {"HCA_DATA_DIR": "az://hca/bench", "HCA_WORK_DIR": str(work / "copy"),
                            "AZURE_STORAGE_CONNECTION_STRING": conn}
        remote = _demo(store_env)
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = conn
        try:
            store = Store("az://hca/bench")
            files = [p for p in (work / "copy" / "deid").rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files) / 2**20
            start = time.perf_counter()
            pulled = store.pull("deid", work / "pulled")
            pull_s = time.perf_counter() - start
            start = time.perf_counter()
            shutil.copytree(work / "copy" / "deid", work / "copied")
            copy_s = time.perf_counter() - start
            start = time.perf_counter()
            pushed = store.push(work / "pulled", "deid")  # nothing differs: the cost of one listing
            noop_s = time.perf_counter() - start
        finally:
            del os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    return [
        "## Object-store root (Azurite)",
        "",
        "`hca demo --patients 2` (the whole graph: ingest → de-id → images → embeddings → index → segmentation → "
        "evaluation → dbt), one process tree, wall clock:",
        "",
        "| root | seconds | ratio |",
        "|---|---:|---:|",
        f"| local folder | {local:.1f} | 1.00 |",
        f"| `az://` on Azurite (loopback) | {remote:.1f} | {remote / local:.2f} |",
        "",
        f"File layer: pulling the published de-identified zone ({len(files)} files, {size:.1f} MiB) from Azurite into an "
        f"empty working copy: {pull_s:.2f} s ({pulled / pull_s:.0f} files/s, {size / pull_s:.1f} MiB/s) against "
        f"`shutil.copytree` of the same folder {copy_s:.2f} s ({pull_s / copy_s:.1f}×); a push of an unchanged folder "
        f"(one listing, {pushed} files sent): {noop_s * 1000:.0f} ms.",
        "Azurite runs on the same 2 cores (Node.js), so both the store and its client compete with the pipeline.",
    ]
