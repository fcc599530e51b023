"""A real uvicorn server on 127.0.0.1 composing the collector router with stand-in auth.

The auth dependencies are the simplest real ones (bearer tokens from a dict), so
router tests exercise HTTP exactly as clients see it, without the control plane.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI, HTTPException, Request

from automation import middleware
from automation.errors import Unauthorized
from automation.roles import Principal, Role, RoleCheck
from outpost.observer import WorkerIdentity
from telemetry.api import build_router
from telemetry.collector import Collector

ADMIN_TOKEN = "admin-secret-token"
WORKER_TOKENS = {
    "worker-token-w1": WorkerIdentity("id-w1", "w1", "linux"),
    "worker-token-w2": WorkerIdentity("id-w2", "w2", "linux"),
}


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def _authenticate(token: str) -> Principal:
    if token != ADMIN_TOKEN:
        raise Unauthorized("invalid admin token")
    return Principal("admin", Role.ADMIN)


require_admin = RoleCheck(Role.READER, _authenticate)


def require_worker(request: Request) -> WorkerIdentity:
    ident = WORKER_TOKENS.get(_bearer(request))
    if ident is None:
        raise HTTPException(401, "invalid worker credential")
    return ident


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(collector: Collector, *, anonymous: bool = False) -> Iterator[str]:
    app = FastAPI()
    middleware.install(app)  # domain errors (401) as the server answers them
    app.include_router(
        build_router(
            collector, require_admin=require_admin, require_worker=require_worker, allow_anonymous_query=anonymous
        )
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
