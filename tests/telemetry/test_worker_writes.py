"""Workers write only what they should (issue 12, item 4, the telemetry part), over real HTTP.

- `TimeGenerated` more than 2 days old or 1 day ahead becomes the receive time, the sent
  value kept in `OriginalTimeGenerated_t`, so a heartbeat dated 2099 can't keep a dead
  worker looking alive;
- a worker's OTLP carries its identity from the credential and cannot claim the
  server's `service.name`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from outpost import contract
from telemetry.collector import Collector
from tests.telemetry.server import ADMIN_TOKEN, serve


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    c = Collector(tmp_path / "data", stale_after_s=2.0)
    c.start()
    with serve(c) as base:
        yield base
    c.close()


def query(url: str, kql: str) -> list[dict]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as c:
        r = c.post("/api/v1/query", json={"query": kql})
    assert r.status_code == 200, r.text
    names = [col["name"] for col in r.json()["columns"]]
    return [dict(zip(names, row, strict=True)) for row in r.json()["rows"]]


def worker(url: str, name: str = "w1") -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer worker-token-{name}"}, timeout=30)


def parse(text: str) -> datetime:
    """Kusto's `2099-01-01T00:00:00.0000000Z` -> an aware datetime."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}").replace(tzinfo=UTC)


def test_heartbeat_from_2099_is_stored_at_receive_time_with_the_original_kept(url: str) -> None:
    now = datetime.now(UTC)
    sent = {
        "h-future": datetime(2099, 1, 1, tzinfo=UTC),
        "h-old": now - timedelta(days=3),
        "h-ok-old": now - timedelta(days=1),
        "h-ok-ahead": now + timedelta(hours=12),
    }
    with worker(url) as c:
        r = c.post(
            contract.AGENT_HEARTBEAT,
            json={"rows": [{"TimeGenerated": t.isoformat(), "HeartbeatId": h} for h, t in sent.items()]},
        )
    assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
    rows = {
        r["HeartbeatId"]: r
        for r in query(url, "Heartbeat | project HeartbeatId, TimeGenerated, OriginalTimeGenerated_t, _TimeReceived")
    }
    for hid in ("h-future", "h-old"):  # clamped: the receive time, the claim kept
        assert rows[hid]["TimeGenerated"] == rows[hid]["_TimeReceived"], rows[hid]
        assert parse(rows[hid]["OriginalTimeGenerated_t"]) == sent[hid], rows[hid]
    for hid in ("h-ok-old", "h-ok-ahead"):  # inside the window: as sent
        assert rows[hid]["OriginalTimeGenerated_t"] is None, rows[hid]
        assert parse(rows[hid]["TimeGenerated"]) == sent[hid], rows[hid]
    # The stale-worker question sees the worker's real last heartbeat, not 2099.
    last = query(url, "Heartbeat | summarize newest = max(TimeGenerated) by Computer")[0]
    assert parse(last["newest"]) < now + timedelta(days=1, minutes=1), last
    clocks = query(url, "Heartbeat | where isnotnull(OriginalTimeGenerated_t) | count")
    assert clocks == [{"Count": 2}]


def test_diagnose_results_from_a_wrong_clock_are_clamped_too(url: str) -> None:
    result = {"id": "dns.resolve", "group": "dns", "status": "pass", "finding": "ok"}
    with worker(url) as c:
        r = c.post(contract.AGENT_DIAGNOSTICS, json={"results": [result], "time": "2099-06-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    row = query(url, "DiagnosticResults | project TimeGenerated, OriginalTimeGenerated_t, _TimeReceived")[0]
    assert row["TimeGenerated"] == row["_TimeReceived"] and row["OriginalTimeGenerated_t"].startswith("2099-06-01")


def _span(service: str, extra: list[dict] | None = None) -> dict:
    start = int(datetime.now(UTC).timestamp() * 1e9)
    attrs = [{"key": "service.name", "value": {"stringValue": service}}, *(extra or [])]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                "spanId": "00f067aa0ba902b7",
                                "name": "job create",
                                "kind": 2,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 1_000_000),
                            }
                        ]
                    }
                ],
            }
        ]
    }


def test_worker_spans_carry_the_credentials_identity_and_cannot_claim_the_server(url: str) -> None:
    forged = [{"key": "outpost.worker", "value": {"stringValue": "w2"}}]
    with worker(url, "w1") as c:
        r = c.post("/v1/traces", json=_span("outpost-server", forged), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        r = c.post("/v1/traces", json=_span("billing-batch"), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
    rows = query(
        url, "OTelSpans | project ServiceName, Computer, WorkerGroup_s, ResourceAttributes | order by ServiceName asc"
    )
    assert [r["ServiceName"] for r in rows] == ["billing-batch", "outpost-agent"], rows
    for r in rows:
        assert r["Computer"] == "w1" and r["WorkerGroup_s"] == "linux", r
        attrs = r["ResourceAttributes"]
        assert attrs["outpost.worker"] == "w1" and attrs["outpost.worker.name"] == "w1", attrs
        assert attrs["outpost.worker.group"] == "linux" and attrs["outpost.worker.id"] == "id-w1", attrs
    impostor = rows[1]["ResourceAttributes"]
    assert impostor["service.name"] == "outpost-agent" and impostor["outpost.claimed_service.name"] == "outpost-server"
    assert query(url, "OTelSpans | where ServiceName == 'outpost-server' | count") == [{"Count": 0}]


def test_worker_metrics_cannot_claim_the_server_on_prometheus(url: str) -> None:
    now = str(int(datetime.now(UTC).timestamp() * 1e9))
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "Outpost-Server"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {"name": "impostor.gauge", "gauge": {"dataPoints": [{"asDouble": 1, "timeUnixNano": now}]}}
                        ]
                    }
                ],
            }
        ]
    }
    with worker(url, "w2") as c:
        r = c.post("/v1/metrics", json=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    row = query(url, "OTelMetrics | project ServiceName, Computer")[0]
    assert row == {"ServiceName": "outpost-agent", "Computer": "w2"}
    text = httpx.get(f"{url}/metrics", timeout=10).text
    sample = next(line for line in text.splitlines() if line.startswith("impostor_gauge"))
    assert 'service="outpost-agent"' in sample and 'worker="w2"' in sample, sample
