"""The MedImageInsight client against a local stub server with injected faults."""

from __future__ import annotations

import numpy as np
import pytest

from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.models.azure import (
    AzureMedImageInsight,
    CircuitBreaker,
    CircuitOpenError,
    EndpointError,
    TransientEndpointError,
)
from hca_assets.models.base import code_version
from hca_assets.models.local import LocalEmbedder
from hca_assets_tests.stubs import Mi2Stub

IMAGES = [np.full((64, 64), v, dtype=np.uint8) for v in (10, 120, 240)]


@pytest.fixture
def stub():  # type: ignore[no-untyped-def]
    with Mi2Stub() as server:
        yield server


def client(stub: Mi2Stub, **kw: object) -> AzureMedImageInsight:
    options = {"batch_size": 2, "timeout": 0.5, "attempts": 5, "max_wait": 0.05, **kw}
    return AzureMedImageInsight(stub.url, stub.key, **options)  # type: ignore[arg-type]


def test_batches_contract_and_determinism(stub: Mi2Stub) -> None:
    c = client(stub)
    v = c.embed(IMAGES)
    assert v.shape == (3, 1024) and np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert stub.requests == 2 and stub.rows_seen == 3  # batches of 2
    assert np.allclose(c.embed(IMAGES[:1]), v[:1])
    t = c.embed_text(["chest x-ray", "brain MRI"])
    assert t.shape == (2, 1024) and not np.allclose(t[0], t[1])
    assert stub.key not in repr(c)


def test_retries_on_throttling_errors_malformed_and_timeouts(stub: Mi2Stub) -> None:
    stub.faults = ["429", "500", "malformed", "timeout"]
    v = client(stub, batch_size=8).embed(IMAGES)
    assert v.shape == (3, 1024) and stub.requests == 5


def test_contract_violations_are_not_retried(stub: Mi2Stub) -> None:
    stub.faults = ["wrong_dim"]
    with pytest.raises(EndpointError, match="dimension 1024"):
        client(stub).embed(IMAGES[:1])
    assert stub.requests == 1
    bad_key = AzureMedImageInsight(stub.url, "wrong-secret", attempts=3, max_wait=0.01)
    with pytest.raises(EndpointError, match="HTTP 401") as err:
        bad_key.embed(IMAGES[:1])
    assert "wrong-secret" not in str(err.value) and stub.requests == 2


def test_circuit_breaker_stops_calling_a_failing_endpoint(stub: Mi2Stub) -> None:
    stub.faults = ["500"] * 10
    c = client(stub, attempts=2, breaker=CircuitBreaker(threshold=2, reset_seconds=60))
    with pytest.raises(TransientEndpointError, match="HTTP 500"):
        c.embed(IMAGES[:1])
    calls = stub.requests
    with pytest.raises(CircuitOpenError):
        c.embed(IMAGES[:1])
    assert stub.requests == calls  # refused without contacting the endpoint


def test_factory_and_versions(stub: Mi2Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_MI2_MODEL_VERSION", "mi2-2025-06")
    e = get_embedder("azure", url=stub.url, key=stub.key)
    assert e.supports_text and embedder_code_version("azure") == "azure-mi2@mi2-2025-06+pre-1"
    assert embedder_code_version("local") == code_version(LocalEmbedder())
    with pytest.raises(ValueError, match="needs an endpoint URL and key"):
        get_embedder("azure", url="", key="")
