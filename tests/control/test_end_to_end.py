"""A published runbook runs on a worker group, end to end, with real processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import Agent, Server, cli, wait_until


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with one running worker (w1 in g1) for the tests below that each use runbooks of their own."""
    base = tmp_path_factory.mktemp("e2e")
    server = Server(base / "server").start()
    agent = Agent(server, base / "state-w1", "g1", "w1")
    agent.register()
    agent.start()
    yield server
    agent.stop()
    server.stop()


ECHO_PY = """import sys
print("args=" + "|".join(sys.argv[1:]))
print("ERROR: an error line")
print("WARNING: a warning line")
print("VERBOSE: a verbose line")
print("DEBUG: a debug line")
print("to stderr", file=sys.stderr)
"""


def test_python_runbook_streams_and_params(shared):
    with shared.client() as c:
        publish(c, "echo", ECHO_PY, "python3")
        job_id = start_job(
            c,
            "echo",
            params=[{"name": None, "value": "first"}, {"name": "k", "value": "v"}, {"name": None, "value": "second"}],
        )
        job = wait_job(c, job_id)
        assert job["status"] == "Completed"
        assert job["worker"] == "w1" and job["exit_code"] == 0
        records = c.get(f"/api/v1/jobs/{job_id}/streams").json()["records"]
    by_type = {(r["type"], r["text"]) for r in records}
    # Positional values first, in the order given, then named ones as --name value.
    assert ("Output", "args=first|second|--k|v") in by_type
    assert ("Error", "an error line") in by_type
    assert ("Warning", "a warning line") in by_type
    assert ("Verbose", "a verbose line") in by_type
    assert ("Debug", "a debug line") in by_type
    assert ("Error", "to stderr") in by_type


def test_azure_style_numbered_parameters_are_positional(shared):
    with shared.client() as c:
        publish(c, "argv", 'import sys\nprint("|".join(sys.argv[1:]))\n', "python3")
    # Azure's API names Python positional parameters "[PARAMETER n]"; the order comes from n.
    done = cli(
        "job",
        "start",
        "argv",
        "--run-on",
        "g1",
        "--param",
        "[PARAMETER 2]=second",
        "--param",
        "[PARAMETER 1]=first",
        "--param",
        "k=v",
        "--wait",
        env=shared.env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["first|second|--k|v"]


def test_bash_runbook_exit_code_fails_job(shared):
    with shared.client() as c:
        publish(c, "boom", "echo before\nexit 7\n")
        job = wait_job(c, start_job(c, "boom"))
    assert job["status"] == "Failed"
    assert job["exit_code"] == 7
    assert "exit code 7" in job["status_reason"]


def test_cli_quickstart_wait_prints_output(shared, tmp_path):
    """The README quickstart: create, publish, start --wait; exit 0 only on Completed."""
    env = shared.env()
    script = tmp_path / "hello.sh"
    script.write_text('echo "hello $1"\necho "oops" >&2\n')
    assert cli("runbook", "create", "hello", "--type", "bash", "--file", str(script), env=env).returncode == 0
    unpublished = cli("job", "start", "hello", "--run-on", "g1", env=env)
    assert unpublished.returncode == 1
    assert "runbook hello has no published version; publish it first" in unpublished.stderr
    assert len(unpublished.stderr.strip().splitlines()) == 1
    assert cli("runbook", "publish", "hello", env=env).returncode == 0
    done = cli("job", "start", "hello", "--run-on", "g1", "--param", "world", "--wait", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hello world"]
    assert "oops" in done.stderr

    script.write_text("echo partial\nexit 3\n")
    cli("runbook", "create", "hello", "--file", str(script), "--type", "bash", "--publish", env=env)
    failed = cli("job", "start", "hello", "--run-on", "g1", "--wait", env=env)
    assert failed.returncode == 1
    assert failed.stdout.splitlines() == ["partial"]
    assert "ended Failed" in failed.stderr

    job_id = cli("job", "start", "hello", "--run-on", "g1", env=env).stdout.strip()
    assert len(job_id) == 36
    shown = cli("job", "show", job_id, "--json", env=env)
    assert json.loads(shown.stdout)["id"] == job_id
    wait_until(lambda: json.loads(cli("job", "show", job_id, "--json", env=env).stdout)["status"] == "Failed", 30)
    streams = json.loads(cli("job", "streams", job_id, "--json", env=env).stdout)
    assert [(s["type"], s["text"]) for s in streams] == [("Output", "partial")]
    assert set(streams[0]) == {"type", "time", "text"}


@pytest.mark.slow  # > 20 s: end to end with real processes
def test_200_jobs_three_agents_exactly_once(make_server, make_agent):
    """SQLite. On PostgreSQL the same guarantees are held by test_concurrent_polls_never_get_more_than_they_ask
    (a backlog claimed by concurrent multi-job polls) and test_replica_kill.py (agents on two replicas,
    each job run once by a ledger)."""
    server = make_server()
    agents = [make_agent(server, name=f"w{i}", start=False, run_args=["--concurrency", "8"]) for i in range(3)]
    with server.client() as c:
        publish(c, "count", 'echo "job $1 on $(hostname)"\n')
        # A backlog first: every poll then claims several jobs at once, from three workers at a time.
        ids = {start_job(c, "count", params=[{"name": None, "value": str(i)}]): i for i in range(200)}
        for a in agents:
            a.start()
        for job_id, i in ids.items():
            job = wait_job(c, job_id, timeout=120)
            assert job["status"] == "Completed", job
            assert job["activations"] == 1
            assert outputs(c, job_id)[0].startswith(f"job {i} on ")
            assert len(outputs(c, job_id)) == 1
        workers = {c.get(f"/api/v1/jobs/{j}").json()["worker"] for j in ids}
    assert workers <= {a.name for a in agents}
    assert len(workers) >= 2  # the load really was shared
    for a in agents:
        assert a.proc is not None and a.proc.poll() is None, a.log()
        assert "Traceback" not in a.log()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_polls_never_get_more_than_they_ask(backend, make_server, make_agent, request):
    """Four pollers at once, each asking for up to 5 jobs of a 120-job backlog: no answer holds
    more than 5, and no job is handed out twice."""
    kwargs = {}
    if backend == "postgres":
        kwargs["database_url"] = request.getfixturevalue("pg_url")
    server = make_server(**kwargs)
    credentials = []
    for i in range(4):
        agent = make_agent(server, name=f"p{i}", start=False)
        credentials.append((agent.state_dir / "credential").read_text().strip())
    with server.client() as c:
        publish(c, "noop", "true\n")
        ids = {start_job(c, "noop") for _ in range(120)}

    def drain(credential: str) -> list[int | str]:
        got: list[int | str] = []
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {credential}"}) as w:
            for _ in range(60):  # bounded: 120 jobs at 5 a poll is 24 polls in all
                r = w.post("/api/v1/agent/poll", params={"wait": 0, "max": 5})
                if r.status_code == 204:
                    return got
                jobs = r.json()["jobs"]
                got.append(len(jobs))
                got.extend(j["job_id"] for j in jobs)
        return got

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(drain, credentials))
    sizes = [x for r in results for x in r if isinstance(x, int)]
    claimed = [x for r in results for x in r if isinstance(x, str)]
    assert sizes and max(sizes) <= 5, sizes
    assert len(claimed) == len(set(claimed)) == 120 and set(claimed) == ids
