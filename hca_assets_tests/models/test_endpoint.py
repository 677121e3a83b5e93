"""The shared endpoint transport against the strict local stub: retries and their limits, Retry-After, the
circuit breaker's single half-open trial, PHI-free errors with status and reason, endpoint lookup."""

from __future__ import annotations

import base64
import io
import pickle
import sys
import threading
import time
import tomllib
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from hca_assets.models.endpoint import (
    CircuitBreaker,
    CircuitOpenError,
    Endpoint,
    EndpointError,
    TransientEndpointError,
    resolve_endpoint,
)
from hca_assets_tests.stubs import MODEL_ERROR, Mi2Stub, MipStub

ROW = [["", "chest x-ray"]]
SECRET_TEXT = "DOE^JANE 1961-04-02"  # stands in for request content that must never reach an error message


@pytest.fixture
def stub():  # type: ignore[no-untyped-def]
    with Mi2Stub(slow_seconds=0.6) as server:
        yield server


def endpoint(stub: Mi2Stub, **kw: object) -> Endpoint:
    options = {"timeout": 0.4, "attempts": 6, "max_wait": 0.02, "breaker": CircuitBreaker(threshold=50), **kw}
    return Endpoint(stub.url, stub.key, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", ["500", "503", "429"])
def test_persistent_failure_surfaces_its_http_status_not_circuit_open(stub: Mi2Stub, code: str) -> None:
    stub.faults = [code] * 10
    ep = endpoint(stub, attempts=6, breaker=CircuitBreaker(threshold=5, reset_seconds=60))
    with pytest.raises(TransientEndpointError) as err:
        ep.score(ROW)
    assert not isinstance(err.value, CircuitOpenError) and err.value.status == int(code)
    assert stub.requests == 5  # the breaker opened at the 5th failure: no 6th attempt
    with pytest.raises(CircuitOpenError):
        ep.score(ROW)
    assert stub.requests == 5  # refused without contacting the endpoint


def test_transient_faults_are_retried(stub: Mi2Stub) -> None:
    stub.faults = ["429", "500", "503", "408", "malformed", "timeout", "reset"]
    reply = endpoint(stub, attempts=8).score(ROW)
    assert isinstance(reply, list) and "text_features" in reply[0] and stub.requests == 8


def test_retry_after_is_honoured(stub: Mi2Stub) -> None:
    stub.faults = ["429:1"]
    start = time.monotonic()
    endpoint(stub, max_wait=0.01).score(ROW)
    assert time.monotonic() - start >= 0.95 and stub.requests == 2


@pytest.mark.parametrize(("fault", "status", "reason", "requests_made"), [
    ("404", 404, "Not Found", 1), ("408", 408, "Request Timeout", 2), ("503", 503, "Service Unavailable", 2)])
def test_errors_carry_status_and_reason(stub: Mi2Stub, fault: str, status: int, reason: str, requests_made: int) -> None:
    stub.faults = [fault] * 2
    with pytest.raises(EndpointError) as err:
        endpoint(stub, attempts=2).score(ROW)
    assert (err.value.status, err.value.reason) == (status, reason) and f"HTTP {status} {reason}" in str(err.value)
    assert stub.requests == requests_made


def test_424_reports_the_model_error_headers_phi_free_and_is_not_retried(stub: Mi2Stub) -> None:
    stub.faults = ["424"]
    with pytest.raises(EndpointError) as err:
        endpoint(stub).score([["", SECRET_TEXT]])
    e = err.value
    assert (e.status, e.reason) == (424, "Failed Dependency") and e.model_error == MODEL_ERROR
    assert "ms-azureml-model-error-reason: model_error: CUDA out of memory" in str(e)
    assert "ms-azureml-model-error-statuscode: 500" in str(e) and stub.requests == 1
    assert "DOE" not in str(e) and stub.key not in str(e)  # the stub echoed the text in its body; not reported
    again = pickle.loads(pickle.dumps(e))
    assert (again.status, again.model_error, str(again)) == (e.status, e.model_error, str(e))


def test_wrong_path_is_refused_not_retried(stub: Mi2Stub) -> None:
    with pytest.raises(EndpointError) as err:
        Endpoint(stub.url.removesuffix("score"), stub.key, attempts=3, max_wait=0.01).score(ROW)
    assert err.value.status == 404 and stub.requests == 1


def test_half_open_lets_exactly_one_trial_through() -> None:
    breaker = CircuitBreaker(threshold=2, reset_seconds=0.2)
    breaker.record(False)
    breaker.before()
    breaker.record(False)
    with pytest.raises(CircuitOpenError, match="open after 2"):
        breaker.before()
    time.sleep(0.25)
    barrier, passed = threading.Barrier(8), []

    def call() -> None:
        barrier.wait()
        try:
            breaker.before()
            passed.append(1)
        except CircuitOpenError:
            pass

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 1  # one trial; the other seven failed fast
    with pytest.raises(CircuitOpenError, match="half-open"):
        breaker.before()
    breaker.record(False)  # the trial failed: open again for a whole cool-down
    with pytest.raises(CircuitOpenError, match="open after"):
        breaker.before()
    time.sleep(0.25)
    breaker.before()
    breaker.record(True)  # the trial succeeded: closed, everyone passes
    for _ in range(3):
        breaker.before()


def test_half_open_trial_against_the_endpoint(stub: Mi2Stub) -> None:
    ep = endpoint(stub, attempts=3, timeout=3.0, breaker=CircuitBreaker(threshold=1, reset_seconds=0.2))
    stub.faults = ["500", "timeout"]
    with pytest.raises(TransientEndpointError, match="HTTP 500"):
        ep.score(ROW)
    time.sleep(0.25)
    with ThreadPoolExecutor(1) as pool:
        trial = pool.submit(ep.score, ROW)  # answered after 0.6 s
        time.sleep(0.15)
        made = stub.requests
        with pytest.raises(CircuitOpenError, match="half-open"):
            ep.score(ROW)
        assert not trial.done() and stub.requests == made  # refused at once: it did not wait for the trial
        assert "text_features" in trial.result()[0]
    ep.score(ROW)
    assert stub.requests == made + 1


def _png(size: int, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(buffer, format=fmt)
    return base64.encodebytes(buffer.getvalue()).decode()  # with line breaks, as the samples send


def _envelope(rows: list[list[object]], columns: list[str] | None = None, index: object = None) -> dict[str, object]:
    return {"input_data": {"columns": columns or ["image", "text"], "index": list(range(len(rows))) if index is None
                           else index, "data": rows}, "params": {}}


@pytest.mark.parametrize(("kind", "path", "body", "status"), [
    ("mi2", "/score", _envelope([[_png(64), "lung"]]), 200),
    ("mi2", "/", _envelope([[_png(64), "lung"]]), 404),
    ("mi2", "/score/extra", _envelope([[_png(64), "lung"]]), 404),
    ("mi2", "/score", _envelope([[_png(64, "JPEG"), "lung"]]), 400),
    ("mi2", "/score", _envelope([["lung"]], columns=["text"]), 400),
    ("mi2", "/score", _envelope([["", "lung", 1]], columns=["image", "text", "extra"]), 400),
    ("mi2", "/score", _envelope([["", "lung"]], index=[1]), 400),
    ("mi2", "/score", {"input_data": {"columns": ["image", "text"], "data": [["", "lung"]]}}, 400),
    ("mip", "/score", {**_envelope([[_png(1024), "liver & spleen"]]), "params": "sitk"}, 200),
    ("mip", "/score", _envelope([[_png(512), "liver"]]), 400),
    ("mip", "/score", _envelope([[_png(1024, "JPEG"), "liver"]]), 400),
    ("mip", "/score", _envelope([[_png(1024), "liver & "]]), 400),
])
def test_the_stub_is_as_strict_as_the_contract(kind: str, path: str, body: dict[str, object], status: int) -> None:
    with (Mi2Stub() if kind == "mi2" else MipStub()) as server:
        url = server.url.removesuffix("/score") + path
        response = requests.post(url, json=body, headers={"Authorization": f"Bearer {server.key}"}, timeout=10)
        assert response.status_code == status
        if status == 200:
            assert isinstance(response.json(), list)
        unlabelled = requests.post(url, data=b"{}", headers={"Authorization": f"Bearer {server.key}"}, timeout=10)
        assert unlabelled.status_code in (404, 415)  # no Content-Type: application/json


def _fake_azure(monkeypatch: pytest.MonkeyPatch, keys: object) -> None:
    class Operations:
        def get(self, name: str) -> object:
            return types.SimpleNamespace(scoring_uri=f"https://{name}.eastus.inference.ml.azure.com/score")

        def get_keys(self, name: str) -> object:
            return keys

    ml = types.ModuleType("azure.ai.ml")
    ml.MLClient = lambda credential, *workspace: types.SimpleNamespace(online_endpoints=Operations())  # type: ignore[attr-defined]
    identity = types.ModuleType("azure.identity")
    identity.DefaultAzureCredential = object  # type: ignore[attr-defined]
    for name, module in {"azure": types.ModuleType("azure"), "azure.ai": types.ModuleType("azure.ai"),
                         "azure.ai.ml": ml, "azure.identity": identity}.items():
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize(("keys", "secret"), [
    (types.SimpleNamespace(primary_key="pk", secondary_key="sk"), "pk"),  # key auth
    (types.SimpleNamespace(access_token="aml-tok", expiry_time_utc=0.0, token_type="Bearer"), "aml-tok"),  # aml_token
    (types.SimpleNamespace(access_token="aad-tok", expires_on=0), "aad-tok"),  # aad_token
])
def test_resolve_endpoint_for_every_auth_mode(monkeypatch: pytest.MonkeyPatch, keys: object, secret: str) -> None:
    _fake_azure(monkeypatch, keys)
    assert resolve_endpoint("mi2", subscription_id="s", resource_group="g", workspace="w") == (
        "https://mi2.eastus.inference.ml.azure.com/score", secret)


def test_resolve_endpoint_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    with pytest.raises(ImportError, match=r"\[azure\] extra"):
        resolve_endpoint("mi2", subscription_id="s", resource_group="g", workspace="w")


def test_azure_extra_brings_azure_identity() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["azure"]
    assert any(r.startswith("azure-identity") for r in extra) and any(r.startswith("azure-ai-ml") for r in extra)
