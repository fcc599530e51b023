"""Columnar heartbeat ingest: dedupe by HeartbeatId across the in-memory set, its forgetting, and the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telemetry import rows as rows_mod
from telemetry.collector import Collector
from telemetry.store import _SeenIds


def _rows(ids: list[str], start: datetime, **extra: object) -> list[dict]:
    return [
        {"TimeGenerated": (start + timedelta(seconds=i)).isoformat(), "HeartbeatId": h, "OSType": "Linux", **extra}
        for i, h in enumerate(ids)
    ]


def test_dedupe_within_batch_remembered_and_forgotten(tmp_path: Path) -> None:
    c = Collector(tmp_path)
    try:
        c.store._seen = _SeenIds(capacity=4)  # forget quickly: older ids are then checked in the table
        t0 = datetime.now(UTC) + timedelta(minutes=1)
        assert c.ingest_heartbeats(_rows(["a", "b", "a"], t0), worker="w1", group="g") == (2, 1)
        assert c.ingest_heartbeats(_rows(["b", "c"], t0 + timedelta(seconds=10)), worker="w1", group="g") == (1, 1)
        for k in range(5):  # push a, b, c out of memory
            ids = [f"x{k}-{i}" for i in range(3)]
            assert c.ingest_heartbeats(_rows(ids, t0 + timedelta(minutes=k + 1)), worker="w1", group="g") == (3, 0)
        assert "a" not in c.store._seen
        # a re-send of forgotten rows is caught by the table, fresh ones in the same batch still go in
        again = _rows(["a", "b"], t0) + _rows(["new"], t0 + timedelta(seconds=1))
        assert c.ingest_heartbeats(again, worker="w1", group="g") == (1, 2)
        got = c.query("Heartbeat | summarize n = count(), ids = dcount(HeartbeatId) by Computer, WorkerGroup_s")
        assert got.rows == [["w1", "g", 19, 19]]
    finally:
        c.close()


def test_columns_defaults_and_identity(tmp_path: Path) -> None:
    c = Collector(tmp_path)
    try:
        t0 = datetime.now(UTC)
        batch = _rows(["h1", "h2"], t0, Computer="spoofed", Unknown="ignored")
        batch[1]["ResourceId"] = "/custom/resource"
        batch[1]["IsGatewayInstalled"] = "true"
        assert c.ingest_heartbeats(batch, worker="w9", group="edge") == (2, 0)
        got = c.query(
            "Heartbeat | order by HeartbeatId asc | project Computer, WorkerGroup_s, ResourceId, "
            "_ResourceId, Category, IsGatewayInstalled, TimeGenerated"
        )
        (r1, r2) = got.rows
        assert r1[:2] == ["w9", "edge"] and r1[2].endswith("/workers/w9") and r1[3] == r1[2]
        assert r2[2] == "/custom/resource" and r2[3] == r1[3]  # _ResourceId always from the credential
        assert r1[4] == "Direct Agent" and r1[5] is False and r2[5] is True
    finally:
        c.close()


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ([{"TimeGenerated": "2024-01-01T00:00:00Z"}, {"TimeGenerated": "soon"}], "rows[1].TimeGenerated"),
        ([{"TimeGenerated": ["x"]}], "rows[0].TimeGenerated"),
        ([{"TimeGenerated": "2024-01-01T00:00:00Z", "HeartbeatId": 5}], "rows[0].HeartbeatId"),
        ([{"TimeGenerated": "2024-01-01T00:00:00Z", "HeartbeatId": "x" * 65}], "rows[0].HeartbeatId"),
        ([{"TimeGenerated": "2024-01-01T00:00:00Z"}, "row"], "rows[1] must be an object"),
    ],
)
def test_bad_rows_name_the_row(payload: list, needle: str) -> None:
    with pytest.raises(rows_mod.HeartbeatRowError) as err:
        rows_mod.heartbeat_columns(payload, worker="w", group="g")
    assert needle in str(err.value)


def test_batch_limit() -> None:
    with pytest.raises(rows_mod.HeartbeatRowError, match="too many rows"):
        rows_mod.heartbeat_columns([{}] * 3, worker="w", group="g", limit=2)
