"""The scale path: replicas sharing PostgreSQL, long-poll wake-ups, HTTPS with a private CA.

Jobs across two replicas on one PostgreSQL run exactly once: tests/control/test_replica_kill.py (which
also kills one of them mid-load).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.pki import make_ca_and_cert
from tests.helpers.procs import cli


@pytest.mark.slow  # > 20 s: end to end with real processes
def test_waiting_worker_wakes_on_new_job_not_at_next_poll(make_server, make_agent, pg_url):
    """Agents hold 25 s polls; a job created on the *other* replica still starts at once (NOTIFY)."""
    a = make_server("a", database_url=pg_url)
    b = make_server("b", database_url=pg_url)
    make_agent(a)
    with a.client() as ca, httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {a.token}"}) as cb:
        publish(ca, "quick", "echo hi\n")
        time.sleep(1.0)  # the agent is now parked in a long-poll on server a
        job_id = start_job(cb, "quick")
        job = wait_job(cb, job_id, timeout=20)  # far below the 25 s hold: only a wake-up explains it
    started = dt.datetime.fromisoformat(job["started_at"])
    created = dt.datetime.fromisoformat(job["created_at"])
    assert (started - created).total_seconds() < 5


def test_https_with_private_ca(make_server, make_agent, tmp_path):
    paths = make_ca_and_cert(tmp_path)
    server = make_server(
        extra=["--tls-cert", str(paths["cert"]), "--tls-key", str(paths["key"])], ca_file=str(paths["ca"])
    )
    # Without the CA, verification fails with a hint, never a silent downgrade.
    untrusted = cli(
        "worker",
        "register",
        "--url",
        server.url,
        "--key",
        server.registration_key,
        "--group",
        "g1",
        "--state-dir",
        str(tmp_path / "untrusted"),
    )
    assert untrusted.returncode == 1
    assert "TLS verification failed" in untrusted.stderr and "--ca-file" in untrusted.stderr
    make_agent(server)
    with server.client() as c:
        publish(c, "tls", "echo secure\n")
        job = wait_job(c, start_job(c, "tls"), timeout=30)
        assert job["status"] == "Completed" and outputs(c, job["id"]) == ["secure"]
    listed = cli("job", "list", "--ca-file", str(paths["ca"]), env=server.env())
    assert listed.returncode == 0, listed.stderr

    # Through an HTTPS_PROXY: CONNECT, then TLS to the server end to end (still verified against the CA).
    from tests.diagnostics.servers import Tinyproxy

    proxy = Tinyproxy(tmp_path / "proxy", auth=("ops", "s3cret"))
    try:
        env = {**server.env(), "NO_PROXY": "", "no_proxy": ""}
        args = ("job", "list", "--json", "--ca-file", str(paths["ca"]))
        refused = cli(*args, env={**env, "HTTPS_PROXY": proxy.url})
        assert refused.returncode == 1 and "407" in refused.stderr, refused.stderr  # it went to the proxy
        tunnelled = cli(*args, env={**env, "HTTPS_PROXY": f"http://ops:s3cret@127.0.0.1:{proxy.port}"})
        assert tunnelled.returncode == 0, tunnelled.stderr
        assert [j["status"] for j in json.loads(tunnelled.stdout)] == ["Completed"]
    finally:
        proxy.close()
