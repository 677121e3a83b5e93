"""Transport shared by every Azure AI Foundry healthcare-model client (MedImageInsight, MedImageParse): the
scoring POST in the "split" envelope, timeouts, retries with jittered exponential backoff that honour
``Retry-After``, a circuit breaker with a single half-open trial, and PHI-free errors carrying HTTP status
and reason, as the published docs and Microsoft samples describe managed online endpoints. Secrets come
from the caller.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

__all__ = ["MI2_POOL", "MIP_POOL", "CircuitBreaker", "CircuitOpenError", "ContractError", "Endpoint", "EndpointError",
           "TransientEndpointError", "reply_rows", "resolve_endpoint", "single_row_field"]

# Dagster concurrency pools, one per endpoint (each deployment has its own max_concurrent_requests × instances):
# `dagster instance concurrency set <pool> <n>`.
MI2_POOL = "embedding_endpoint"
MIP_POOL = "segmentation_endpoint"

COLUMNS = ["image", "text"]
MODEL_ERROR_PREFIX = "ms-azureml-model-error-"
_RETRIED = {408, 429}  # and every 5xx; 424 (the model container failed) is reported, not retried
_log = logging.getLogger(__name__)


class EndpointError(RuntimeError):
    """The endpoint refused or failed the request. PHI-free: HTTP status, reason, and the service's
    ``ms-azureml-model-error-*`` headers; never request content or the key."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "",
                 model_error: Mapping[str, str] | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.retry_after = status, reason, retry_after
        self.model_error = dict(model_error or {})

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes with its attributes
        return type(self), (str(self),), self.__dict__


class TransientEndpointError(EndpointError):
    """Worth retrying: 408, 429, 5xx, timeouts, connection errors, a reply that is not JSON."""


class ContractError(EndpointError):
    """HTTP 200, but the reply is not what the contract promises (a row without features, wrong shape). Not retried."""


class CircuitOpenError(EndpointError):
    """The breaker is open (or its half-open trial is in flight): refused without calling the endpoint."""


class CircuitBreaker:
    """closed → open after ``threshold`` consecutive failed attempts; after ``reset_seconds`` exactly one trial
    call passes (half-open) while others fail fast; the trial's success closes it, its failure re-opens it."""

    def __init__(self, threshold: int = 5, reset_seconds: float = 30.0) -> None:
        if threshold < 1:
            raise ValueError(f"`threshold` must be >= 1, got {threshold}")
        self.threshold, self.reset_seconds = threshold, reset_seconds
        self._failures, self._opened_at, self._state = 0, 0.0, "closed"
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def before(self) -> None:
        """Let a call through, or raise ``CircuitOpenError``."""
        with self._lock:
            if self._state == "closed":
                return
            if self._state == "open" and time.monotonic() - self._opened_at >= self.reset_seconds:
                self._state = "half-open"  # this caller is the one trial
                return
            if self._state == "half-open":
                raise CircuitOpenError("circuit half-open: a trial call is in flight; retry later")
            wait = self.reset_seconds - (time.monotonic() - self._opened_at)
            raise CircuitOpenError(f"circuit open after {self._failures} consecutive failures; retry in {wait:.0f} s")

    def record(self, ok: bool) -> None:
        """The outcome of a call that ``before`` let through."""
        with self._lock:
            if ok:
                self._failures, self._state = 0, "closed"
                return
            self._failures += 1
            if self._state == "half-open" or self._failures >= self.threshold:
                self._state, self._opened_at = "open", time.monotonic()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _http_error(response: requests.Response) -> EndpointError:
    status, reason = response.status_code, response.reason or ""
    model_error = {k.lower(): v[:200] for k, v in response.headers.items() if k.lower().startswith(MODEL_ERROR_PREFIX)}
    message = f"endpoint answered HTTP {status} {reason}".rstrip()
    if model_error:
        message += "; " + ", ".join(f"{k}: {v}" for k, v in sorted(model_error.items()))
    kind = TransientEndpointError if status in _RETRIED or status >= 500 else EndpointError
    return kind(message, status=status, reason=reason, model_error=model_error,
                retry_after=_retry_after(response.headers.get("Retry-After")))


def reply_rows(reply: object) -> list[dict[str, object]]:
    """The reply as one object per row: the samples' JSON array, or the docs' bare object (one element)."""
    rows = reply if isinstance(reply, list) else [reply]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ContractError("reply is neither an object nor a list of objects")
    return rows


