"""Issue 10 item 9: images per second through the azure (MedImageParse) segmenter against the local stub endpoint,
with 1, 2 and 4 requests in flight, at no service latency (what the client and the stub cost on this machine)
and at a simulated per-request service latency (what concurrency buys when the endpoint is the bottleneck)."""

from __future__ import annotations

import os
import time

import numpy as np

from hca_assets.models.endpoint import Endpoint
from hca_assets.models.medimageparse import MedImageParseClient
from hca_assets.segmentation.azure import AzureSegmenter
from hca_assets.segmentation.strategies import pick_strategy
from hca_assets_tests.stubs import MipStub

SLICES, SIDE = 12, 512  # one 512² CT volume of 12 axial slices
LATENCIES = (0.0, 0.5)  # seconds the stub waits before answering each request
CONCURRENCY = (1, 2, 4)


class LatencyStub(MipStub):
    """The strict MedImageParse stub answering each request after ``latency`` seconds (threads sleep in parallel)."""

    latency = 0.0

    def answer(self, rows: list[list[object]], fault: str | None) -> list[dict[str, object]]:
        time.sleep(self.latency)
        return super().answer(rows, fault)


def ct_volume() -> np.ndarray:
    """Air around a soft-tissue body with two lungs, HU, RAS+ (x, y, z)."""
    x, y = np.meshgrid(np.linspace(-1, 1, SIDE), np.linspace(-1, 1, SIDE), indexing="ij")
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 < 1
    lungs = ((np.abs(x) - 0.4) / 0.25) ** 2 + (y / 0.4) ** 2 < 1
    hu = np.where(lungs, -850.0, np.where(body, 40.0, -1000.0)).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 10, (SIDE, SIDE, SLICES)).astype(np.float32)
    return hu[..., np.newaxis] + noise


def bench_mip() -> list[str]:
    """Best of 3 per cell; each cell segments the volume with the abdominal CT strategy's prompts."""
    from benchmarks.timing import REPEATS, best_of

    prompts = pick_strategy("CT", "ABDOMEN").prompts
    volume = ct_volume()
    load_before = os.getloadavg()
    rows = []
    with LatencyStub() as stub:
        client = MedImageParseClient(Endpoint(stub.url, stub.key, timeout=60.0))
        for latency in LATENCIES:
            stub.latency = latency
            cells = []
            for n in CONCURRENCY:
                segmenter = AzureSegmenter(client, concurrency=n)
                before = stub.requests
                seconds = best_of(lambda s=segmenter: s.segment(volume, (0.7, 0.7, 2.5), prompts))
                per_run = (stub.requests - before) // REPEATS
                cells.append((n, per_run / seconds))
            base = cells[0][1]
            rows += [f"| {latency:.1f} | {n} | {rate:.1f} | {rate / base:.2f}× |" for n, rate in cells]
    return [
        "## MedImageParse segmenter against the stub endpoint",
        "",
        f"`AzureSegmenter` on one {SIDE}²×{SLICES} CT volume with the abdominal CT strategy's {len(prompts)} prompts: "
        f"{2 * SLICES} requests (each slice once in the soft-tissue window with {len(prompts) - 1} prompts and once in "
        "the lung window), each a letterboxed 1024² RGB PNG; the stub (`hca_assets_tests.stubs.MipStub`, same "
        "process, loopback) checks the request and answers one 1024² mask per prompt, which the client decodes and "
        "maps back to the 512² slice. Images/s = requests answered per second, best of 3. With no latency the "
        f"figure is this machine's cost of client and stub together on {os.cpu_count()} cores (PNG encode/decode, "
        "base64, masks): more threads help only as far as free cores and the GIL allow. With a simulated service "
        "latency it shows what concurrency buys against a real endpoint, where GPU inference dominates; the real "
        "limit is then the deployment's `max_concurrent_requests_per_instance` × instances (HCA_MIP_CONCURRENCY "
        "per series, the Dagster pool `segmentation_endpoint` across runs).",
        "",
        f"Load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} before, "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} after.",
        "",
        "| service latency s | requests in flight | images/s | vs 1 |",
        "|---:|---:|---:|---:|",
        *rows,
        "",
    ]
