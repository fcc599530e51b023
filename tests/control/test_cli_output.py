"""CLI output people can read and scripts can parse, against a real server (and a real worker where needed).

One server and one worker (w1 in g1) serve the whole module: each test uses names of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.helpers.api import publish, start_job, wait_job
from tests.helpers.pki import make_ca_and_cert
from tests.helpers.procs import OUTPOST, Agent, Server, cli, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    shared = Server(tmp_path_factory.mktemp("cli-output") / "server").start()
    yield shared
    shared.stop()


@pytest.fixture(scope="module")
def worker(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(server, tmp_path_factory.mktemp("cli-worker") / "state", "g1", "w1")
    agent.register()
    yield agent.start()
    agent.stop()


STREAMS_PY = """import sys
print("out", *sys.argv[1:])
print("ERROR: bad thing")
print("WARNING: careful")
print("done")
"""


def one_line_error(result: subprocess.CompletedProcess[str], code: int | None = None) -> str:
    assert result.returncode != 0 if code is None else result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_show_commands_print_no_python_structures(server: Server, worker: Agent) -> None:
    env = server.env()
    with server.client() as c:
        publish(c, "show-me", "echo hi\n")
        job_id = start_job(c, "show-me", params=[{"name": None, "value": "eu-west"}, {"name": "days", "value": "7"}])
        wait_job(c, job_id)
    assert cli("schedule", "create", "nightly", "--runbook", "show-me", "--run-on", "g1", "--every", "1d",
               "-p", "eu-west", "-p", "days=7", env=env).returncode == 0  # fmt: skip
    made = cli("webhook", "create", "hook", "--runbook", "show-me", "--run-on", "g1", "-p", "eu-west", env=env)
    assert made.returncode == 0, made.stderr
    for args in (("job", "show", job_id), ("schedule", "show", "nightly"), ("webhook", "show", "hook")):
        shown = cli(*args, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "{" not in shown.stdout and "[" not in shown.stdout and "None" not in shown.stdout, shown.stdout
        params = next(line for line in shown.stdout.splitlines() if line.strip().startswith("params"))
        assert "eu-west" in params, shown.stdout
    job_params = next(ln for ln in cli("job", "show", job_id, env=env).stdout.splitlines() if "params" in ln)
    assert job_params.split(None, 1)[1] == "eu-west days=7"


def test_wait_json_prints_exactly_one_document(server: Server, worker: Agent) -> None:
    with server.client() as c:
        publish(c, "streams-json", STREAMS_PY, "python3")
    result = cli("job", "start", "streams-json", "--run-on", "g1", "-p", "x", "--wait", "--json", env=server.env())
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # the whole of stdout parses: nothing else was written there
    assert document["status"] == "Completed"
    assert document["output"] == ["out x", "done"]
    assert "out x" in result.stderr and "ERROR: bad thing" in result.stderr and "WARNING: careful" in result.stderr


def test_wait_shows_error_and_warning_with_their_prefixes(server: Server, worker: Agent) -> None:
    with server.client() as c:
        publish(c, "streams", STREAMS_PY, "python3")
    result = cli("job", "start", "streams", "--run-on", "g1", "--wait", env=server.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["out", "done"]
    assert "ERROR: bad thing" in result.stderr.splitlines()
    assert "WARNING: careful" in result.stderr.splitlines()


def test_wait_on_a_group_with_no_live_worker_says_so(server: Server, tmp_path) -> None:
    Agent(server, tmp_path / "idle", "empty", "idle").register()  # registered, never polled
    with server.client() as c:
        publish(c, "lonely", "echo hi\n")
    proc = subprocess.Popen(
        [*OUTPOST, "job", "start", "lonely", "--run-on", "empty", "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **server.env()},
    )
    try:
        assert proc.stderr is not None
        # The first notice comes after 15 s; then Ctrl-C, as a user would (bounded by the test timeout).
        lines = []
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith("still queued"):
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        proc.kill()
    notices = [line for line in lines if line.startswith("still queued")]
    assert notices == ["still queued: no live worker in group empty (no worker has ever polled)"], lines
    assert "stopped following; the job goes on" in rest


BAD_NAMES = ["a?b", "a#b", "a/b", "../x", "a b", "é", "x" * 129]


def test_names_are_checked_before_any_request(server: Server) -> None:
    """Every command that takes a name, each with a bad name (they rotate), refuses it in one line, exit 2."""
    env = server.env()
    commands = [
        ("runbook", "show", "{}"),
        ("runbook", "delete", "{}"),
        ("runbook", "publish", "{}"),
        ("group", "delete", "{}"),
        ("group", "set-runas", "{}", "--clear"),
        ("schedule", "show", "{}"),
        ("schedule", "disable", "{}"),
        ("schedule", "delete", "{}"),
        ("webhook", "show", "{}"),
        ("webhook", "disable", "{}"),
        ("webhook", "delete", "{}"),
        ("asset", "variable", "show", "{}"),
        ("asset", "credential", "delete", "{}"),
        ("job", "start", "{}", "--run-on", "g1"),
        ("job", "start", "ok", "--run-on", "{}"),
    ]
    for i, command in enumerate(commands):
        bad = BAD_NAMES[i % len(BAD_NAMES)]
        args = [bad if a == "{}" else a for a in command]
        line = one_line_error(cli(*args, env=env), 2)
        assert "invalid" in line and "name" in line and repr(bad) in line, (args, line)


def test_json_on_changing_commands(server: Server, worker: Agent) -> None:
    env = server.env()
    with server.client() as c:
        publish(c, "rb-json", "echo hi\n")
        c.put("/api/v1/assets/variables/v1", json={"value": "x"})
    assert (
        cli("schedule", "create", "s-json", "--runbook", "rb-json", "--run-on", "g1", "--every", "1h", env=env)
    ).returncode == 0
    for args, key in (
        (("schedule", "disable", "s-json"), "enabled"),
        (("schedule", "enable", "s-json"), "enabled"),
        (("schedule", "delete", "s-json"), "deleted"),
        (("asset", "variable", "delete", "v1"), "deleted"),
        (("runbook", "delete", "rb-json"), "deleted"),
    ):
        result = cli(*args, "--json", env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert key in json.loads(result.stdout), (args, result.stdout)


def test_deleting_a_runbook_with_dependents_refuses_or_disables_them(server: Server, worker: Agent) -> None:
    env = server.env()
    with server.client() as c:
        publish(c, "used", "echo hi\n")
    assert (
        cli("schedule", "create", "s1", "--runbook", "used", "--run-on", "g1", "--every", "1h", env=env).returncode == 0
    )
    assert cli("webhook", "create", "w1", "--runbook", "used", "--run-on", "g1", env=env).returncode == 0
    refused = one_line_error(cli("runbook", "delete", "used", env=env), 1)
    assert "schedule s1" in refused and "webhook w1" in refused and "--force" in refused
    with server.client() as c:
        assert c.get("/api/v1/runbooks/used").status_code == 200  # nothing was deleted
    forced = cli("runbook", "delete", "used", "--force", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["disabled"] == ["schedule s1", "webhook w1"]
    with server.client() as c:
        assert c.get("/api/v1/runbooks/used").status_code == 404
        assert c.get("/api/v1/schedules/s1").json()["enabled"] is False
        assert c.get("/api/v1/webhooks/w1").json()["enabled"] is False


def test_webhook_disable_and_enable(server: Server, worker: Agent) -> None:
    env = server.env()
    with server.client() as c:
        publish(c, "rb-hook", "echo hi\n")
    assert cli("webhook", "create", "toggled", "--runbook", "rb-hook", "--run-on", "g1", env=env).returncode == 0
    assert cli("webhook", "disable", "toggled", env=env).stdout.strip() == "webhook toggled disabled"
    with server.client() as c:
        assert c.get("/api/v1/webhooks/toggled").json()["enabled"] is False
    assert cli("webhook", "enable", "toggled", env=env).returncode == 0
    with server.client() as c:
        assert c.get("/api/v1/webhooks/toggled").json()["enabled"] is True


def test_missing_ca_file_is_named(server: Server) -> None:
    line = one_line_error(cli("job", "list", "--ca-file", "/nope.pem", env=server.env()), 2)
    assert "/nope.pem" in line


def test_parameters_too_large_to_exec_are_refused_up_front(server: Server) -> None:
    args = ["job", "start", "rb", "--run-on", "g1"]
    for _ in range(20):
        args += ["-p", "x" * 60_000]
    with server.client() as c:
        before = len(c.get("/api/v1/jobs", params={"limit": 1000}).json())
    line = one_line_error(cli(*args, env=server.env()), 2)
    assert "at most 1048576 bytes" in line
    with server.client() as c:
        assert len(c.get("/api/v1/jobs", params={"limit": 1000}).json()) == before


def test_worker_list_says_up_or_down_and_the_real_hostname(server: Server, worker: Agent, tmp_path) -> None:
    Agent(server, tmp_path / "never", "g1", "never-polled").register()
    env = {**server.env(), "COLUMNS": "120"}

    def listed() -> dict[str, dict]:
        return {w["name"]: w for w in json.loads(cli("worker", "list", "--json", env=env).stdout)}

    wait_until(lambda: listed()["w1"]["up"], 30, 0.2, "w1 to be listed up")
    rows = listed()
    assert rows["w1"]["up"] is True and rows["never-polled"]["up"] is False
    assert rows["w1"]["hostname"] not in ("", "localhost") and rows["w1"]["hostname"].startswith(os.uname().nodename)
    table = cli("worker", "list", env=env).stdout.splitlines()
    assert "state" in table[1] and "last_seen" in table[1], table
    w1 = next(line for line in table if " w1 " in line)
    never = next(line for line in table if "never-polled" in line)
    assert " up " in w1 and " s ago " in w1, table
    assert " down " in never and "never" in never.replace("never-polled", ""), table
    removed = cli("worker", "remove", "never-polled", "--json", env=env)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["removed"] is True and "never-polled" not in listed()
    gone = Agent(server, tmp_path / "leaving", "g1", "leaving")
    gone.register()
    left = cli("worker", "deregister", "--state-dir", str(gone.state_dir), "--json", env=env)
    assert left.returncode == 0, left.stderr
    assert json.loads(left.stdout) == {"name": "leaving", "group": "g1", "url": server.url, "deregistered": True}


def test_certificate_set_shows_thumbprint_and_expiry(server: Server, tmp_path) -> None:
    pem = make_ca_and_cert(tmp_path)["cert"]
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    result = cli("asset", "certificate", "set", "signing", "--file", str(pem), env={**server.env(), "COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("certificate signing saved: thumbprint "), line
    assert cert.fingerprint(hashes.SHA1()).hex().upper() in line  # noqa: S303 (Azure's thumbprint is SHA-1)
    assert f"expires at {cert.not_valid_after_utc.date().isoformat()}" in line


def test_maintenance_for_an_unknown_worker_or_group_is_refused(server: Server, worker: Agent) -> None:
    env = server.env()
    typo = one_line_error(cli("alerts", "maintenance", "add", "--worker", "w11", env=env), 2)
    assert typo == "error: no worker named 'w11' is registered; did you mean w1?", typo
    unknown = one_line_error(cli("alerts", "maintenance", "add", "--group", "nosuch", env=env), 2)
    assert "no group named 'nosuch' is registered" in unknown
    with server.client() as c:
        assert c.get("/api/v1/alerts/maintenance").json() == []  # nothing was silenced
    added = cli("alerts", "maintenance", "add", "--worker", "w1", "--for", "5m", "--json", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["worker"] == "w1"


def test_job_list_shows_whole_ids_at_80_columns_and_a_unique_prefix_is_enough(server: Server, worker: Agent) -> None:
    with server.client() as c:
        publish(c, "prefixed", "echo hi\n")
        job_id = start_job(c, "prefixed")
        wait_job(c, job_id)
    env = {**server.env(), "COLUMNS": "80"}
    table = cli("job", "list", env=env).stdout.splitlines()
    assert all(len(line) <= 80 for line in table), table
    row = next(line for line in table if job_id in line)  # whole, on one line
    assert "prefixed" in row and "Completed" in row and " s ago " in row, row
    shown = cli("job", "show", job_id[:8], "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == job_id
    assert cli("job", "output", job_id[:13], env=env).stdout.splitlines() == ["hi"]
    unknown = one_line_error(cli("job", "show", "0000000000", env=env), 1)
    assert "no job id starts with '0000000000'" in unknown


def test_cli_goes_through_the_http_proxy_of_the_environment(server: Server, tmp_path) -> None:
    from tests.diagnostics.servers import Tinyproxy

    proxy = Tinyproxy(tmp_path / "proxy", auth=("ops", "s3cret"))
    try:
        env = {**server.env(), "NO_PROXY": "", "no_proxy": ""}
        anonymous = one_line_error(cli("job", "list", "--json", env={**env, "HTTP_PROXY": proxy.url}), 1)
        assert "wants a user and password" in anonymous and "HTTP 407" in anonymous, anonymous  # via the proxy
        listed = cli("job", "list", "--json", env={**env, "HTTP_PROXY": f"http://ops:s3cret@127.0.0.1:{proxy.port}"})
        assert listed.returncode == 0, listed.stderr
        assert isinstance(json.loads(listed.stdout), list)
        bypassed = cli("job", "list", "--json", env={**env, "HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"})
        assert bypassed.returncode == 0, bypassed.stderr  # NO_PROXY: straight to the server
    finally:
        proxy.close()


def test_tables_fit_the_terminal_and_too_narrow_ones_become_records(server: Server, worker: Agent) -> None:
    with server.client() as c:
        publish(c, "a-runbook-with-a-rather-long-name-to-fold", "echo hi\n")
        job_id = start_job(c, "a-runbook-with-a-rather-long-name-to-fold")
        wait_job(c, job_id)
    wide = cli("job", "list", env={**server.env(), "COLUMNS": "200"})
    assert wide.returncode == 0, wide.stderr
    header = wide.stdout.splitlines()[1]
    assert header.split() == ["┃", "id", "┃", "runbook", "┃", "run_on", "┃", "status", "┃", "worker", "┃",
                              "created_at", "┃", "ended_at", "┃"], wide.stdout  # fmt: skip
    assert any(job_id in ln and "a-runbook-with-a-rather-long-name-to-fold" in ln for ln in wide.stdout.splitlines())
    # 80 columns: the runbook name folds over lines, the id stays whole on one.
    folded = cli("job", "list", env={**server.env(), "COLUMNS": "80"}).stdout.splitlines()
    assert all(len(line) <= 80 for line in folded), folded
    assert any(job_id in line for line in folded) and not any("a-runbook-with-a-rather-long" in ln for ln in folded)
    # 45 columns: a 36-character id leaves no readable room beside it: one block per row, and how to see all.
    narrow = cli("job", "list", env={**server.env(), "COLUMNS": "45"})
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert lines[0].startswith("── row 1 of "), lines
    assert f"id          {job_id}" in lines and "runbook     a-runbook-with-a-rather-long-name-to-fold" in lines
    assert "--json prints every column" in narrow.stderr
