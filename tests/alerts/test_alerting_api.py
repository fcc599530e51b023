"""The alerting REST endpoints and `outpost alerts`, over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from typer.testing import CliRunner

from outpost.commands.alerts import app as alerts_cli
from telemetry.alert_rules import rule_from_dict
from telemetry.alerting import AlertEvaluator
from telemetry.alerting_api import build_alerting_router
from telemetry.store import TelemetryStore
from tests.alerts.realtools import free_port, heartbeat, query_runner

TOKEN = "admin-token-for-tests"


def _require_admin(authorization: str = Header(default="")) -> None:
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(401, "admin token required")


STALE_QUERY = (
    "Heartbeat | summarize Last = max(TimeGenerated) by Computer, WorkerGroup_s"
    " | extend Age = datetime_diff('second', now(), Last)"
)


def _evaluator(store: TelemetryStore) -> AlertEvaluator:
    heartbeat(store, "w1", "g1", 900)
    heartbeat(store, "w2", "g2", 10)
    rule = rule_from_dict(
        {
            "name": "Stale",
            "severity": "critical",
            "query": STALE_QUERY,
            "metric_column": "Age",
            "threshold": 300,
            "dimensions": {"worker": "Computer", "group": "WorkerGroup_s"},
            "summary": "{worker} stale",
        }
    )
    return AlertEvaluator([rule], query_runner(store))


@pytest.fixture
def served() -> Iterator[tuple[str, AlertEvaluator]]:
    store = TelemetryStore(None)
    evaluator = _evaluator(store)
    app = FastAPI()
    app.include_router(build_alerting_router(evaluator, _require_admin))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    evaluator.tick(force=True)
    yield f"http://127.0.0.1:{port}", evaluator
    server.should_exit = True
    thread.join(10)
    store.close()


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def test_routes_need_the_admin_token(served: tuple[str, AlertEvaluator]) -> None:
    url, _ = served
    assert httpx.get(f"{url}/api/v1/alerts", timeout=10).status_code == 401


def test_list_alerts_and_rules(served: tuple[str, AlertEvaluator]) -> None:
    url, _ = served
    with _client(url) as client:
        alerts = client.get("/api/v1/alerts").json()["alerts"]
        assert [(a["worker"], a["state"], a["severity"]) for a in alerts] == [("w1", "firing", "critical")]
        assert client.get("/api/v1/alerts", params={"state": "resolved"}).json()["alerts"] == []
        assert client.get("/api/v1/alerts", params={"state": "bogus"}).status_code == 422
        (rule,) = client.get("/api/v1/alerts/rules").json()
        assert rule["name"] == "Stale" and rule["last_error"] is None and rule["last_evaluated"]


def test_maintenance_windows_over_http(served: tuple[str, AlertEvaluator]) -> None:
    url, _ = served
    with _client(url) as client:
        assert client.post("/api/v1/alerts/maintenance", json={"duration_seconds": 60}).status_code == 422
        both = {"worker": "w1", "duration_seconds": 60, "ends_at": datetime.now(UTC).isoformat()}
        assert client.post("/api/v1/alerts/maintenance", json=both).status_code == 422
        backwards = {"worker": "w1", "ends_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
        response = client.post("/api/v1/alerts/maintenance", json=backwards)
        assert response.status_code == 422 and "end after it starts" in response.text

        created = client.post("/api/v1/alerts/maintenance", json={"worker": "w1", "duration_seconds": 3600})
        assert created.status_code == 201
        window = created.json()
        assert window["active"] and window["worker"] == "w1"
        assert client.get("/api/v1/alerts").json()["alerts"][0]["state"] == "suppressed"
        assert [w["id"] for w in client.get("/api/v1/alerts/maintenance").json()] == [window["id"]]

        assert client.delete(f"/api/v1/alerts/maintenance/{window['id']}").status_code == 204
        assert client.delete(f"/api/v1/alerts/maintenance/{window['id']}").status_code == 404
        assert client.post("/api/v1/alerts/evaluate").json()["alerts"][0]["state"] == "firing"


def test_cli_lists_alerts_as_table_and_json(
    served: tuple[str, AlertEvaluator], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = served
    # The shared Rich console fixes its width when first imported; make the table wide enough here.
    from outpost.commands import common

    monkeypatch.setattr(common.console, "width", 200)
    runner = CliRunner()
    conn = ["--url", url, "--token", TOKEN]
    table = runner.invoke(alerts_cli, ["list", *conn], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "firing" in table.output and "w1 stale" in table.output and "Stale" in table.output

    as_json = runner.invoke(alerts_cli, ["list", "--json", *conn])
    assert as_json.exit_code == 0
    assert [a["worker"] for a in json.loads(as_json.output)] == ["w1"]

    added = runner.invoke(alerts_cli, ["maintenance", "add", "--group", "g1", "--for", "2h", "--json", *conn])
    assert added.exit_code == 0, added.output
    window_id = json.loads(added.output)["id"]
    suppressed = runner.invoke(alerts_cli, ["list", "--state", "suppressed", "--json", *conn])
    assert [a["worker"] for a in json.loads(suppressed.output)] == ["w1"]
    listed = runner.invoke(alerts_cli, ["maintenance", "list", *conn], env={"COLUMNS": "200"})
    assert window_id in listed.output
    removed = runner.invoke(alerts_cli, ["maintenance", "remove", window_id, *conn])
    assert removed.exit_code == 0

    rules = runner.invoke(alerts_cli, ["rules", *conn], env={"COLUMNS": "200"})
    assert rules.exit_code == 0 and "Age GreaterThan 300" in rules.output


def test_cli_errors_are_one_line(served: tuple[str, AlertEvaluator]) -> None:
    url, _ = served
    runner = CliRunner()
    wrong = runner.invoke(alerts_cli, ["list", "--url", url, "--token", "nope"])
    assert wrong.exit_code == 1 and "admin token required" in wrong.output
    usage = runner.invoke(alerts_cli, ["maintenance", "add", "--url", url, "--token", TOKEN])
    assert usage.exit_code == 2 and "--worker or --group" in usage.output
    bad_for = runner.invoke(alerts_cli, ["maintenance", "add", "--worker", "w1", "--for", "soon", "--url", url,
                                         "--token", TOKEN])  # fmt: skip
    assert bad_for.exit_code == 2
