"""TCP connect: refused, timed out (full accept queue), reset; a listener that never answers TLS."""

from __future__ import annotations

import time

import pytest

from tests.diagnostics.conftest import run_cli
from tests.diagnostics.servers import Listener, closed_port


@pytest.fixture
def listener():
    made: list[Listener] = []

    def make(mode: str) -> Listener:
        made.append(Listener(mode))
        return made[-1]

    yield make
    for item in made:
        item.close()


def test_closed_port_is_refused(tmp_path):
    port = closed_port()
    run = run_cli("--state-dir", str(tmp_path / "none"), "--url", f"https://127.0.0.1:{port}", "--check", "tcp")
    r = run.result("tcp.connect", f"127.0.0.1:{port}")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"].startswith(f"127.0.0.1:{port}: connection refused after ")
    assert r["remediation"].startswith(f"nothing accepts connections on {port} there")
    assert r["command"] == f"nc -vz 127.0.0.1 {port}"


def test_dropped_syn_times_out(tmp_path, listener):
    full = listener("full")
    run = run_cli(
        "--state-dir",
        str(tmp_path / "none"),
        "--url",
        f"https://127.0.0.1:{full.port}",
        "--check",
        "tcp",
        "--timeout",
        "1",
    )
    r = run.result("tcp.connect")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"].startswith(f"127.0.0.1:{full.port}: connection timed out after ")
    assert "silently dropped" in r["remediation"]


def test_reset_right_after_connect(tmp_path, listener):
    rst = listener("reset")
    run = run_cli("--state-dir", str(tmp_path / "none"), "--url", f"https://127.0.0.1:{rst.port}", "--check", "tcp")
    r = run.result("tcp.connect")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"].startswith(f"127.0.0.1:{rst.port}: connection reset by peer after ")
    assert "resets the connection" in r["remediation"]


def test_listener_that_never_answers_tls(tmp_path, listener):
    silent = listener("silent")
    run = run_cli(
        "--state-dir",
        str(tmp_path / "none"),
        "--url",
        f"https://127.0.0.1:{silent.port}",
        "--check",
        "tls",
        "--timeout",
        "1",
    )
    r = run.result("tls.handshake")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == (
        f"no TLS answer from 127.0.0.1:{silent.port} within 1s: the port accepts TCP but never answers the handshake"
    )


def test_whole_run_against_a_black_hole_is_bounded(tmp_path, listener):
    silent = listener("silent")
    start = time.monotonic()
    run = run_cli("--state-dir", str(tmp_path / "none"), "--url", f"https://127.0.0.1:{silent.port}", "--timeout", "1")
    elapsed = time.monotonic() - start
    assert run.rc == 1
    assert run.result("app.health")["status"] == "fail"
    assert run.result("tcp.connect")["status"] == "pass"
    # ~8 network checks of 1 s each at most, plus interpreter start-up: never the 30 s HTTP default.
    assert elapsed < 20, elapsed
