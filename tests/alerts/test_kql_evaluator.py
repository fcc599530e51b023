"""The built-in KQL alert evaluator against a real telemetry store and a real Alertmanager."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from telemetry.alert_rules import KqlAlertRule, RuleError, load_rules, rule_from_dict
from telemetry.alerting import AlertEvaluator
from telemetry.store import TelemetryStore
from tests.alerts.realtools import (
    WebhookReceiver,
    am_alerts,
    heartbeat,
    query_runner,
    running_alertmanager,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
RULE_DIR = ROOT / "alerts" / "kql"


@pytest.fixture
def store() -> Iterator[TelemetryStore]:
    s = TelemetryStore(None)
    yield s
    s.close()


def stale_rule(threshold_s: float = 60) -> KqlAlertRule:
    # The shipped rule, with a test-sized threshold.
    rule = next(r for r in load_rules([RULE_DIR]) if r.name == "OutpostWorkerStaleKql")
    return dataclasses.replace(rule, threshold=threshold_s)


def test_shipped_rules_load() -> None:
    rules = {r.name: r for r in load_rules([RULE_DIR])}
    assert rules["OutpostWorkerStaleKql"].dimensions == {"worker": "Computer", "group": "WorkerGroup_s"}
    assert rules["OutpostWorkerStaleKql"].severity == "critical"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"query": "T", "threshold": 1}, "`name` is required"),
        ({"name": "A", "query": "T", "threshold": 1, "operator": "bigger"}, "operator must be one of"),
        ({"name": "A", "query": "T", "threshold": "x"}, "threshold must be a number"),
        ({"name": "A", "query": "T", "threshold": 1, "frequency": "soon"}, "not a duration"),
        ({"name": "A", "query": "T", "threshold": 1, "treshold": 2}, "unknown field"),
        ({"name": "A", "query": "T", "threshold": 1, "severity": "page"}, "severity must be one of"),
    ],
)
def test_bad_rules_get_clear_errors(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        rule_from_dict(rule, "rules.yaml")


def test_every_shipped_rule_query_runs(store: TelemetryStore) -> None:
    heartbeat(store, "w1", "g1", 0)
    run = query_runner(store)
    evaluator = AlertEvaluator(load_rules([RULE_DIR]), run)
    evaluator.tick(force=True)
    assert [r["last_error"] for r in evaluator.rule_statuses()] == [None] * len(evaluator.rules)


def test_stale_worker_fires_at_alertmanager_and_resolves(store: TelemetryStore, tmp_path: Path) -> None:
    with running_alertmanager(tmp_path) as am:
        heartbeat(store, "w1", "g1", 5)
        heartbeat(store, "w2", "g2", 5)
        evaluator = AlertEvaluator([stale_rule(60)], query_runner(store), alertmanager_url=am, resend_interval_s=0.5)
        evaluator.tick(force=True)
        assert evaluator.alerts() == []

        # Time passes: w2 keeps heartbeating, w1 does not. Rather than sleep past a
        # 5-minute threshold, lower it below w1's heartbeat age.
        heartbeat(store, "w2", "g2", 0)
        evaluator.rules = [stale_rule(3)]
        evaluator.tick(force=True)
        firing = evaluator.alerts("firing")
        assert [(a["worker"], a["group"]) for a in firing] == [("w1", "g1")]
        assert evaluator.last_delivery_error is None

        got = wait_for(lambda: am_alerts(am, alertname="OutpostWorkerStaleKql"), what="alert at Alertmanager")
        assert len(got) == 1
        alert = got[0]
        assert alert["labels"] == {
            "alertname": "OutpostWorkerStaleKql", "severity": "critical", "worker": "w1", "group": "g1",
        }  # fmt: skip
        assert alert["status"]["state"] == "active"
        assert alert["annotations"]["summary"] == "Worker w1 in group g1 is stale"
        assert alert["annotations"]["runbook_url"] == "docs/alerts.md#outpostworkerstale"
        first_ends = alert["endsAt"]

        # Re-sent while firing: Alertmanager sees a later endsAt.
        wait_for(lambda: (evaluator.tick(force=True), am_alerts(am, worker="w1")[0]["endsAt"] > first_ends)[1],
                 what="re-send")  # fmt: skip

        # The worker comes back: resolved in the evaluator and at Alertmanager (endsAt in the past).
        heartbeat(store, "w1", "g1", 0)
        evaluator.tick(force=True)
        resolved = evaluator.alerts("resolved")
        assert [a["worker"] for a in resolved] == ["w1"] and resolved[0]["ends_at"]
        assert evaluator.alerts("firing") == []
        wait_for(lambda: not any(a["status"]["state"] == "active" for a in am_alerts(am, worker="w1")),
                 what="resolution at Alertmanager")  # fmt: skip
        evaluator.stop()


def test_maintenance_window_suppresses_stale_alerts(store: TelemetryStore, tmp_path: Path) -> None:
    with running_alertmanager(tmp_path) as am:
        heartbeat(store, "w1", "g1", 30)
        heartbeat(store, "w2", "g2", 30)
        evaluator = AlertEvaluator(
            [stale_rule(10)], query_runner(store), alertmanager_url=am, maintenance_file=tmp_path / "maint.json"
        )
        window = evaluator.add_maintenance(group="g1", ends_at=datetime.now(UTC) + timedelta(hours=1))
        evaluator.add_maintenance(worker="w9", ends_at=datetime.now(UTC) + timedelta(hours=1))
        evaluator.tick(force=True)
        states = {a["worker"]: a["state"] for a in evaluator.alerts()}
        assert states == {"w1": "suppressed", "w2": "firing"}
        wait_for(lambda: am_alerts(am, worker="w2"), what="w2 at Alertmanager")
        assert am_alerts(am, worker="w1") == []

        # Windows survive a restart of the evaluator (persisted to maintenance_file).
        again = AlertEvaluator([stale_rule(10)], query_runner(store), maintenance_file=tmp_path / "maint.json")
        assert {w["id"] for w in again.maintenance_windows()} == {w["id"] for w in evaluator.maintenance_windows()}

        # Window over: the still-stale worker fires.
        assert evaluator.remove_maintenance(window.id)
        assert not evaluator.remove_maintenance(window.id)
        evaluator.tick(force=True)
        assert {a["worker"]: a["state"] for a in evaluator.alerts()} == {"w1": "firing", "w2": "firing"}
        wait_for(lambda: am_alerts(am, worker="w1"), what="w1 at Alertmanager after the window")
        evaluator.stop()


def test_expired_window_does_not_suppress(store: TelemetryStore) -> None:
    heartbeat(store, "w1", "g1", 30)
    evaluator = AlertEvaluator([stale_rule(10)], query_runner(store))
    start = datetime.now(UTC) - timedelta(hours=2)
    evaluator.add_maintenance(worker="w1", starts_at=start, ends_at=start + timedelta(hours=1))
    evaluator.tick(force=True)
    assert [a["state"] for a in evaluator.alerts()] == ["firing"]


def test_webhook_gets_firing_and_resolved(store: TelemetryStore) -> None:
    with WebhookReceiver() as hook:
        heartbeat(store, "w1", "g1", 30)
        evaluator = AlertEvaluator([stale_rule(10)], query_runner(store), webhook_url=hook.url)
        evaluator.tick(force=True)
        evaluator.tick(force=True)  # still firing: no second notification
        heartbeat(store, "w1", "g1", 0)
        evaluator.tick(force=True)
        assert [b["status"] for b in hook.bodies] == ["firing", "resolved"]
        assert hook.bodies[0]["alerts"][0]["labels"]["worker"] == "w1"
        evaluator.stop()


def test_firing_alert_keeps_starts_at_across_a_restart(store: TelemetryStore, tmp_path: Path) -> None:
    """A restarted evaluator (same state file) still has the alert open since its first start, and a
    webhook that already heard "firing" is not told again; a resolution during the downtime is told."""
    state_file = tmp_path / "alert-state.json"
    with WebhookReceiver() as hook:
        heartbeat(store, "w1", "g1", 30)
        first = AlertEvaluator([stale_rule(10)], query_runner(store), webhook_url=hook.url, state_file=state_file)
        first.tick(force=True)
        [before] = first.alerts()
        first.stop()

        again = AlertEvaluator([stale_rule(10)], query_runner(store), webhook_url=hook.url, state_file=state_file)
        assert [(a["state"], a["starts_at"]) for a in again.alerts()] == [("firing", before["starts_at"])]
        again.tick(force=True)
        [after] = again.alerts()
        assert after["starts_at"] == before["starts_at"] and after["last_evaluated"] != before["last_evaluated"]
        again.stop()

        heartbeat(store, "w1", "g1", 0)  # w1 came back while alerting was down
        third = AlertEvaluator([stale_rule(10)], query_runner(store), webhook_url=hook.url, state_file=state_file)
        third.tick(force=True)
        assert [a["state"] for a in third.alerts()] == ["resolved"]
        assert [b["status"] for b in hook.bodies] == ["firing", "resolved"]
        third.stop()
    fourth = AlertEvaluator([stale_rule(10)], query_runner(store), state_file=state_file)
    assert fourth.alerts() == []  # resolved alerts are not carried over


def test_unreachable_receiver_is_retried_not_fatal(store: TelemetryStore) -> None:
    from tests.alerts.realtools import free_port

    heartbeat(store, "w1", "g1", 30)
    evaluator = AlertEvaluator(
        [stale_rule(10)], query_runner(store), alertmanager_url=f"http://127.0.0.1:{free_port()}"
    )
    evaluator.tick(force=True)
    assert evaluator.last_delivery_error and "Alertmanager" in evaluator.last_delivery_error
    assert [a["state"] for a in evaluator.alerts()] == ["firing"]


def test_query_error_is_reported_and_keeps_state(store: TelemetryStore) -> None:
    heartbeat(store, "w1", "g1", 30)
    evaluator = AlertEvaluator([stale_rule(10)], query_runner(store))
    evaluator.tick(force=True)
    evaluator.rules = [dataclasses.replace(stale_rule(10), query="Heartbeat | where NoSuchColumn > 1")]
    evaluator.tick(force=True)
    assert evaluator.rule_statuses()[0]["last_error"]
    assert [a["state"] for a in evaluator.alerts()] == ["firing"]


def test_row_count_rules_and_operators(store: TelemetryStore) -> None:
    for worker in ("w1", "w2", "w3"):
        heartbeat(store, worker, "g1", 1)
    rule = rule_from_dict(
        {
            "name": "FewWorkers",
            "query": "Heartbeat | distinct Computer, WorkerGroup_s",
            "dimensions": {"group": "WorkerGroup_s"},
            "operator": "<",
            "threshold": 5,
            "summary": "{group}: {value:.0f}",
        }  # fmt: skip
    )
    evaluator = AlertEvaluator([rule], query_runner(store))
    evaluator.tick(force=True)
    (alert,) = evaluator.alerts()
    assert alert["value"] == 3 and alert["annotations"]["summary"] == "g1: 3"


def test_background_loop_evaluates_on_its_own(store: TelemetryStore) -> None:
    heartbeat(store, "w1", "g1", 30)
    evaluator = AlertEvaluator([dataclasses.replace(stale_rule(10), frequency_s=0.2)], query_runner(store),
                               tick_interval_s=0.05)  # fmt: skip
    evaluator.start()
    try:
        wait_for(lambda: evaluator.alerts("firing"), timeout=10, what="background evaluation")
    finally:
        evaluator.stop()
