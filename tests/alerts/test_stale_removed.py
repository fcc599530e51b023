"""The stale-worker KQL rule never fires for a removed worker; a re-registered one counts again."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telemetry import rows
from telemetry.alert_rules import load_rules
from telemetry.alerting import AlertEvaluator
from telemetry.store import TelemetryStore
from tests.alerts.realtools import heartbeat, query_runner

RULE_DIR = Path(__file__).resolve().parents[2] / "alerts" / "kql"


@pytest.fixture
def store() -> Iterator[TelemetryStore]:
    s = TelemetryStore(None)
    yield s
    s.close()


def _removed(store: TelemetryStore, worker: str, group: str, age_s: float) -> None:
    when = datetime.now(UTC) - timedelta(seconds=age_s)
    store.insert_rows("AzureDiagnostics", [rows.worker_removed_row(when, worker, group)])


def test_removed_worker_stops_firing_and_a_reregistered_one_fires_again(store: TelemetryStore) -> None:
    rule = next(r for r in load_rules([RULE_DIR]) if r.name == "OutpostWorkerStaleKql")
    evaluator = AlertEvaluator([dataclasses.replace(rule, threshold=10)], query_runner(store))
    heartbeat(store, "gone", "g1", 60)
    heartbeat(store, "same-name-other-group", "g2", 60)
    evaluator.tick(force=True)
    assert {a["labels"]["worker"] for a in evaluator.alerts() if a["state"] == "firing"} == {
        "gone",
        "same-name-other-group",
    }
    _removed(store, "gone", "g1", 30)  # removed after its last heartbeat
    _removed(store, "same-name-other-group", "g1", 30)  # a namesake in another group: not this one
    evaluator.tick(force=True)
    firing = {a["labels"]["worker"] for a in evaluator.alerts() if a["state"] == "firing"}
    assert firing == {"same-name-other-group"}
    heartbeat(store, "gone", "g1", 20)  # registered again, then went silent again
    evaluator.tick(force=True)
    assert {a["labels"]["worker"] for a in evaluator.alerts() if a["state"] == "firing"} == firing | {"gone"}
