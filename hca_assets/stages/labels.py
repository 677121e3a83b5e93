"""Class and lesion labels of one published batch, from the synthetic ground truth through the crosswalk (what the
``labels`` asset calls)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from hca_assets._infra.storage import pull_file
from hca_assets.config import Settings
from hca_assets.evaluation.labels import labels_from_truth
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult

__all__ = ["LabelsRun", "run_labels"]


@dataclass(frozen=True)
class LabelsRun:
    """One batch's label rows and their write."""

    table: pa.Table
    written: WriteResult


def run_labels(settings: Settings, batch: str) -> LabelsRun:
    """The ``labels`` rows of ``batch``: each published instance's ground truth, found by its original UID."""
    crosswalk = tables.DEID_CROSSWALK.read(settings, where={"batch": batch}).to_pylist()
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist()
    pull_file(settings, settings.truth_file)
    table = labels_from_truth(batch, Path(settings.truth_file), crosswalk, instances)
    return LabelsRun(table, tables.LABELS.write(settings, table, match={"batch": batch}))
