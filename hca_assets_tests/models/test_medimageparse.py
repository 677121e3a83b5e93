"""The MedImageParse client against the strict local stub: prompts joined by " & ", masks decoded from the
JSON-string image_features and thresholded at > 128, every documented reply shape, contract errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hca_assets.models.endpoint import (
    CircuitBreaker,
    ContractError,
    Endpoint,
    EndpointError,
    TransientEndpointError,
)
from hca_assets.models.medimageparse import MedImageParseClient
from hca_assets_tests.stubs import MipStub, expected_mask, mip_mask

RGB = np.random.default_rng(3).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
PROMPTS = ["liver", "left kidney", "tumor core"]


@pytest.fixture
def stub():  # type: ignore[no-untyped-def]
    with MipStub() as server:
        yield server


def client(stub: MipStub, **kw: object) -> MedImageParseClient:
    options = {"timeout": 5.0, "attempts": 4, "max_wait": 0.02, **kw}
    return MedImageParseClient(Endpoint(stub.url, stub.key, **options))  # type: ignore[arg-type]


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_masks_per_prompt_in_order_thresholded_above_128(stub: MipStub) -> None:
    masks = client(stub).segment(RGB, PROMPTS)
    assert masks.shape == (3, 1024, 1024) and masks.dtype == bool
    for mask, prompt in zip(masks, PROMPTS, strict=True):
        assert np.array_equal(mask, expected_mask(prompt))
        raw = mip_mask(prompt)
        assert mask[raw == 129].all() and not mask[raw == 128].any()  # the rim at the threshold
    assert stub.texts == ["liver & left kidney & tumor core"] and stub.requests == 1


def test_png_bytes_and_grey_arrays_are_accepted(stub: MipStub) -> None:
    from_bytes = client(stub).segment(_png(RGB), ["liver"])
    from_grey = client(stub).segment(RGB[..., 0], ["liver"])
    assert np.array_equal(from_bytes[0], expected_mask("liver")) and np.array_equal(from_grey, from_bytes)


@pytest.mark.parametrize("shape", ["bare", "object_features"])
def test_documented_reply_shapes(stub: MipStub, shape: str) -> None:
    stub.faults = [shape]
    masks = client(stub).segment(RGB, PROMPTS[:2])
    assert all(np.array_equal(m, expected_mask(p)) for m, p in zip(masks, PROMPTS[:2], strict=True))


@pytest.mark.parametrize(("fault", "message"), [("no_features", "no 'image_features'"),
                                                ("wrong_dim", r"shape \[2, 1024, 1024\]")])
def test_contract_violations_are_not_retried(stub: MipStub, fault: str, message: str) -> None:
    stub.faults = [fault]
    with pytest.raises(ContractError, match=message):
        client(stub).segment(RGB, PROMPTS[:2])
    assert stub.requests == 1


def test_faults_are_retried_then_reported_with_status(stub: MipStub) -> None:
    stub.faults = ["429", "timeout", "malformed", "503"]
    stub.slow_seconds = 0.6
    masks = client(stub, timeout=0.4, attempts=5).segment(RGB, ["liver"])
    assert np.array_equal(masks[0], expected_mask("liver")) and stub.requests == 5
    stub.faults = ["424"]
    with pytest.raises(EndpointError, match="HTTP 424 Failed Dependency; ms-azureml-model-error-reason") as err:
        client(stub).segment(RGB, ["liver"])
    assert not isinstance(err.value, TransientEndpointError) and "liver" not in str(err.value)
    stub.faults = ["500"] * 6
    with pytest.raises(TransientEndpointError, match="HTTP 500 Internal Server Error"):
        client(stub, attempts=6, breaker=CircuitBreaker(threshold=5)).segment(RGB, ["liver"])


@pytest.mark.parametrize(("image", "prompts", "message"), [
    (RGB[:512, :512], ["liver"], "uint8 1024×1024"),
    (RGB.astype(np.uint16), ["liver"], "uint8 1024×1024"),
    (b"\xff\xd8\xff\xe0 not a png", ["liver"], "needs a PNG"),
    (_png(RGB[:1000, :1000]), ["liver"], "1024×1024 PNG"),
    (RGB, [], "one or more non-empty prompts"),
    (RGB, ["liver & spleen"], "containing '&'"),
    (RGB, [" "], "non-empty prompts"),
])
def test_bad_input_is_refused_before_calling(stub: MipStub, image: object, prompts: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        client(stub).segment(image, prompts)  # type: ignore[arg-type]
    assert stub.requests == 0
