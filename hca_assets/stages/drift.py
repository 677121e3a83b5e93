"""Compare one batch's image embeddings with the reference window: the ``drift`` row and its ``ood_scores`` rows.

Reads are bounded: the batch keys of one code_version (two narrow columns), then the vectors of this batch and of
the reference window only. The window is the earliest ``drift_reference_batches`` batches of the code_version: a
fixed baseline (the data the model and index were accepted on), so slow drift accumulates against it instead of
being absorbed as a sliding window of recent batches would. A batch inside the window is compared with the rest of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from hca_assets.config import Settings
from hca_assets.evaluation.drift import (
    OodReference,
    mmd_test,
    rbf_bandwidth,
    reference_threshold,
    reference_window,
    shift_summary,
)
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.models.base import vectors_of

__all__ = ["DriftOutcome", "DriftRun", "drift_batch", "run_drift"]

PLOTTED = 40  # the latest batches the history (and its plot) shows

_COLUMNS = ["batch", "sop_instance_uid", "frame", "patient_pseudonym", "modality", "vector"]


@dataclass(frozen=True)
class DriftOutcome:
    drift: pa.Table  # one row
    ood: pa.Table  # one row per image of the batch (none without a reference)


def _vectors(settings: Settings, batches: list[str], version: str) -> pa.Table:
    parts = [tables.EMBEDDINGS.read(settings, where={"batch": b, "code_version": version}, columns=_COLUMNS)
             for b in batches]
    return pa.concat_tables(parts) if parts else tables.EMBEDDINGS.schema.empty_table().select(_COLUMNS)


def drift_batch(settings: Settings, batch: str, version: str) -> DriftOutcome:
    """Drift statistic, shift summary and per-image OOD scores of ``batch``'s ``version`` embeddings."""
    known = tables.EMBEDDINGS.read(settings, where={"code_version": version}, columns=["batch"]).column("batch")
    window = reference_window(known.unique().to_pylist(), batch, settings.drift_reference_batches)
    current = _vectors(settings, [batch], version)
    reference = _vectors(settings, window, version)
    row: dict[str, object] = {"batch": batch, "code_version": version, "reference_batches": window,
                              "reference_rows": reference.num_rows, "rows": current.num_rows, "drifted": False,
                              "computed_at": datetime.now(UTC)}
    if current.num_rows == 0 or reference.num_rows < 2:
        row["status"] = "empty" if current.num_rows == 0 else "no_reference"
        return DriftOutcome(pa.Table.from_pylist([row], schema=tables.DRIFT.schema), tables.OOD_SCORES.schema.empty_table())
    x, y = vectors_of(reference), vectors_of(current)
    seed, cap = 0, settings.drift_max_samples
    ood = OodReference.fit(x, reference.column("patient_pseudonym").to_pylist(), k=settings.ood_k,
                           quantile=settings.ood_quantile, max_samples=2 * cap, seed=seed)
    kth, score, percentile = ood.score(y)
    flags = score > 1.0
    row |= {"status": "ood_only", "ood_threshold": ood.threshold, "ood_fraction": float(flags.mean())}
    if current.num_rows >= 2:  # one image (a single-study batch) has OOD scores but no distribution to compare
        bandwidth = rbf_bandwidth(x, max_samples=cap, seed=seed)
        test = mmd_test(x, y, bandwidth=bandwidth, permutations=settings.drift_permutations, seed=seed,
                        max_samples=cap)
        ref_batches = np.asarray(reference.column("batch").to_pylist())
        threshold = reference_threshold([x[ref_batches == b] for b in window], bandwidth=bandwidth,
                                        floor=settings.drift_min_mmd2, seed=seed, max_samples=cap)
        row |= {"status": "compared", "mmd2": test.statistic, "p_value": test.p_value, "threshold": threshold,
                "bandwidth": bandwidth, "drifted": test.statistic > threshold and test.p_value < settings.drift_alpha,
                **shift_summary(x, y)}
    scores = pa.table({"batch": current.column("batch"), "sop_instance_uid": current.column("sop_instance_uid"),
                       "frame": current.column("frame"), "code_version": [version] * current.num_rows,
                       "modality": current.column("modality"), "kth_distance": kth, "score": score,
                       "percentile": percentile, "ood": flags})
    return DriftOutcome(pa.Table.from_pylist([row], schema=tables.DRIFT.schema),
                        scores.select(tables.OOD_SCORES.schema.names).cast(tables.OOD_SCORES.schema))


@dataclass(frozen=True)
class DriftRun:
    """One batch compared: its outcome, the write of ``drift``, the latest batches' (batch, MMD², threshold), seconds."""

    outcome: DriftOutcome
    written: WriteResult
    history: list[tuple[str, float | None, float | None]]
    seconds: float

    @property
    def row(self) -> dict[str, object]:
        return self.outcome.drift.to_pylist()[0]


def run_drift(settings: Settings, batch: str, version: str) -> DriftRun:
    """Compare ``batch`` with the reference window and write its ``drift`` row and ``ood_scores`` (this version's
    slice only)."""
    start = time.perf_counter()
    out = drift_batch(settings, batch, version)
    own = {"batch": batch, "code_version": version}
    written = tables.DRIFT.write(settings, out.drift, match=own)
    tables.OOD_SCORES.write(settings, out.ood, match=own)
    history = tables.DRIFT.read(settings, where={"code_version": version},  # one small row per batch
                                columns=["batch", "mmd2", "threshold"]).sort_by("batch").to_pylist()[-PLOTTED:]
    return DriftRun(out, written, [(r["batch"], r["mmd2"], r["threshold"]) for r in history],
                    time.perf_counter() - start)
