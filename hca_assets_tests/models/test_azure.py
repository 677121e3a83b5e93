"""The MedImageInsight mapper against the strict local stub: envelope, batching, reply shapes, contract errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hca_assets.config import Settings
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.models.azure import AzureMedImageInsight
from hca_assets.models.base import code_version
from hca_assets.models.endpoint import ContractError, Endpoint, EndpointError
from hca_assets.models.local import LocalEmbedder
from hca_assets_tests.stubs import Mi2Stub

IMAGES = [np.full((64, 64), v, dtype=np.uint8) for v in (10, 120, 240)]


@pytest.fixture
def stub():  # type: ignore[no-untyped-def]
    with Mi2Stub() as server:
        yield server


def client(stub: Mi2Stub, batch_size: int = 2, **kw: object) -> AzureMedImageInsight:
    options = {"timeout": 0.5, "attempts": 5, "max_wait": 0.05, **kw}
    return AzureMedImageInsight(Endpoint(stub.url, stub.key, **options), batch_size=batch_size)  # type: ignore[arg-type]


def test_batches_contract_and_determinism(stub: Mi2Stub) -> None:
    c = client(stub)
    v = c.embed(IMAGES)
    assert v.shape == (3, 1024) and np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert stub.requests == 2 and stub.rows_seen == 3  # batches of 2
    assert np.allclose(c.embed(IMAGES[:1]), v[:1])
    t = c.embed_text(["chest x-ray", "brain MRI"])
    assert t.shape == (2, 1024) and not np.allclose(t[0], t[1])
    assert stub.key not in repr(c)


@pytest.mark.parametrize("shape", ["bare", "flat"])
def test_documented_reply_shapes_give_the_same_vectors(stub: Mi2Stub, shape: str) -> None:
    expected_images, expected_texts = client(stub).embed(IMAGES[:2]), client(stub).embed_text(["lung"])
    stub.faults = [shape, shape]
    assert np.allclose(client(stub).embed(IMAGES[:2]), expected_images)
    assert np.allclose(client(stub).embed_text(["lung"]), expected_texts)


def test_row_without_features_is_a_contract_error_not_retried(stub: Mi2Stub) -> None:
    with pytest.raises(ContractError, match="row 1 has no 'text_features'"):
        client(stub).embed_text(["chest x-ray", ""])  # the endpoint answers an empty text with no features
    assert stub.requests == 1


def test_wrong_dimension_and_refusals_are_not_retried(stub: Mi2Stub) -> None:
    stub.faults = ["wrong_dim"]
    with pytest.raises(ContractError, match="dimension 1024"):
        client(stub).embed(IMAGES[:1])
    assert stub.requests == 1
    bad_key = AzureMedImageInsight(Endpoint(stub.url, "wrong-secret", attempts=3, max_wait=0.01))
    with pytest.raises(EndpointError, match="HTTP 401 Unauthorized") as err:
        bad_key.embed(IMAGES[:1])
    assert "wrong-secret" not in str(err.value) and err.value.status == 401 and stub.requests == 2


def test_factory_and_versions(stub: Mi2Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_MI2_MODEL_VERSION", "mi2-2025-06")
    monkeypatch.setenv("HCA_MI2_DEPLOYMENT", "mi2-blue")
    e = get_embedder(dataclasses.replace(Settings.from_env(), embedder="azure"), url=stub.url, key=stub.key)
    assert e.supports_text and embedder_code_version(dataclasses.replace(Settings.from_env(), embedder="azure")) == "azure-mi2@mi2-2025-06+pre-2"
    assert e.embed_text(["lung"]).shape == (1, 1024) and stub.headers[-1]["azureml-model-deployment"] == "mi2-blue"
    assert embedder_code_version(dataclasses.replace(Settings.from_env(), embedder="local")) == code_version(LocalEmbedder())
    with pytest.raises(ValueError, match="needs an endpoint URL and key"):
        get_embedder(dataclasses.replace(Settings.from_env(), embedder="azure"), url="", key="")
