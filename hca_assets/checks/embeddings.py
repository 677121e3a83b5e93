"""Checks of the embeddings group: vectors valid (blocking), drift (a warning) and mostly in distribution
(blocking)."""

from collections.abc import Mapping

import dagster as dg
import numpy as np

from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.models.base import vectors_of

EMBEDDING_CHECKS = [
    dg.AssetCheckSpec("vectors_valid", asset="embeddings", blocking=True,
                      description="model dimension, finite values, unit norm, one row per image, no duplicate keys"),
]


def embedding_checks(settings: Settings, batch: str, version: str, *, expected: int, dim: int) -> list[dg.AssetCheckResult]:
    table = tables.EMBEDDINGS.read(settings, where={"batch": batch, "code_version": version})
    vectors = vectors_of(table)
    keys = list(zip(table.column("sop_instance_uid").to_pylist(), table.column("frame").to_pylist(), strict=True))
    finite = bool(np.isfinite(vectors).all()) if vectors.size else True
    norms_ok = bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)) if vectors.size else True
    shape_ok = vectors.shape[1] == dim if vectors.size else True
    return [dg.AssetCheckResult(
        check_name="vectors_valid",
        passed=finite and norms_ok and shape_ok and len(set(keys)) == len(keys) == expected,
        metadata={"rows": len(keys), "expected": expected, "dim": int(vectors.shape[1]) if vectors.size else 0,
                  "finite": finite, "unit_norm": norms_ok, "unique": len(set(keys)) == len(keys)},
    )]




DRIFT_FLAG = "no_embedding_drift"
OOD_MAJORITY = "mostly_in_distribution"

DRIFT_CHECKS = [
    dg.AssetCheckSpec(DRIFT_FLAG, asset="embedding_drift", blocking=False,
                      description="warns when the batch's MMD² exceeds the reference window's calibrated threshold "
                                  "with a permutation p-value below HCA_DRIFT_ALPHA"),
    dg.AssetCheckSpec(OOD_MAJORITY, asset="embedding_drift", blocking=True,
                      description="fails when more than HCA_OOD_MAX_FRACTION of the batch's images are out of "
                                  "distribution (k-th reference neighbour beyond the calibrated threshold)"),
]


def drift_checks(settings: Settings, row: Mapping[str, object]) -> list[dg.AssetCheckResult]:
    """The two check results for one ``drift`` row; what could not be measured (no reference yet, or one image:
    no distribution) passes, saying so."""
    note = {"note": f"{row['status']}: nothing to compare", "reference_batches": len(row["reference_batches"]),
            "images": int(row["rows"])}
    if row["mmd2"] is None:
        drift = dg.AssetCheckResult(check_name=DRIFT_FLAG, passed=True, metadata=note)
    else:
        drift = dg.AssetCheckResult(
            check_name=DRIFT_FLAG, passed=not row["drifted"], severity=dg.AssetCheckSeverity.WARN,
            metadata={"mmd2": round(float(row["mmd2"]), 5), "threshold": round(float(row["threshold"]), 5),
                      "p_value": round(float(row["p_value"]), 4), "alpha": settings.drift_alpha})
    if row["ood_fraction"] is None:
        return [drift, dg.AssetCheckResult(check_name=OOD_MAJORITY, passed=True, metadata=note)]
    ood = float(row["ood_fraction"])
    return [drift, dg.AssetCheckResult(check_name=OOD_MAJORITY, passed=ood <= settings.ood_max_fraction,
                                       severity=dg.AssetCheckSeverity.ERROR,
                                       metadata={"ood_fraction": round(ood, 4), "max_fraction": settings.ood_max_fraction,
                                                 "images": int(row["rows"])})]
