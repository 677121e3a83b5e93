"""The alert hook for failed runs: a PHI-free JSON payload POSTed to a webhook (``HCA_ALERT_WEBHOOK``), or only
logged when none is configured. A webhook that fails is logged, never raised: alerting must not break the sensor."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

__all__ = ["TIMEOUT_SECONDS", "notify"]

TIMEOUT_SECONDS = 10.0


def notify(payload: Mapping[str, object], url: str, log: Callable[[str], None], *,
           timeout: float = TIMEOUT_SECONDS) -> bool:
    """Log the alert, and POST it as JSON to ``url`` if one is given; True if a webhook accepted it (2xx)."""
    body = json.dumps(payload, sort_keys=True, default=str)
    log(f"ALERT {body}")
    if not url:
        return False
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "hca-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        log(f"alert webhook failed: {type(exc).__name__}: {getattr(exc, 'reason', '') or getattr(exc, 'code', '')}")
        return False
