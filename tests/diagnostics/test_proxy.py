"""Proxy discovery and CONNECT through a real tinyproxy: open, authenticated, and refusing the target."""

from __future__ import annotations

import re

import pytest

from tests.diagnostics.conftest import clean_env, fresh_status, run_cli
from tests.diagnostics.servers import Tinyproxy


@pytest.fixture
def tinyproxy(tmp_path):
    made: list[Tinyproxy] = []

    def make(name: str = "proxy", **kw) -> Tinyproxy:
        made.append(Tinyproxy(tmp_path / name, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def _args(tmp_path, app, pki, *extra):
    return ("--state-dir", str(tmp_path / "none"), "--url", app.url, "--ca-file", str(pki.ca.pem), *extra)


def test_open_proxy_carries_every_check(tinyproxy, app, pki, tmp_path):
    proxy = tinyproxy()
    run = run_cli(*_args(tmp_path, app, pki), env=clean_env(HTTPS_PROXY=proxy.url))
    assert run.rc == 0, run.stdout
    target = f"127.0.0.1:{app.port}"
    discover = run.result("proxy.discover")
    assert (discover["status"], discover["finding"]) == (
        "pass",
        f"proxy: {proxy.url} (this shell's environment: HTTPS_PROXY)",
    )
    r = run.result("proxy.connect", target)
    assert r["status"] == "pass"
    assert re.fullmatch(rf"CONNECT {target} via 127\.0\.0\.1:{proxy.port} accepted in \d+ ms", r["finding"])
    assert run.result("tcp.connect", target)["finding"].startswith(f"proxy 127.0.0.1:{proxy.port} accepts in ")
    assert run.result("tls.handshake", target)["finding"].endswith(f"via proxy {proxy.url}")
    assert run.result("app.health")["finding"].endswith("(proxy)")
    paths = run.result("proxy.paths", target)
    assert paths["status"] == "pass" and paths["finding"].startswith("both paths work")


def test_proxy_requiring_authentication(tinyproxy, app, pki, tmp_path):
    proxy = tinyproxy(auth=("agent", "pa55word"))
    run = run_cli(*_args(tmp_path, app, pki, "--check", "proxy"), env=clean_env(https_proxy=proxy.url))
    r = run.result("proxy.connect")
    assert (run.rc, r["status"]) == (1, "fail")
    assert re.fullmatch(
        rf"proxy 127\.0\.0\.1:{proxy.port} requires authentication \(407, Basic realm=.*\)", r["finding"]
    )
    assert "HTTPS_PROXY=http://USER:PASSWORD@host:port" in r["remediation"]
    paths = run.result("proxy.paths")
    assert paths["status"] == "warn"
    assert paths["finding"].startswith(
        f"only the direct path reaches 127.0.0.1:{app.port} but the agent uses the proxy"
    )


def test_proxy_with_wrong_credentials(tinyproxy, app, pki, tmp_path):
    proxy = tinyproxy(auth=("agent", "pa55word"))
    url = f"http://agent:wrong@127.0.0.1:{proxy.port}"
    run = run_cli(*_args(tmp_path, app, pki, "--check", "proxy.connect"), env=clean_env(HTTPS_PROXY=url))
    r = run.result("proxy.connect")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == f"proxy 127.0.0.1:{proxy.port} rejected the credentials of user agent (401)"
    # tinyproxy answers wrong credentials with 401 rather than 407; both mean the same here


def test_proxy_with_credentials_works_and_password_is_never_shown(tinyproxy, app, pki, tmp_path):
    proxy = tinyproxy(auth=("agent", "pa55word"))
    url = f"http://agent:pa55word@127.0.0.1:{proxy.port}"
    run = run_cli(*_args(tmp_path, app, pki), env=clean_env(HTTPS_PROXY=url))
    assert run.rc == 0, run.stdout
    assert run.result("proxy.connect")["status"] == "pass"
    assert run.result("proxy.discover")["finding"] == (
        f"proxy: http://agent:***@127.0.0.1:{proxy.port} (this shell's environment: HTTPS_PROXY)"
    )
    assert run.result("credential.accepted")["status"] == "skip"
    assert "pa55word" not in run.stdout + run.stderr


def test_proxy_policy_refuses_the_target(tinyproxy, app, pki, tmp_path):
    proxy = tinyproxy(connect_ports=[443])  # the server listens elsewhere
    run = run_cli(*_args(tmp_path, app, pki, "--check", "proxy"), env=clean_env(HTTPS_PROXY=proxy.url))
    r = run.result("proxy.connect")
    assert (run.rc, r["status"]) == (1, "fail")
    assert re.fullmatch(
        rf"proxy 127\.0\.0\.1:{proxy.port} refuses CONNECT to 127\.0\.0\.1:{app.port} by policy \(403 .*\)",
        r["finding"],
    )
    assert f"allow CONNECT to 127.0.0.1 on port {app.port}" in r["remediation"]


def test_no_proxy_bypass(tinyproxy, app, pki, tmp_path):
    proxy = tinyproxy(connect_ports=[443])
    env = clean_env(HTTPS_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.0/8")
    run = run_cli(*_args(tmp_path, app, pki, "--check", "proxy"), env=env)
    assert run.rc == 0, run.stdout
    assert run.result("proxy.discover")["finding"] == (
        f"proxy: {proxy.url} (this shell's environment: HTTPS_PROXY); NO_PROXY bypasses 127.0.0.1:{app.port}"
    )
    r = run.result("proxy.connect")
    assert (r["status"], r["finding"]) == ("skip", "127.0.0.1 is bypassed by NO_PROXY; the agent connects directly")


def test_http_proxy_alone_is_flagged(app, pki, tmp_path):
    run = run_cli(
        *_args(tmp_path, app, pki, "--check", "proxy.discover"), env=clean_env(HTTP_PROXY="http://10.9.9.9:3128")
    )
    r = run.result("proxy.discover")
    assert (run.rc, r["status"]) == (0, "warn")
    assert "HTTP_PROXY is set in this shell's environment but only applies to http:// URLs" in r["finding"]


def test_agent_process_environment_wins_over_the_shell(tinyproxy, app, pki, make_state, agent_proc):
    proxy = tinyproxy(connect_ports=[443])
    agent = agent_proc({"HTTPS_PROXY": proxy.url})
    state = make_state(app.url, ca_file=pki.ca.pem, status=fresh_status(agent.pid))
    run = run_cli("--state-dir", str(state), "--check", "proxy")
    assert run.rc == 1
    r = run.result("proxy.discover")
    assert (r["status"], r["finding"]) == (
        "warn",
        f"the agent uses proxy {proxy.url} but this shell has none; diagnose follows the agent",
    )
    assert run.result("proxy.connect")["finding"].startswith(f"proxy 127.0.0.1:{proxy.port} refuses CONNECT")


def test_explicit_proxy_option(tinyproxy, app, pki, tmp_path):
    proxy = tinyproxy()
    run = run_cli(*_args(tmp_path, app, pki, "--check", "proxy.connect", "--proxy", proxy.url))
    assert run.rc == 0
    assert run.result("proxy.connect")["status"] == "pass"
