"""Every KQL panel query runs through the collector's KQL layer and returns rows.

Rows are written in the shapes the collector stores; tests/dashboards/test_live.py repeats
this against tables filled by a real agent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from telemetry.store import TelemetryStore
from tests.alerts.realtools import query_runner
from tests.dashboards.dashboard_files import concrete_kql, kql_queries
from tests.dashboards.test_live import VARIABLES


@pytest.fixture
def store() -> Iterator[TelemetryStore]:
    s = TelemetryStore(None)
    now = datetime.now(UTC).replace(tzinfo=None)
    s.insert_rows("Heartbeat", [
        {"TimeGenerated": now - timedelta(minutes=m), "Computer": "w1", "WorkerGroup_s": "g1",
         "ComputerIP": "127.0.0.1", "OSType": "Linux", "OSName": "Debian", "Version": "0.1.0"}
        for m in range(3)
    ])  # fmt: skip
    job_logs = [("j1", "ok", "Completed"), ("j2", "fails", "Failed"), ("j3", "fails", "Suspended")]
    s.insert_rows("AzureDiagnostics", [
        {"TimeGenerated": now, "Category": "JobLogs", "ResultType": status, "RunbookName_s": rb, "JobId_g": job,
         "RunOn_s": "g1", "HybridWorker_s": "w1", "ResultDescription": ""}
        for job, rb, status in job_logs
    ] + [
        {"TimeGenerated": now, "Category": "JobStreams", "StreamType_s": "Error", "RunbookName_s": "fails",
         "JobId_g": "j2", "RunOn_s": "g1", "HybridWorker_s": "w1", "ResultDescription": "broken"}
    ])  # fmt: skip
    s.insert_rows("DiagnosticResults", [
        {"TimeGenerated": now, "Computer": "w1", "WorkerGroup_s": "g1", "CheckId": "dns.resolve",
         "CheckGroup": "dns", "Status": "pass", "Finding": "ok", "Remediation": ""}
    ])  # fmt: skip
    yield s
    s.close()


@pytest.mark.parametrize(("where", "query"), kql_queries(), ids=[w for w, _ in kql_queries()])
def test_kql_panel_query_returns_rows(store: TelemetryStore, where: str, query: str) -> None:
    columns, rows = query_runner(store)(concrete_kql(query, VARIABLES))
    assert columns and rows, f"{where}: no rows"
