"""The runbook's door to its job's assets: a loopback HTTP endpoint inside the agent.

Each job gets a random token (``AUTOMATION_ASSETS_TOKEN``) bound to its job id; the
runbook's ``automationassets`` calls ``GET/PUT http://127.0.0.1:PORT/<kind>/<name>``
with it, and the agent forwards the call to the service's job-scoped asset route with
the worker's credential. The runbook never sees that credential, a token is dead as
soon as its job ends, and the service still checks that this worker holds the lease.
Nothing here logs a request, a value, or a token.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

import httpx

from outpost.contract import AGENT_ASSET
from outpost.http import ApiError, request

log = logging.getLogger("outpost.agent")
KINDS = ("variables", "credentials", "certificates", "connections")
MAX_BODY = 2 * 1024 * 1024


class AssetsProxy:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self._tokens: dict[str, str] = {}  # token -> job id
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AssetsProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - never log requests
                return

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self, "GET")

            def do_PUT(self) -> None:  # noqa: N802
                proxy._handle(self, "PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="assets-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def open(self, job_id: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = job_id
        return token

    def close(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def _job_of(self, header: str | None) -> str | None:
        if not header or not header.startswith("Bearer "):
            return None
        given = header[7:].strip()
        with self._lock:
            for token, job_id in self._tokens.items():
                if hmac.compare_digest(token, given):
                    return job_id
        return None

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        def fail(status: int, detail: str) -> None:
            self._answer(h, status, json.dumps({"detail": detail}).encode())

        job_id = self._job_of(h.headers.get("Authorization"))
        length = int(h.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            fail(413, "value too large")
            return
        body = h.rfile.read(length) if length else b""
        if job_id is None:
            fail(401, "this job's asset token is missing or no longer valid")
            return
        parts = h.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] not in KINDS or not parts[1]:
            fail(404, "use /<variables|credentials|certificates|connections>/<name>")
            return
        path = AGENT_ASSET.format(job_id=job_id, plural=parts[0], name=quote(unquote(parts[1]), safe=""))
        try:
            if method == "GET":
                answer = request(self._client, "GET", path)
            else:
                answer = request(self._client, "PUT", path, json=json.loads(body or b"{}"))
        except ValueError:
            fail(400, "the body must be JSON")
            return
        except ApiError as exc:
            fail(exc.status or 502, exc.message)
            return
        self._answer(h, answer.status_code if answer.content else 204, answer.content)
