"""Sending alerts out: Alertmanager's v2 API and a generic JSON webhook.

One attempt per delivery with a short timeout: the evaluator retries on its next
tick, so a down receiver never blocks evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 10.0


def rfc3339(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class DeliveryError(Exception):
    pass


class AlertmanagerSender:
    """POSTs alerts to <url>/api/v2/alerts (the URL may already end with that path)."""

    def __init__(self, url: str, *, client: httpx.Client | None = None, headers: dict[str, str] | None = None) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/api/v2/alerts") else f"{base}/api/v2/alerts"
        self._client = client or httpx.Client(timeout=DELIVERY_TIMEOUT_S, headers=headers or {})

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        if not alerts:
            return
        try:
            response = self._client.post(self.url, json=list(alerts))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Alertmanager {self.url}: {exc or type(exc).__name__}") from None
        if response.status_code >= 300:
            raise DeliveryError(f"Alertmanager {self.url}: HTTP {response.status_code} {response.text[:200]}")

    def close(self) -> None:
        self._client.close()


class WebhookSender:
    """POSTs {"status": "firing"|"resolved", "alerts": [...]} to any HTTP endpoint."""

    def __init__(self, url: str, *, client: httpx.Client | None = None, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self._client = client or httpx.Client(timeout=DELIVERY_TIMEOUT_S, headers=headers or {})

    def send(self, status: str, alerts: Sequence[dict[str, Any]]) -> None:
        if not alerts:
            return
        body = {"version": "1", "status": status, "receiver": "outpost", "alerts": list(alerts)}
        try:
            response = self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url}: {exc or type(exc).__name__}") from None
        if response.status_code >= 300:
            raise DeliveryError(f"webhook {self.url}: HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()
