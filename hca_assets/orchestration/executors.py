"""The Dagster executor runs use, chosen by ``Settings.executor`` (``HCA_EXECUTOR``); deploy/ holds the rest.

- ``default``: Dagster's own (multiprocess in a deployment, in-process under ``materialize``); unchanged.
- ``celery``: steps go to Celery workers (``dagster-celery worker start -A dagster_celery.app``) through the
  broker in ``HCA_CELERY_BROKER`` (e.g. ``redis://host:6379/0``), results through ``HCA_CELERY_BACKEND``.
- ``k8s``: one Kubernetes Job per step (``dagster-k8s``), image and namespace inherited from the
  ``K8sRunLauncher`` that deploy/helm/values.yaml configures; :data:`K8S_EXECUTOR_CONFIG` sizes the pods.
"""

from __future__ import annotations

import dagster as dg

from hca_assets.config import EXECUTORS, Limits

__all__ = ["CELERY_EXECUTOR_CONFIG", "K8S_EXECUTOR_CONFIG", "executor_def"]

CELERY_EXECUTOR_CONFIG = {"broker": {"env": "HCA_CELERY_BROKER"}, "backend": {"env": "HCA_CELERY_BACKEND"}}

# A step pod holds HCA_WORKERS=2 file workers: at the pixel limit ~10 bytes per sample each (Limits), ~3 GiB.
_STEP_MEMORY_GIB = 2 * 10 * Limits.max_pixels // (1 << 30) + 1
K8S_EXECUTOR_CONFIG = {
    "max_concurrent": 8,  # step pods per run; model endpoints are bounded by their pools (dagster.yaml)
    "env_vars": ["HCA_WORKERS=2"],
    "env_config_maps": ["hca-settings"],  # HCA_DATA_DIR (object-store URI), HCA_EMBEDDER, ... (docs/operations.md)
    "env_secrets": ["hca-secrets"],  # HCA_DEID_KEY and the object store's / endpoints' credentials
    "step_k8s_config": {"container_config": {"resources": {
        "requests": {"cpu": "2", "memory": f"{_STEP_MEMORY_GIB}Gi"},
        "limits": {"cpu": "2", "memory": f"{_STEP_MEMORY_GIB + 1}Gi"}}}},
}


def executor_def(name: str) -> dg.ExecutorDefinition | None:
    """The executor ``name`` (one of :data:`hca_assets.config.EXECUTORS`) stands for; None: Dagster's default."""
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        from dagster_celery import celery_executor  # the [deploy] extra

        return celery_executor.configured(CELERY_EXECUTOR_CONFIG, name="celery")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # the [deploy] extra

        return k8s_job_executor.configured(K8S_EXECUTOR_CONFIG, name="k8s")
    return None
