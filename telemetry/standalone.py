"""`outpost collector`: the collector alone, for fleets that want it off the control-plane host.

Authentication without a database of its own:
- workers: their bearer credential is checked by asking the control plane who it
  belongs to (`GET /api/v1/agent/self` at --control-plane-url); answers are cached
  for 60 s (rejections for 5 s) under a SHA-256 of the token, never the token itself;
- admin: `--admin-token` (or $OUTPOST_TOKEN), compared in constant time;
- `--query-anonymous`: loopback clients may query without a token (others are refused).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from fastapi import HTTPException, Request

from outpost import contract
from outpost.observer import WorkerIdentity
from outpost.settings import DEFAULT_HOST, ENV_CA_FILE, ENV_TOKEN
from telemetry.cli_options import DEFAULT_MEMORY, DEFAULT_THREADS, QueryMemoryOpt, QueryThreadsOpt

OK_TTL_S = 60.0
REJECT_TTL_S = 5.0


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


class ControlPlaneWorkerAuth:
    """FastAPI dependency: a worker bearer -> WorkerIdentity, verified by the control plane."""

    def __init__(self, control_plane_url: str, *, ca_file: str | None = None, timeout_s: float = 10.0) -> None:
        from outpost.http import ssl_context

        self._client = httpx.Client(
            base_url=control_plane_url.rstrip("/"), timeout=timeout_s, verify=ssl_context(ca_file), trust_env=True
        )
        self._cache: dict[str, tuple[float, WorkerIdentity | None]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> WorkerIdentity | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        try:
            resp = self._client.get(contract.AGENT_SELF, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise HTTPException(503, f"cannot verify the worker with the control plane: {type(exc).__name__}") from None
        ident: WorkerIdentity | None = None
        if resp.status_code == 200:
            data = resp.json()
            ident = WorkerIdentity(str(data["worker_id"]), str(data["name"]), str(data["group"]))
        elif resp.status_code not in (401, 403, 404):
            raise HTTPException(503, f"control plane answered {resp.status_code} while verifying a worker")
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + (OK_TTL_S if ident else REJECT_TTL_S), ident)
        return ident

    def __call__(self, request: Request) -> WorkerIdentity:
        ident = self.verify(_bearer(request))
        if ident is None:
            raise HTTPException(401, "invalid worker credential")
        return ident

    def forget(self, name: str) -> None:
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if not v[1] or v[1].name != name}


def admin_dependency(token: str | None):  # noqa: ANN201 - a FastAPI dependency
    def require_admin(request: Request) -> None:
        if not token:
            raise HTTPException(401, "this collector has no admin token; start it with --admin-token")
        if not hmac.compare_digest(_bearer(request).encode(), token.encode()):
            raise HTTPException(401, "invalid admin token")

    return require_admin


def collector(
    control_plane_url: Annotated[str, typer.Option("--control-plane-url", help="Verify worker credentials here.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where telemetry.duckdb lives.")] = Path(
        "outpost-telemetry"
    ),
    host: Annotated[str, typer.Option("--host")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8081,
    admin_token: Annotated[
        str | None, typer.Option("--admin-token", envvar=ENV_TOKEN, show_default=False, help="Bearer that may query.")
    ] = None,
    query_anonymous: Annotated[
        bool, typer.Option("--query-anonymous", help="Let loopback clients query without a token.")
    ] = False,
    retention_days: Annotated[int, typer.Option("--retention-days", min=1)] = 30,
    query_timeout: Annotated[float, typer.Option("--query-timeout", min=0.1)] = 30.0,
    stale_after: Annotated[float, typer.Option("--stale-after", min=1)] = 180.0,
    ca_file: Annotated[
        str | None, typer.Option("--ca-file", envvar=ENV_CA_FILE, help="CA bundle for the control plane.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key")] = None,
    query_memory: QueryMemoryOpt = DEFAULT_MEMORY,
    query_threads: QueryThreadsOpt = DEFAULT_THREADS,
) -> None:
    """Run the telemetry collector alone (heartbeats, KQL, Kusto REST, OTLP, /metrics)."""
    import uvicorn
    from fastapi import FastAPI

    from outpost import __version__
    from outpost.commands.common import fail
    from telemetry.api import build_router
    from telemetry.collector import Collector

    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together", 2)
    if not admin_token and not query_anonymous:
        fail("pass --admin-token (or set OUTPOST_TOKEN) or --query-anonymous, or nobody can query", 2)
    col = Collector(
        data_dir,
        retention_days=retention_days,
        query_timeout_s=query_timeout,
        tls_cert_path=tls_cert,
        stale_after_s=stale_after,
        query_memory=query_memory,
        query_threads=query_threads,
    )
    app = FastAPI(title="Outpost collector", version=__version__)

    @app.middleware("http")
    async def _version_header(request: Request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        response.headers[contract.SERVICE_HEADER] = __version__
        return response

    app.include_router(
        build_router(
            col,
            require_admin=admin_dependency(admin_token),
            require_worker=ControlPlaneWorkerAuth(control_plane_url, ca_file=ca_file),
            allow_anonymous_query=query_anonymous,
        )
    )
    col.start()
    scheme = "https" if tls_cert else "http"
    typer.echo(f"outpost collector on {scheme}://{host}:{port} (data in {data_dir})")
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )
    finally:
        col.close()
