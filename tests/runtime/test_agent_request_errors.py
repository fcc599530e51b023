"""Agent-side request errors, counted by endpoint and status, reach the server's /metrics over OTLP."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from agent.telemetry import endpoint_of
from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import wait_until

MISSING = """\
import automationassets
from automationassets import AutomationAssetNotFound
for _ in range(3):
    try:
        automationassets.get_automation_variable("no-such-variable")
    except AutomationAssetNotFound:
        print("missing")
"""
ASSETS = "agent/jobs/{job_id}/assets/{plural}/{name}"


def _errors(metrics: str, worker: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "outpost_agent_request_errors"
        for s in family.samples
        if s.name == "outpost_agent_request_errors_total"
        and s.labels.get("worker") == worker
        and s.labels.get("group") == "g1"
    }


def test_request_errors_by_endpoint_and_status_reach_metrics(server, make_agent):
    make_agent(server, name="errs", run_args=["--metrics-interval", "1"])
    with server.client() as c:
        publish(c, "missing", MISSING, "python3")
        job = wait_job(c, start_job(c, "missing"), timeout=60)
        assert job["status"] == "Completed", job
        assert outputs(c, job["id"]) == ["missing"] * 3
        # Three 404s on the asset endpoint (no job id or asset name in the label). Exported each second, the
        # count may first show part of them; other errors (a loaded machine's timeouts) may come, but no 404.
        errors = wait_until(
            lambda: (e := _errors(c.get("/metrics").text, "errs")).get((ASSETS, "404"), 0) >= 3 and e,
            30,
            0.5,
            "three 404s on /metrics",
        )
        assert errors[(ASSETS, "404")] == 3.0, errors
        assert [key for key in errors if key[1] == "404"] == [(ASSETS, "404")], errors
        names = c.post(
            "/api/v1/query", json={"query": "OTelMetrics | where Name == 'outpost.agent.request.errors' | count"}
        ).json()["rows"]
        assert names[0][0] >= 1


def test_endpoints_are_named_by_their_templates():
    assert endpoint_of("/api/v1/agent/jobs/0b1c/lease") == "agent/jobs/{job_id}/lease"
    assert endpoint_of("/api/v1/agent/poll?wait=20") == "agent/poll"
    assert endpoint_of("/api/v1/agent/jobs/0b1c/assets/variables/secret-name") == ASSETS
    assert endpoint_of("/api/v1/runbooks/x") == "other"
