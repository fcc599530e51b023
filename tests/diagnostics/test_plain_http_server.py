"""The README quickstart's worker (plain http:// on loopback) diagnoses healthy: TLS checks skip."""

from __future__ import annotations

import json

from tests.helpers.procs import cli, wait_until


def test_plain_http_registration_skips_tls_and_passes(server, make_agent):
    agent = make_agent(server)
    status = agent.state_dir / "status.json"
    wait_until(
        lambda: status.exists() and {"last_poll_ok", "last_heartbeat_ok"} <= set(json.loads(status.read_text())),
        60,  # the first poll returns after the server hold (25 s) when no job is queued
        0.2,
        "the agent's first poll and heartbeat",
    )
    result = cli("diagnose", "--state-dir", str(agent.state_dir), "--json", timeout=120)
    report = json.loads(result.stdout)
    by_id = {r["id"]: r for r in report["results"]}
    assert by_id["tls.handshake"]["status"] == "skip"
    assert "plain-HTTP endpoint" in by_id["tls.handshake"]["finding"]
    assert by_id["certificate.verify"]["status"] == "skip"
    assert by_id["config.registration"]["status"] == "warn"  # the credential crosses plain HTTP
    assert by_id["credential.accepted"]["status"] == "pass"
    assert result.returncode == 0, [r for r in report["results"] if r["status"] == "fail"]
