"""Declarative automation conditions of the per-batch assets (evaluated by ``automation_sensor``)."""

import dagster as dg

__all__ = ["EAGER_AFTER_CHECKS", "REPROCESS"]

REPROCESS = (
    (dg.AutomationCondition.code_version_changed() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("reprocess")
"""Re-materialize every batch of a per-batch asset once its code_version changed (a new embedder, preprocessing,
prompt set or de-identification profile in the settings the code location was loaded with), or once a dependency
was updated by a run that did not also run it (a reprocessed upstream asset). New batches are not its business:
the landing sensor's ingest run materializes every per-batch asset, and a failed ingest run is not retried here."""

EAGER_AFTER_CHECKS = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
"""Materialize an all-batches asset (index, evaluations, adapter) or an export once its dependencies were updated
and their blocking checks passed."""
