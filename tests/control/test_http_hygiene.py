"""HTTP hygiene on real sockets: keep-alive after errors, request deadlines, 413 for any oversize body.

Most cases run against a real `outpost server`. The 500 and deadline cases need an app with a route
that fails and short deadlines: the server's own app (create_app, with its middleware) on uvicorn
with Outpost's HTTP settings (outpost/http_server.py), in a thread of this process.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import APIRouter

from outpost import http_server
from outpost.contract import AGENT_EVENTS, MAX_EVENTS_POST_BYTES
from outpost.settings import MAX_BODY_BYTES
from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import Server, free_port, wait_until


def _read_response(sock: socket.socket, deadline_s: float = 10) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a content-length (status, body); b'' status 0 when the peer closed."""
    sock.settimeout(deadline_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.strip().lower() == "content-length")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), body


def _get(path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()


@pytest.fixture(scope="module")
def failing_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from automation import secrets
    from automation.app import create_app, open_control_plane

    data = Path(tmp_path_factory.mktemp("hygiene"))
    cp = open_control_plane(data)
    with cp.session() as s:
        secrets.ensure_credentials(s, data)

    def routers(roles, require_worker):  # type: ignore[no-untyped-def]
        r = APIRouter()

        @r.get("/boom")
        def boom() -> None:
            raise RuntimeError("a bug in a route")

        return [r]

    app = create_app(cp, extra_routers=routers)
    port = free_port()
    config = http_server.config(
        app, host="127.0.0.1", port=port, log_level="critical", header_timeout_s=1.0, body_timeout_s=1.5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, 0.05, "the in-process server to start")
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _connect(hostport: str) -> socket.socket:
    host, port = hostport.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_a_500_keeps_the_connection_alive(failing_app: str):
    with _connect(failing_app) as sock:
        sock.sendall(_get("/boom"))
        status, body = _read_response(sock)
        assert status == 500 and b"internal server error" in body
        sock.sendall(_get("/api/v1/health"))  # the same connection serves the next request
        assert _read_response(sock)[0] == 200


def test_incomplete_requests_are_timed_out(failing_app: str):
    with _connect(failing_app) as sock:  # headers that never end
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        status, body = _read_response(sock, deadline_s=10)
        assert status == 408 and b"within 1 s" in body
        assert sock.recv(10) == b""  # and closed
        assert time.monotonic() - started < 8
    with _connect(failing_app) as sock:  # a body announced and never sent
        sock.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc")
        sock.settimeout(10)
        started = time.monotonic()
        while sock.recv(65536):  # whatever the route answered, the connection is closed at the deadline
            pass
        assert time.monotonic() - started < 8
    with _connect(failing_app) as sock:  # a connection that says nothing at all
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 408")


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


def test_oversize_bodies_get_413_announced_or_chunked(server: Server, make_agent):
    agent = make_agent(server, start=False)
    worker = {"Authorization": f"Bearer {(agent.state_dir / 'credential').read_text().strip()}"}
    admin = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        chunked = c.put("/api/v1/runbooks/big/draft", content=_chunks(MAX_BODY_BYTES + 1), headers=admin)
        assert chunked.status_code == 413, chunked.text
        assert str(MAX_BODY_BYTES) in chunked.json()["detail"]
        for body in (b" " * (MAX_EVENTS_POST_BYTES + 1), _chunks(MAX_EVENTS_POST_BYTES + 1)):
            r = c.post(AGENT_EVENTS, content=body, headers={**worker, "Content-Type": "application/json"})
            assert r.status_code == 413, r.text
            assert f"the limit is {MAX_EVENTS_POST_BYTES} bytes" in r.json()["detail"]
        assert c.get("/api/v1/health").status_code == 200  # same client, still served
        bad = c.post("/api/v1/jobs", json={"runbook": 1}, headers=admin)
        assert bad.status_code == 422 and isinstance(bad.json()["detail"], str)


def test_the_agent_splits_event_batches_under_the_cap(server: Server, make_agent):
    make_agent(server)
    lines, width = 120, 30_000  # 100 such lines (one batch by count) would be about 3 MB
    script = f"import sys\nfor i in range({lines}):\n    sys.stdout.write(str(i).rjust(6) + 'x' * {width} + '\\n')\n"
    with server.client() as c:
        publish(c, "wide", script, "python3")
        job_id = start_job(c, "wide")
        job = wait_job(c, job_id, timeout=90)
        assert job["status"] == "Completed", (job, outputs(c, job_id, "Error"))
        got = outputs(c, job_id, "Output")
    assert [int(line[:6]) for line in got] == list(range(lines))
    assert all(len(line) == 6 + width for line in got)
