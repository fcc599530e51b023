"""The 38 published Azure Monitor queries run unchanged against tables filled by real workers and jobs.

One real `outpost server` (SQLite + DuckDB, `--stale-after 5`) and three real
`outpost worker run` agents heartbeating every second: `w1` and `w2` in group
`linux`, `w3` in group `edge`. Real bash runbooks end Completed, Failed
(non-zero exit), Completed with `ERROR:` lines, and Stopped (via the REST API);
two carry the names the published queries look for (`AvdStorageLogData`,
`ScheduledStartStop_Parent`). `w3` is stopped before the queries, so it is down
by `outpost_worker_up` and its last heartbeat precedes the others'.

Every query goes over HTTP (`POST /api/v1/query`, admin token) and is checked
for status and shape, and for values this fleet makes knowable. The published
thresholds are minutes to days, so "stale" by a query is not reachable in a
test that lasts seconds: those queries are checked to return no rows.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import Agent, Server, wait_until
from tests.telemetry import conformance

FILES = conformance.require_queries()

WORKERS = {"w1": "linux", "w2": "linux", "w3": "edge"}
STALE = "w3"
AVD_LINES = [
    "Azure Files,sub1,rg1,stor1,share1,100,97,3.00",
    "Azure Files,sub1,rg1,stor1,share2,100,50,50.00",
]

# runbook name -> (group, bash script, final status)
RUNBOOKS: dict[str, tuple[str, str, str]] = {
    "Hello": ("linux", 'echo "hello from $(hostname)"\necho "VERBOSE: done"\n', "Completed"),
    "Broken": ("linux", 'echo starting\necho "ERROR: boom: disk full"\necho "giving up" >&2\nexit 3\n', "Failed"),
    "Warned": ("linux", 'echo "ERROR: transient glitch, retried"\necho ok\n', "Completed"),
    "AvdStorageLogData": ("linux", "".join(f"echo '{line}'\n" for line in AVD_LINES), "Completed"),
    "ScheduledStartStop_Parent": ("linux", "echo parent done\n", "Completed"),
    "Stopper": ("linux", "echo waiting\nsleep 120\n", "Stopped"),
    "EdgeBroken": ("edge", 'echo "ERROR: edge device unreachable"\nexit 2\n', "Failed"),
}


@dataclass
class Fleet:
    server: Server
    jobs: dict[str, str]  # runbook -> job id
    statuses: dict[str, str]  # runbook -> final status
    error_jobs: set[str]  # job ids with Error stream records (as the REST API shows them)
    stopped_at: datetime  # when w3 was stopped
    heartbeats: dict[str, int]  # Computer -> Heartbeat rows
    answers: dict[str, httpx.Response] = field(default_factory=dict)  # query stem -> response


def _query(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/api/v1/query", json={"query": text}, timeout=120)


def _metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("live-conformance")
    server = Server(base / "server", extra=["--stale-after", "5"])
    agents: list[Agent] = []
    try:
        server.start()
        for name, group in WORKERS.items():
            agent = Agent(server, base / f"state-{name}", group, name)
            agent.register()
            agents.append(agent.start())
        with server.client() as c:
            for runbook, (_, script, _) in RUNBOOKS.items():
                publish(c, runbook, script)
            jobs = {rb: start_job(c, rb, group) for rb, (group, _, _) in RUNBOOKS.items()}
            wait_job(c, jobs["Stopper"], ("Running",))
            r = c.post(f"/api/v1/jobs/{jobs['Stopper']}/stop")
            assert r.status_code == 200, r.text
            statuses = {rb: wait_job(c, job_id)["status"] for rb, job_id in jobs.items()}
            assert statuses == {rb: final for rb, (_, _, final) in RUNBOOKS.items()}
            error_jobs = {job_id for job_id in jobs.values() if outputs(c, job_id, "Error")}

            # w3 heartbeats, then stops: down by the server's stale window, older than the others.
            wait_until(
                lambda: _query(c, f"Heartbeat | where Computer == '{STALE}' | count").json()["rows"][0][0],
                30,
                0.2,
                "a heartbeat from w3",
            )
            agents[2].stop()
            stopped_at = datetime.now(UTC)

            def w3_down() -> bool:
                text = c.get("/metrics").text
                return _metric(text, "outpost_worker_up", worker=STALE, group="edge") == 0.0

            wait_until(w3_down, 30, 0.25, "outpost_worker_up{worker='w3'} to drop to 0")
            metrics = c.get("/metrics").text
            for name in ("w1", "w2"):  # still heartbeating every second
                assert _metric(metrics, "outpost_worker_up", worker=name, group="linux") == 1.0, metrics

            counts = _query(c, "Heartbeat | summarize n = count() by Computer").json()["rows"]
            heartbeats = {computer: n for computer, n in counts}

            fleet = Fleet(server, jobs, statuses, error_jobs, stopped_at, heartbeats)
            # DuckDB and the KQL layer do the work server-side; four at a time is the server's own limit.
            with ThreadPoolExecutor(4) as pool:
                stems = [p.stem for p in FILES]
                texts = [conformance.load(p.name, worker="w1") for p in FILES]
                for stem, response in zip(stems, pool.map(lambda t: _query(c, t), texts), strict=True):
                    fleet.answers[stem] = response
        yield fleet
    finally:
        for agent in agents:
            agent.stop()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def records(body: dict[str, Any]) -> list[dict[str, Any]]:
    names = [c["name"] for c in body["columns"]]
    return [dict(zip(names, row, strict=True)) for row in body["rows"]]


def col(body: dict[str, Any], name: str) -> list[Any]:
    return [r[name] for r in records(body)]


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


Check = Callable[[Fleet, dict[str, Any]], None]
FAILED = {"Broken", "EdgeBroken"}


def _rows(n: int) -> Check:
    def check(f: Fleet, body: dict[str, Any]) -> None:
        assert len(body["rows"]) == n, body["rows"]

    return check


def _02(f: Fleet, body: dict[str, Any]) -> None:
    # The runbook's CSV, split on ',': only share1 has < 5 % available.
    assert col(body, "Share") == ["share1"]
    assert col(body, "PercentAvailable") == ["3.00"]
    assert col(body, "StorageAccount") == ["stor1"]


def _05(f: Fleet, body: dict[str, Any]) -> None:
    by_type: dict[str, int] = {}
    for rec in records(body):
        by_type[rec["ResultType"]] = by_type.get(rec["ResultType"], 0) + rec["AggregatedValue"]
    finals = list(f.statuses.values())
    assert by_type["New"] == len(f.jobs)
    assert by_type["Started"] == len(f.jobs)  # `!= "started"` is case-sensitive: Started stays
    for status in ("Completed", "Failed", "Stopped"):
        assert by_type[status] == finals.count(status), by_type


def _06(f: Fleet, body: dict[str, Any]) -> None:
    assert sorted(map(tuple, body["rows"])) == [(rb, 1) for rb in sorted(FAILED)]


def _07(f: Fleet, body: dict[str, Any]) -> None:
    assert col(body, "ResultType") == ["Completed"] and sum(col(body, "AggregatedValue")) == 1


def _08(f: Fleet, body: dict[str, Any]) -> None:
    assert set(col(body, "Computer")) == set(WORKERS)
    assert len(set(col(body, "SourceComputerId"))) == 3  # one per worker's state dir


def _09(f: Fleet, body: dict[str, Any]) -> None:
    assert set(col(body, "JobId_g")) == f.error_jobs
    assert {f.jobs["Broken"], f.jobs["Warned"], f.jobs["EdgeBroken"]} <= f.error_jobs
    texts = set(col(body, "ResultDescription"))
    assert {"boom: disk full", "giving up", "transient glitch, retried", "edge device unreachable"} <= texts
    assert set(col(body, "Category")) == {"JobStreams"}


def _11(f: Fleet, body: dict[str, Any]) -> None:
    recs = {rec["JobId_g"]: rec for rec in records(body)}
    assert set(recs) == set(f.jobs.values())
    for runbook, job_id in f.jobs.items():
        rec = recs[job_id]
        assert rec["RunbookName"] == runbook
        assert rec["Status"] == f.statuses[runbook], rec
        assert rec["HasErrors"] is (job_id in f.error_jobs), rec
        if f.statuses[runbook] in ("Completed", "Failed"):
            assert rec["DurationSec"] is not None and 0 <= rec["DurationSec"] < 60, rec


def _12(f: Fleet, body: dict[str, Any]) -> None:
    # No "Azure Monitor Agent" rows: both states count zero, Unhealthy ranks last; project-reorder puts these first.
    assert [(x["State"], x["Count"]) for x in records(body)] == [("Healthy", 0), ("Unhealthy", 0)]
    assert [c["name"] for c in body["columns"]][:2] == ["State", "Count"]


def _16(f: Fleet, body: dict[str, Any]) -> None:
    recs = {x["_ComputerName_"]: x for x in records(body)}
    assert set(recs) == set(WORKERS)  # all three heartbeated within 15 minutes
    for name, rec in recs.items():
        assert rec["State"] == "Healthy"
        assert rec["Computer"] == f"🖥️ {name}"
        assert isinstance(rec["Heartbeat Trend"], list) and len(rec["Heartbeat Trend"]) == 30
        assert rec["Details"]["Computer"] == name and rec["Details"]["WorkerGroup_s"] == WORKERS[name]


def _17(f: Fleet, body: dict[str, Any]) -> None:
    assert [(x["State"], x["Count"]) for x in records(body)] == [("Healthy", 3), ("Unhealthy", 0)]


def _18(f: Fleet, body: dict[str, Any]) -> None:
    (rec,) = records(body)
    assert rec["Computer"] == "w1"
    assert len(rec["Trend"]) == 96 and len(rec["TimeGenerated"]) == 96  # 1 day in 15-minute steps
    # every w1 heartbeat is counted once (more may have arrived after the count was taken)
    assert sum(rec["Trend"]) >= f.heartbeats["w1"]


def _20(f: Fleet, body: dict[str, Any]) -> None:
    recs = {x["Computer"]: x for x in records(body)}
    assert set(recs) == set(WORKERS)
    for rec in recs.values():
        assert rec["Agent state"] == "Healthy" and rec["OS"].startswith("Linux")
        assert len(rec["Heartbeats trend"]) == 24 and sum(rec["Heartbeats trend"]) > 0


def _23(f: Fleet, body: dict[str, Any]) -> None:
    got = sorted(zip(col(body, "RunbookName_s"), col(body, "ResultType"), col(body, "JobId_g"), strict=True))
    want = sorted((rb, f.statuses[rb], f.jobs[rb]) for rb in f.jobs if f.statuses[rb] in ("Failed", "Stopped"))
    assert got == want


def _24(f: Fleet, body: dict[str, Any]) -> None:
    assert set(col(body, "JobId_g")) == f.error_jobs
    warned = {r["ResultDescription"] for r in records(body) if r["RunbookName_s"] == "Warned"}
    assert warned == {"transient glitch, retried"}  # a Completed job's errors are listed too


def _27(f: Fleet, body: dict[str, Any]) -> None:
    assert col(body, "Resource") == sorted(WORKERS)
    assert set(col(body, "Category")) == {"Direct Agent"}


def _29(f: Fleet, body: dict[str, Any]) -> None:
    (rec,) = records(body)
    assert rec["MachineCount"] == 3 and rec["MMACount"] == 3 and rec["AMACount"] == 0
    assert rec["migstatus"] == "Not Started" and rec["counts"] == [3, 0]


def _34(f: Fleet, body: dict[str, Any]) -> None:
    states = dict(zip(col(body, "Computer"), col(body, "State"), strict=True))
    assert states == {"w2": "COMMUNICATING", "w3": "COMMUNICATING"}  # stopped seconds ago, not an hour


def _35(f: Fleet, body: dict[str, Any]) -> None:
    assert sorted(col(body, "Computer")) == sorted(WORKERS)
    for rec in records(body):  # the test spans one or two of the 24 hourly bins
        assert rec["totalAvailableHours"] in (1, 2) and rec["availabilityRate"] == rec["totalAvailableHours"] * 100 / 24


def _36(f: Fleet, body: dict[str, Any]) -> None:
    recs = {x["Computer"]: x for x in records(body)}
    assert set(recs) == set(WORKERS)  # one row per worker
    assert {name: r["WorkerGroup_s"] for name, r in recs.items()} == WORKERS
    assert {r["Category"] for r in recs.values()} == {"Direct Agent"}
    assert {r["ComputerEnvironment"] for r in recs.values()} == {"Non-Azure"}
    # w3 stopped: its last heartbeat precedes the stop; the live workers' follow it.
    assert ts(recs[STALE]["TimeGenerated"]) <= f.stopped_at
    for name in ("w1", "w2"):
        assert ts(recs[name]["TimeGenerated"]) > f.stopped_at


def _38(f: Fleet, body: dict[str, Any]) -> None:
    assert len(body["rows"]) == 1 and body["rows"][0][0] in ("Spike detected", "No spike")


CHECKS: dict[str, Check] = {
    "01": _rows(0),  # nobody silent for > 24 h
    "02": _02,
    "03": lambda f, b: None,  # AuditEvent rows: shape only (whether the control plane audits publishes is its own)
    "05": _05,
    "06": _06,
    "07": _07,
    "08": _08,
    "09": _09,
    "10": _rows(0),  # "<SearchValue>" is in no column
    "11": _11,
    "12": _12,
    "13": _rows(0),
    "14": _rows(0),
    "15": lambda f, b: b["rows"] == [[1]] or pytest.fail(str(b["rows"])),
    "16": _16,
    "17": _17,
    "18": _18,
    "19": lambda f, b: b["rows"] == [[0]] or pytest.fail(str(b["rows"])),
    "20": _20,
    "21": lambda f, b: b["rows"] == [["#### No inactive agents found"]] or pytest.fail(str(b["rows"])),
    "22": _rows(0),  # no "virtualMachines"
    "23": _23,
    "24": _24,
    "26": lambda f, b: len({r[0] for r in b["rows"]}) == 3 or pytest.fail(str(b["rows"])),
    "27": _27,
    "28": lambda f, b: b["rows"] == [[0, 0, True]] or pytest.fail(str(b["rows"])),
    "29": _29,
    "30": _rows(0),  # no Arc servers
    "31": _rows(0),  # nobody silent for 5 minutes yet
    "32": _rows(0),  # no gateways
    "33": _rows(0),
    "34": _34,
    "35": _35,
    "36": _36,
    "37": _rows(0),  # nobody silent for 5 hours
    "38": _38,
}


def test_all_38_checked() -> None:
    assert len(FILES) == 38
    assert set(CHECKS) | {conformance.SYNTAX_ERROR, conformance.UNKNOWN_TABLE} == {p.stem for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_live_conformance_query(fleet: Fleet, path: Path) -> None:
    response = fleet.answers[path.stem]
    body = response.json()
    if path.stem == conformance.SYNTAX_ERROR:
        assert response.status_code == 400, body
        assert body["error"] == "syntax_error" and body["line"] == 5 and body["column"]
        assert "line 5" in body["detail"]
        return
    if path.stem == conformance.UNKNOWN_TABLE:
        assert response.status_code == 400, body
        assert "unknown table 'Update'" in body["detail"]
        return
    assert response.status_code == 200, body
    assert body["columns"], "a result always has columns"
    assert all(c["name"] and c["type"] for c in body["columns"])
    for row in body["rows"]:
        assert len(row) == len(body["columns"])
    CHECKS[path.stem](fleet, body)


def test_heartbeats_are_from_the_real_agents(fleet: Fleet) -> None:
    assert set(fleet.heartbeats) == set(WORKERS)
    assert all(n >= 1 for n in fleet.heartbeats.values())
