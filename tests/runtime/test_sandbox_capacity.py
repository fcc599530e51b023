"""Worker capacity and load in Heartbeat and /metrics; jobs lost to an expired lease are counted."""

from __future__ import annotations

import re
import signal

from agent import limits
from tests.helpers.api import publish, start_job, wait_job
from tests.helpers.procs import wait_until


def _gauge(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_slots_move_with_jobs_and_a_lost_lease_is_counted(make_server, make_agent):
    server = make_server(extra=["--lease-seconds", "3"])
    agent = make_agent(server, name="cap", run_args=["--concurrency", "2", "--heartbeat-interval", "0.3"])
    with server.client() as c:

        def metric(name: str, **labels: str) -> float | None:
            return _gauge(c.get("/metrics").text, name, **labels)

        assert wait_until(lambda: metric("outpost_worker_slots", worker="cap") == 2.0, 20, 0.2, "slots gauge")
        assert metric("outpost_worker_slots_busy", worker="cap") == 0.0
        assert metric("outpost_worker_cpus", worker="cap") >= 1
        publish(c, "nap", "sleep 30\n")
        job_id = start_job(c, "nap")
        wait_job(c, job_id, ("Running",), timeout=30)
        wait_until(lambda: metric("outpost_worker_slots_busy", worker="cap") == 1.0, 20, 0.2, "one busy slot")
        assert metric("outpost_group_slots", group="g1", state="busy") == 1.0
        assert metric("outpost_group_slots", group="g1", state="total") == 2.0
        query = "Heartbeat | where Computer == 'cap' and SlotsBusy_d == 1 | project SlotsTotal_d, LoadAverage1m_d"
        rows = c.post("/api/v1/query", json={"query": query}).json()["rows"]
        assert rows and rows[0][0] == 2.0 and rows[0][1] >= 0
        # Perf rows in Azure's shape: a published Heartbeat/Perf join runs unchanged.
        join = (
            "Heartbeat | where Computer == 'cap' | join kind=inner (Perf | where ObjectName == \"Processor\") "
            "on Computer | project Computer, CounterName, InstanceName, CounterValue | take 1"
        )
        joined = wait_until(lambda: c.post("/api/v1/query", json={"query": join}).json()["rows"], 20, 0.3, "Perf")
        assert joined[0][:3] == ["cap", "% Processor Time", "_Total"] and 0 <= joined[0][3] <= 100
        counters = (
            "Perf | where Computer == 'cap' | distinct ObjectName, CounterName | order by ObjectName, CounterName"
        )
        seen = {tuple(r) for r in c.post("/api/v1/query", json={"query": counters}).json()["rows"]}
        assert {("Memory", "% Used Memory"), ("Memory", "Available MBytes"), ("Logical Disk", "% Free Space")} <= seen
        used = metric("outpost_worker_perf", worker="cap", object="Memory", counter="% Used Memory")
        assert used is not None and 0 < used < 100

        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        lost = wait_job(c, job_id, timeout=30)
        assert lost["status"] == "Failed" and "lease expired" in lost["status_reason"]
        assert metric("outpost_jobs_lost_total", group="g1", outcome="failed") == 1.0
    enforcement = limits.detect()
    if enforcement.mechanism == "cgroup v1":  # the crashed run's cgroup goes at the next start
        left = enforcement.bases["memory"] / job_id
        assert left.is_dir()
        agent.start()
        wait_until(lambda: not left.exists(), 20, 0.2, "the crashed job's cgroup to be removed")
