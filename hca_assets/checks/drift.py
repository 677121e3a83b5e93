"""Checks of embedding_drift: drift flagged (WARN, non-blocking); most of a batch out of distribution (ERROR, blocking)."""

from collections.abc import Mapping

import dagster as dg

from hca_assets.config import Settings

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
