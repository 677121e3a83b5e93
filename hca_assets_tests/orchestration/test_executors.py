"""Executors chosen by HCA_EXECUTOR, and the Kubernetes deployment checked as far as no cluster allows: the
step-pod config against dagster-k8s' executor schema, the Helm values against deploy/dagster.yaml and the
executor's ConfigMap/Secret names (no helm binary here: `helm template` is not run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster_celery import celery_executor
from dagster_k8s import k8s_job_executor

from hca_assets.config import EXECUTORS, Settings
from hca_assets.definitions import build_defs
from hca_assets.orchestration.executors import CELERY_EXECUTOR_CONFIG, K8S_EXECUTOR_CONFIG, executor_def

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_executor_by_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_EXECUTOR", "k8s")
    assert Settings.from_env().executor == "k8s"
    names = {}
    for name in EXECUTORS:
        job = build_defs(Settings(data_dir=settings.data_dir, executor=name)).resolve_job_def("ingest_job")
        names[name] = job.executor_def.name
    assert names == {"default": "multi_or_in_process_executor", "in_process": "in_process",
                     "multiprocess": "multiprocess", "celery": "celery", "k8s": "k8s"}
    with pytest.raises(ValueError, match="`executor` must be one of"):
        Settings(data_dir=settings.data_dir, executor="slurm")
    with pytest.raises(ValueError, match="executor must be one of"):
        executor_def("slurm")


def test_k8s_executor_config_matches_schema() -> None:
    result = validate_config(k8s_job_executor.config_schema.config_type, K8S_EXECUTOR_CONFIG)
    assert result.success, [e.message for e in result.errors or []]
    resources = K8S_EXECUTOR_CONFIG["step_k8s_config"]["container_config"]["resources"]  # type: ignore[index]
    requested = int(resources["requests"]["memory"].removesuffix("Gi"))
    assert requested >= 3 and int(resources["limits"]["memory"].removesuffix("Gi")) > requested
    broken = {**K8S_EXECUTOR_CONFIG, "max_concurrent": "many"}  # the schema does reject what k8s would
    assert not validate_config(k8s_job_executor.config_schema.config_type, broken).success


def test_celery_executor_config_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("HCA_CELERY_BACKEND", "redis://127.0.0.1:6379/1")
    processed = process_config(celery_executor.config_schema.config_type, CELERY_EXECUTOR_CONFIG)
    assert processed.success and processed.value["broker"] == "redis://127.0.0.1:6379/0"  # type: ignore[index]


def test_helm_values_agree_with_instance_and_executor() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert {"name": "HCA_EXECUTOR", "value": "k8s"} in code["env"]
    assert code["dagsterApiGrpcArgs"] == ["-m", "hca_assets.definitions"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for pods in (code, launcher):  # the code server, run pods and step pods see the same settings and secrets
        assert [m["name"] for m in pods["envConfigMaps"]] == K8S_EXECUTOR_CONFIG["env_config_maps"]
        assert [s["name"] for s in pods["envSecrets"]] == K8S_EXECUTOR_CONFIG["env_secrets"]
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    assert queue["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert "EXPOSE 3030" in (DEPLOY / "Dockerfile").read_text() and code["port"] == 3030