def single_row_field(reply: object, field: str, what: str) -> object:
    """``field`` of the one reply row a request for one ``what`` gets, JSON-decoded when the service sent it as a
    string (MedImageParse's ``image_features``, CXRReportGen's ``output``); a ``ContractError`` otherwise."""
    rows = reply_rows(reply)
    if len(rows) != 1:
        raise ContractError(f"expected one reply row for one {what}, got {len(rows)}")
    value = rows[0].get(field)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ContractError(f"'{field}' is not valid JSON") from None
    return value


class Endpoint:
    """One online endpoint's scoring URI and key (or token): ``score(rows)`` POSTs the split envelope with
    columns image/text and returns the parsed JSON reply, retrying what is transient."""

    def __init__(self, url: str, key: str, *, deployment: str | None = None, timeout: float = 90.0,
                 connect_timeout: float = 10.0, attempts: int = 6, backoff: float = 0.5, max_wait: float = 30.0,
                 max_retry_after: float = 120.0, breaker: CircuitBreaker | None = None,
                 session: requests.Session | None = None) -> None:
        if not url or not key:
            raise ValueError("an Azure endpoint needs a scoring URL and a key or token")
        if attempts < 1:
            raise ValueError(f"`attempts` must be >= 1, got {attempts}")
        self.url, self._key, self.deployment = url, key, deployment
        self.timeout, self.connect_timeout, self.attempts = timeout, connect_timeout, attempts
        self.max_retry_after = max_retry_after
        self._jitter = wait_random_exponential(multiplier=backoff, max=max_wait)
        self.breaker = breaker or CircuitBreaker()
        self.session = session or requests.Session()

    def __repr__(self) -> str:  # never shows the key
        return f"Endpoint(url={self.url!r}, deployment={self.deployment!r})"

    def score(self, rows: Sequence[Sequence[object]], params: Mapping[str, object] | None = None, *,
              columns: Sequence[str] = COLUMNS) -> object:
        """The parsed JSON reply to ``rows`` (each holds the ``columns``' values: ``[image_b64, text]`` for MI2 and
        MedImageParse); raises an ``EndpointError``."""
        body = json.dumps({"input_data": {"columns": list(columns), "index": list(range(len(rows))), "data": list(rows)},
                           "params": dict(params or {})}).encode()
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=self._wait, reraise=True,
                            retry=retry_if_exception(self._worth_retrying), before_sleep=self._log_retry)
        return retrying(self._attempt, body)

    def _worth_retrying(self, exc: BaseException) -> bool:
        # once the breaker is open (this or another caller's failures), the HTTP error itself surfaces
        return isinstance(exc, TransientEndpointError) and self.breaker.closed

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None) or 0.0
        return max(self._jitter(state), min(after, self.max_retry_after))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        seconds = state.next_action.sleep if state.next_action else 0.0
        _log.warning("%s; retry %d/%d in %.1f s", exc, state.attempt_number, self.attempts - 1, seconds)

    def _attempt(self, body: bytes) -> object:
        self.breaker.before()
        ok = False
        try:
            reply = self._post(body)
            ok = True
            return reply
        except EndpointError as exc:
            ok = not isinstance(exc, TransientEndpointError)  # a refusal still proves the endpoint is up
            raise
        finally:
            self.breaker.record(ok)

    def _post(self, body: bytes) -> object:
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"}
        if self.deployment:
            headers["azureml-model-deployment"] = self.deployment
        try:
            response = self.session.post(self.url, data=body, headers=headers,
                                         timeout=(min(self.connect_timeout, self.timeout), self.timeout))
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientEndpointError(f"{type(exc).__name__} calling the endpoint") from exc
        except requests.RequestException as exc:
            raise EndpointError(f"{type(exc).__name__} calling the endpoint") from exc
        if response.status_code != 200:
            raise _http_error(response)
        try:
            return response.json()
        except ValueError:
            raise TransientEndpointError("endpoint reply is not valid JSON", status=200, reason=response.reason) from None


def resolve_endpoint(name: str, *, subscription_id: str, resource_group: str, workspace: str) -> tuple[str, str]:
    """(scoring URI, secret) of an online endpoint by name through azure-ai-ml (extra ``[azure]``): the primary
    key for key auth, the access token for aml_token / aad_token auth (tokens expire: resolve again per run)."""
    try:
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise ImportError("looking up an endpoint by name needs the [azure] extra: pip install 'hca_assets[azure]'") from exc
    client = MLClient(DefaultAzureCredential(), subscription_id, resource_group, workspace)
    endpoint = client.online_endpoints.get(name)
    keys = client.online_endpoints.get_keys(name)
    secret = getattr(keys, "primary_key", None) or getattr(keys, "access_token", None)
    if not secret:
        raise EndpointError(f"endpoint {name!r} returned neither a primary key nor an access token")
    return endpoint.scoring_uri, secret
