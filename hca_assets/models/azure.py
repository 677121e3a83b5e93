"""MedImageInsight on an Azure AI Foundry online endpoint: the request/response contract of the
published docs and samples, with batching, timeouts, retries (exponential backoff with jitter on
429/5xx/timeouts/malformed replies), and a circuit breaker that stops hammering a failing endpoint.

Secrets: the endpoint URL and key come from the caller (Dagster ``EnvVar`` / environment), never code.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Sequence

import numpy as np
import requests
from PIL import Image
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from hca_assets.models.base import l2_normalise

__all__ = ["AzureMedImageInsight", "CircuitOpenError", "EndpointError", "TransientEndpointError", "resolve_endpoint"]

DIM = 1024


class EndpointError(RuntimeError):
    """The endpoint answered, but not with what the contract promises (not retried). PHI-free message."""


class TransientEndpointError(EndpointError):
    """Worth retrying: throttling, server errors, timeouts, connection errors, unparsable replies."""


class CircuitOpenError(EndpointError):
    """Too many consecutive failures: calls are refused until the cool-down has passed."""


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed calls; lets one trial call through after ``reset_seconds``."""

    def __init__(self, threshold: int = 5, reset_seconds: float = 30.0) -> None:
        self.threshold, self.reset_seconds = threshold, reset_seconds
        self._failures, self._opened_at = 0, 0.0
        self._lock = threading.Lock()

    def before(self) -> None:
        with self._lock:
            if self._failures >= self.threshold and time.monotonic() - self._opened_at < self.reset_seconds:
                raise CircuitOpenError(f"circuit open after {self._failures} consecutive failures; retry later")

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures = 0
            else:
                self._failures += 1
                if self._failures >= self.threshold:
                    self._opened_at = time.monotonic()


def _png_b64(image: np.ndarray, size: int) -> str:
    pil = Image.fromarray(np.asarray(image))
    if size and max(pil.size) != size:
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)  # the service works at 512² anyway
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _features(reply: object, key: str, n: int) -> np.ndarray:
    """``image_features`` / ``text_features`` from either documented shape: one object, or a list of
    objects (one per row); nested ``[[…]]`` or flat vectors."""
    rows = reply if isinstance(reply, list) else [reply]
    vectors: list[np.ndarray] = []
    for row in rows:
        if not isinstance(row, dict) or key not in row:
            raise TransientEndpointError(f"reply has no {key!r}")
        value = np.asarray(row[key], dtype=np.float32)
        vectors.extend(value if value.ndim == 2 else [np.squeeze(value)])
    out = np.stack(vectors) if vectors else np.zeros((0, DIM), np.float32)
    if out.shape != (n, DIM):
        raise EndpointError(f"expected {n} vectors of dimension {DIM}, got shape {tuple(out.shape)}")
    if not np.isfinite(out).all():
        raise EndpointError("reply contains non-finite values")
    return l2_normalise(out)


class AzureMedImageInsight:
    """MedImageInsight embeddings (image and text in one 1024-d space)."""

    name = "azure-mi2"
    dim = DIM
    supports_text = True

    def __init__(self, url: str, key: str, *, version: str = "medimageinsight-1", deployment: str | None = None,
                 batch_size: int = 16, timeout: float = 90.0, attempts: int = 6, max_wait: float = 30.0,
                 image_size: int = 512, breaker: CircuitBreaker | None = None,
                 session: requests.Session | None = None) -> None:
        if not url or not key:
            raise ValueError("the MedImageInsight backend needs an endpoint URL and key (HCA_MI2_ENDPOINT, HCA_MI2_KEY)")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.url, self._key, self.version, self.deployment = url, key, version, deployment
        self.batch_size, self.timeout, self.attempts, self.max_wait = batch_size, timeout, attempts, max_wait
        self.image_size = image_size
        self.breaker = breaker or CircuitBreaker()
        self.session = session or requests.Session()
        self.calls = 0

    def __repr__(self) -> str:  # never shows the key
        return f"AzureMedImageInsight(url={self.url!r}, version={self.version!r})"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        rows = [[_png_b64(i, self.image_size), ""] for i in images]
        return self._batched(rows, "image_features")

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return self._batched([["", t] for t in texts], "text_features")

    def _batched(self, rows: list[list[str]], key: str) -> np.ndarray:
        parts = [self._call(rows[i:i + self.batch_size], key) for i in range(0, len(rows), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, DIM), np.float32)

    def _call(self, rows: list[list[str]], key: str) -> np.ndarray:
        body = {"input_data": {"columns": ["image", "text"], "index": list(range(len(rows))), "data": rows},
                "params": {"get_scaling_factor": True}}
        for attempt in Retrying(stop=stop_after_attempt(self.attempts),
                                wait=wait_random_exponential(multiplier=0.5, max=self.max_wait),
                                retry=retry_if_exception_type(TransientEndpointError), reraise=True):
            with attempt:
                self.breaker.before()
                try:
                    vectors = _features(self._post(body), key, len(rows))
                except TransientEndpointError:
                    self.breaker.record(False)
                    raise
                self.breaker.record(True)
                return vectors
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _post(self, body: dict[str, object]) -> object:
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"}
        if self.deployment:
            headers["azureml-model-deployment"] = self.deployment
        self.calls += 1
        try:
            response = self.session.post(self.url, data=json.dumps(body), headers=headers, timeout=self.timeout)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientEndpointError(f"{type(exc).__name__} calling the endpoint") from exc
        if response.status_code == 429 or response.status_code >= 500 or response.status_code == 408:
            raise TransientEndpointError(f"endpoint answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise EndpointError(f"endpoint answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise TransientEndpointError("endpoint reply is not valid JSON") from exc


def resolve_endpoint(name: str, *, subscription_id: str, resource_group: str, workspace: str) -> tuple[str, str]:
    """(scoring URI, primary key) of an online endpoint by name, through azure-ai-ml (extra ``[azure]``)."""
    try:
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise ImportError("looking up an endpoint by name needs the [azure] extra: pip install 'hca_assets[azure]'") from exc
    client = MLClient(DefaultAzureCredential(), subscription_id, resource_group, workspace)
    endpoint = client.online_endpoints.get(name)
    return endpoint.scoring_uri, client.online_endpoints.get_keys(name).primary_key
