"""Freshness of the agent's last poll/heartbeat and its process; disk and log directory."""

from __future__ import annotations

from diagnostics.model import exit_code
from diagnostics.options import Options, Thresholds
from diagnostics.runner import run_checks
from tests.diagnostics.conftest import iso_ago, run_cli


def test_stale_poll_fails_and_late_heartbeat_warns(app, pki, make_state, agent_proc):
    status = {"last_poll_ok": iso_ago(1200), "last_heartbeat_ok": iso_ago(300), "pid": agent_proc().pid}
    state = make_state(app.url, ca_file=pki.ca.pem, status=status)
    run = run_cli("--state-dir", str(state), "--check", "freshness")
    assert run.rc == 1
    poll = run.result("freshness.poll")
    assert (poll["status"], poll["finding"]) == ("fail", "last successful poll 20 min ago (fail above 10 min)")
    beat = run.result("freshness.heartbeat")
    assert (beat["status"], beat["finding"]) == ("warn", "last successful heartbeat 5 min ago (warn above 3 min)")
    assert run.result("freshness.process")["status"] == "pass"


def test_agent_process_not_running(app, pki, make_state, agent_proc):
    proc = agent_proc()
    proc.kill()
    proc.wait(5)
    state = make_state(app.url, ca_file=pki.ca.pem, status={"last_poll_ok": iso_ago(5), "pid": proc.pid})
    run = run_cli("--state-dir", str(state), "--check", "freshness.process")
    r = run.result("freshness.process")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == f"the agent (pid {proc.pid}) is not running"
    assert "systemctl start outpost-worker" in r["remediation"]


def test_never_polled(app, pki, make_state):
    state = make_state(app.url, ca_file=pki.ca.pem)
    run = run_cli("--state-dir", str(state), "--check", "freshness.poll")
    r = run.result("freshness.poll")
    assert (run.rc, r["status"]) == (0, "warn")
    assert r["finding"] == f"no successful poll recorded in {state / 'status.json'}"


def test_log_directory_not_writable(app, pki, make_state, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    state = make_state(app.url, ca_file=pki.ca.pem, status={"log_dir": str(blocker / "logs")})
    run = run_cli("--state-dir", str(state), "--check", "resources.logs")
    r = run.result("resources.logs")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == f"log directory {blocker / 'logs'} cannot be created: {blocker} is not a directory"


def test_disk_space_thresholds(app, pki, make_state):
    state = make_state(app.url, ca_file=pki.ca.pem)
    ok = run_checks(Options(state_dir=state, check="resources.disk"))
    assert [r.status for r in ok] == ["pass", "pass"]
    assert [r.target for r in ok] == [str(state), str(state / "work")]
    huge = Thresholds(disk_warn_bytes=1 << 60, disk_fail_bytes=1 << 20)
    low = run_checks(Options(state_dir=state, check="resources.disk", thresholds=huge))
    assert [r.status for r in low] == ["warn", "warn"]
    assert low[0].finding.startswith(f"state directory {state}: ") and low[0].finding.endswith(
        "(below 1073741824.0 GiB)"
    )
    assert exit_code(low) == 0
    full = run_checks(Options(state_dir=state, check="resources.disk", thresholds=Thresholds(disk_fail_bytes=1 << 60)))
    assert [r.status for r in full] == ["fail", "fail"]
    assert exit_code(full) == 1


def test_runbooks_that_could_read_the_credential_are_a_warning(app, pki, make_state, agent_proc):
    status = {"last_poll_ok": iso_ago(5), "pid": agent_proc().pid, "runbooks_can_read_credential": True}
    state = make_state(app.url, ca_file=pki.ca.pem, status={**status, "runbook_user": None})
    run = run_cli("--state-dir", str(state), "--check", "sandbox")
    r = run.result("sandbox.credential")
    assert (run.rc, r["status"]) == (0, "warn")
    assert "could read this worker's credential" in r["finding"] and "useradd" in r["remediation"]
