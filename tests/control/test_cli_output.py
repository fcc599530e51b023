"""CLI output people can read and scripts can parse, against a real server (and a real worker where needed)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.api import publish, start_job, wait_job
from tests.helpers.procs import Server, cli

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


def test_show_commands_print_no_python_structures(server: Server, make_agent) -> None:
    make_agent(server)
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


def test_wait_json_prints_exactly_one_document(server: Server, make_agent) -> None:
    make_agent(server)
    with server.client() as c:
        publish(c, "streams", STREAMS_PY, "python3")
    result = cli("job", "start", "streams", "--run-on", "g1", "-p", "x", "--wait", "--json", env=server.env())
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # the whole of stdout parses: nothing else was written there
    assert document["status"] == "Completed"
    assert document["output"] == ["out x", "done"]
    assert "out x" in result.stderr and "ERROR: bad thing" in result.stderr and "WARNING: careful" in result.stderr


def test_wait_shows_error_and_warning_with_their_prefixes(server: Server, make_agent) -> None:
    make_agent(server)
    with server.client() as c:
        publish(c, "streams", STREAMS_PY, "python3")
    result = cli("job", "start", "streams", "--run-on", "g1", "--wait", env=server.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["out", "done"]
    assert "ERROR: bad thing" in result.stderr.splitlines()
    assert "WARNING: careful" in result.stderr.splitlines()


@pytest.mark.slow
def test_wait_on_a_group_with_no_live_worker_says_so(server: Server, make_agent) -> None:
    make_agent(server, group="empty", start=False)  # registered, never polled
    with server.client() as c:
        publish(c, "lonely", "echo hi\n")
    proc = subprocess.Popen(
        ["timeout", "-s", "INT", "25", *cli_args("job", "start", "lonely", "--run-on", "empty", "--wait")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env(server),
    )
    _, err = proc.communicate(timeout=90)
    notices = [line for line in err.splitlines() if line.startswith("still queued")]
    assert notices and notices[0] == "still queued: no live worker in group empty (no worker has ever polled)", err
    assert "stopped following; the job goes on" in err


def cli_args(*args: str) -> list[str]:
    from tests.helpers.procs import OUTPOST

    return [*OUTPOST, *args]


def full_env(server: Server) -> dict[str, str]:
    import os

    return {**os.environ, **server.env()}


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


def test_json_on_changing_commands(server: Server, make_agent) -> None:
    make_agent(server, start=False)  # group g1
    env = server.env()
    with server.client() as c:
        publish(c, "rb", "echo hi\n")
        c.put("/api/v1/assets/variables/v1", json={"value": "x"})
    assert (
        cli("schedule", "create", "s1", "--runbook", "rb", "--run-on", "g1", "--every", "1h", env=env).returncode == 0
    )
    for args, key in (
        (("schedule", "disable", "s1"), "enabled"),
        (("schedule", "enable", "s1"), "enabled"),
        (("schedule", "delete", "s1"), "deleted"),
        (("asset", "variable", "delete", "v1"), "deleted"),
        (("runbook", "delete", "rb"), "deleted"),
    ):
        result = cli(*args, "--json", env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert key in json.loads(result.stdout), (args, result.stdout)


def test_deleting_a_runbook_with_dependents_refuses_or_disables_them(server: Server, make_agent) -> None:
    make_agent(server, start=False)  # group g1
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


def test_webhook_disable_and_enable(server: Server, make_agent) -> None:
    make_agent(server, start=False)  # group g1
    env = server.env()
    with server.client() as c:
        publish(c, "rb", "echo hi\n")
    assert cli("webhook", "create", "w1", "--runbook", "rb", "--run-on", "g1", env=env).returncode == 0
    assert cli("webhook", "disable", "w1", env=env).stdout.strip() == "webhook w1 disabled"
    with server.client() as c:
        assert c.get("/api/v1/webhooks/w1").json()["enabled"] is False
    assert cli("webhook", "enable", "w1", env=env).returncode == 0
    with server.client() as c:
        assert c.get("/api/v1/webhooks/w1").json()["enabled"] is True


def test_missing_ca_file_is_named(server: Server) -> None:
    line = one_line_error(cli("job", "list", "--ca-file", "/nope.pem", env=server.env()), 2)
    assert "/nope.pem" in line


def test_parameters_too_large_to_exec_are_refused_up_front(server: Server) -> None:
    args = ["job", "start", "rb", "--run-on", "g1"]
    for _ in range(20):
        args += ["-p", "x" * 60_000]
    line = one_line_error(cli(*args, env=server.env()), 2)
    assert "at most 1048576 bytes" in line
    with server.client() as c:
        assert c.get("/api/v1/jobs").json() == []
