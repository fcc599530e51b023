"""One trace per job: API call -> queue -> the agent's run -> the runbook process (TRACEPARENT)."""

from __future__ import annotations

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import wait_until


def _spans(c, trace_id: str) -> dict[str, dict]:
    q = f"OTelSpans | where TraceId == '{trace_id}' | project Name, SpanId, ParentSpanId, ServiceName, StatusCode"
    r = c.post("/api/v1/query", json={"query": q})
    assert r.status_code == 200, r.text
    names = [col["name"] for col in r.json()["columns"]]
    return {row[0]: dict(zip(names, row, strict=True)) for row in r.json()["rows"]}


def test_job_trace_spans_server_agent_and_runbook(server, make_agent):
    make_agent(server)
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with server.client() as c:
        publish(c, "traced", 'echo "$TRACEPARENT"\nexit 1\n')
        r = c.post(
            "/api/v1/jobs",
            json={"runbook": "traced", "run_on": "g1"},
            headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"},
        )
        job_id = r.json()["id"]
        assert wait_job(c, job_id)["status"] == "Failed"
        version, trace_id, parent_span, _flags = outputs(c, job_id)[0].split("-")
        assert version == "00" and trace_id == caller_trace  # the caller's trace continues through the job

        spans = wait_until(
            lambda: (s := _spans(c, trace_id)) and {"job create", "job queued", "job run"} <= set(s) and s,
            30,
            0.3,
            "the job's spans in OTelSpans",
        )
    create, queued, run = spans["job create"], spans["job queued"], spans["job run"]
    assert create["ParentSpanId"] == "00f067aa0ba902b7" and create["ServiceName"] == "outpost-server"
    assert queued["ParentSpanId"] == create["SpanId"]
    assert run["ParentSpanId"] == create["SpanId"] and run["ServiceName"] == "outpost-agent"
    assert run["StatusCode"] == "Error"  # the runbook failed
    assert parent_span == run["SpanId"]  # the runbook's TRACEPARENT points at the agent's `job run`


def test_every_job_gets_its_own_trace(server, make_agent):
    make_agent(server)
    with server.client() as c:
        publish(c, "tp", 'echo "$TRACEPARENT"\n')
        traces = set()
        for _ in range(3):
            job_id = start_job(c, "tp")
            wait_job(c, job_id)
            traces.add(outputs(c, job_id)[0].split("-")[1])
    assert len(traces) == 3


def test_agent_exports_job_metrics_over_otlp(server, make_agent):
    make_agent(server, run_args=["--metrics-interval", "1"])
    with server.client() as c:
        publish(c, "m", "echo hi\n")
        wait_job(c, start_job(c, "m"))
        q = "OTelMetrics | where Name startswith 'outpost.agent.job' | distinct Name"
        names = wait_until(
            lambda: (
                {row[0] for row in c.post("/api/v1/query", json={"query": q}).json()["rows"]}
                >= {"outpost.agent.jobs", "outpost.agent.job.duration"}
            ),
            30,
            0.5,
            "agent job metrics",
        )
    assert names
