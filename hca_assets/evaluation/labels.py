"""Labels for evaluation: ground truth keyed by original UIDs, joined through the restricted crosswalk to
pseudonymous instances. Only class labels and pseudonyms leave; the join happens in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from hca_assets.lake.schemas import LABELS

__all__ = ["labels_from_truth"]


def labels_from_truth(batch: str, truth_file: Path, crosswalk: list[dict[str, object]],
                      instances: list[dict[str, object]]) -> pa.Table:
    """Rows of ``labels`` for the batch's published instances that have ground truth (none if no truth file)."""
    if not truth_file.is_file():
        return LABELS.empty_table()
    truth = {}
    with truth_file.open() as fh:
        for line in fh:
            row = json.loads(line)
            truth[row["sop_instance_uid"]] = row
    original_of = {str(r["pseudonym"]): str(r["original"]) for r in crosswalk if r["kind"] == "instance"}
    out = []
    for inst in instances:
        t = truth.get(original_of.get(str(inst["sop_instance_uid"]), ""))
        if t is None:
            continue
        out.append({
            "batch": batch, "sop_instance_uid": inst["sop_instance_uid"], "series_instance_uid": inst["series_instance_uid"],
            "patient_pseudonym": inst["patient_pseudonym"], "class_label": t["class_label"], "body_region": t["body_region"],
            "lesion_present": bool(t["lesion_present"]), "lesion_type": t["lesion_type"],
            "study_has_lesion": bool(t["study_has_lesion"]), "source": "synthetic_truth",
        })
    return pa.Table.from_pylist(out, schema=LABELS)
