"""`outpost collector`: the one telemetry service of a fleet of replicas (or of a host of its own).

It stores what every `outpost server --collector-url URL` replica forwards
(telemetry/forwarding.py), answers KQL / Kusto for the whole fleet, and evaluates the
KQL alert rules once for the fleet.

Authentication without a database of its own:
- replicas: `--replica-token` (or $OUTPOST_REPLICA_TOKEN) or the admin token on
  `POST /api/v1/telemetry/forward`; a replica also proxies its callers' queries and
  alert calls here with that token, so it may do what the admin token may;
- workers (only with --control-plane-url, for agents that export here directly): their
  bearer credential is checked by asking the control plane who it belongs to
  (`GET /api/v1/agent/self`); answers are cached for 60 s (rejections for 5 s) under a
  SHA-256 of the token, never the token itself;
- admin: `--admin-token` (or $OUTPOST_TOKEN), compared in constant time;
- named tokens (`outpost token create`, with their roles: reader for queries, Kusto and
  reading alerts, operator for evaluating and maintenance windows), only with
  --control-plane-url: the collector asks the control plane who a token is
  (`GET /api/v1/whoami`) on every call, with no cache, so a revoked or expired token is
  refused here at once too; the tokens themselves stay in the control plane's store;
- `--query-anonymous`: loopback clients may query without a token (others need one).
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

from automation.errors import Unauthorized
from automation.roles import Principal, Role, RoleCheck, parse_role
from outpost import contract
from outpost.observer import WorkerIdentity
from outpost.settings import DEFAULT_HOST, ENV_CA_FILE, ENV_TOKEN
from telemetry.cli_options import DEFAULT_MEMORY, DEFAULT_THREADS, QueryMemoryOpt, QueryThreadsOpt

ENV_REPLICA_TOKEN = "OUTPOST_REPLICA_TOKEN"

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


def admin_dependency(*tokens: str | None):  # noqa: ANN201 - a FastAPI dependency
    """Any of `tokens` (the admin token, the replica token) is accepted; compared in constant time."""
    accepted = [t.encode() for t in tokens if t]

    def require_admin(request: Request) -> None:
        if not accepted:
            raise HTTPException(401, "this collector has no admin token; start it with --admin-token")
        given = _bearer(request).encode()
        if not any([hmac.compare_digest(given, t) for t in accepted]):
            raise HTTPException(401, "invalid admin or replica token")

    return require_admin


class CollectorTokens:
    """token -> Principal, for `RoleCheck`: this collector's own tokens are admin, named tokens the control plane's."""

    def __init__(self, own: dict[str, str | None], control_plane_url: str | None, ca_file: str | None) -> None:
        from outpost.http import ssl_context

        self._own = [(name, t.encode()) for name, t in own.items() if t]
        self._client = (
            httpx.AsyncClient(
                base_url=control_plane_url.rstrip("/"), timeout=10.0, verify=ssl_context(ca_file), trust_env=True
            )
            if control_plane_url
            else None
        )

    async def __call__(self, token: str) -> Principal:
        given = token.encode()
        for name, own in self._own:
            if hmac.compare_digest(given, own):
                return Principal(name, Role.ADMIN)
        if self._client is None:
            raise Unauthorized(
                "invalid admin or replica token (this collector checks named tokens only with --control-plane-url)"
            )
        try:
            resp = await self._client.get(contract.WHOAMI, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise HTTPException(503, f"cannot check the token with the control plane: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise Unauthorized(contract.error_detail(resp.json()) if resp.content else "token rejected")
        if resp.status_code != 200:
            raise HTTPException(503, f"the control plane answered {resp.status_code} while checking a token")
        data = resp.json()
        groups = data.get("groups")
        return Principal(str(data["name"]), parse_role(str(data["role"])), frozenset(groups) if groups else None)


def no_direct_workers(request: Request) -> WorkerIdentity:
    raise HTTPException(
        401,
        "this collector takes agent telemetry only through the replicas (outpost server --collector-url); "
        "start it with --control-plane-url to accept workers directly",
    )


def collector(
    control_plane_url: Annotated[
        str | None,
        typer.Option("--control-plane-url", help="Accept agents directly, verifying their credentials here."),
    ] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where telemetry.duckdb lives.")] = Path(
        "outpost-telemetry"
    ),
    host: Annotated[str, typer.Option("--host")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8081,
    admin_token: Annotated[
        str | None, typer.Option("--admin-token", envvar=ENV_TOKEN, show_default=False, help="Bearer that may query.")
    ] = None,
    replica_token: Annotated[
        str | None,
        typer.Option(
            "--replica-token",
            envvar=ENV_REPLICA_TOKEN,
            show_default=False,
            help="Bearer of the replicas (outpost server --collector-token): forward telemetry, query, alerts.",
        ),
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
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="This collector's URL, as alerts link to it.")
    ] = None,
    alert_rules: Annotated[
        list[Path] | None,
        typer.Option("--alert-rules", help="KQL alert rule files or directories (default: the shipped alerts/kql)."),
    ] = None,
    alertmanager_url: Annotated[
        str | None, typer.Option("--alertmanager-url", help="Send KQL alerts to this Alertmanager.")
    ] = None,
    alert_webhook_url: Annotated[
        str | None, typer.Option("--alert-webhook-url", help="POST KQL alert changes to this URL.")
    ] = None,
    alert_resend_interval: Annotated[
        float, typer.Option("--alert-resend-interval", min=1, help="Re-send firing alerts this often (s).")
    ] = 60.0,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "warning",
) -> None:
    """Run the telemetry collector: what the replicas forward, KQL / Kusto, OTLP, /metrics, KQL alerts."""
    import logging

    import uvicorn
    from fastapi import FastAPI

    from automation import middleware
    from automation.roles import annotate_openapi
    from outpost import __version__, http_server
    from outpost.commands.common import fail
    from telemetry.alert_rules import RuleError, load_rules, shipped_rules
    from telemetry.alerting import AlertEvaluator, collector_query_runner
    from telemetry.alerting_api import build_alerting_router
    from telemetry.api import build_router
    from telemetry.collector import Collector
    from telemetry.replica_ingest import build_replica_ingest_router

    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together", 2)
    if not admin_token and not replica_token and not query_anonymous and not control_plane_url:
        fail(
            "pass --admin-token (or set OUTPOST_TOKEN), --replica-token, --control-plane-url (named tokens) "
            "or --query-anonymous, or nobody can query",
            2,
        )
    try:
        rules = load_rules(alert_rules if alert_rules is not None else shipped_rules())
    except RuleError as exc:
        fail(f"alert rules: {exc}", 2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scheme = "https" if tls_cert else "http"
    url = public_url or f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"
    col = Collector(
        data_dir,
        retention_days=retention_days,
        query_timeout_s=query_timeout,
        tls_cert_path=tls_cert,
        stale_after_s=stale_after,
        query_memory=query_memory,
        query_threads=query_threads,
    )
    evaluator = AlertEvaluator(
        rules,
        collector_query_runner(col),
        alertmanager_url=alertmanager_url,
        webhook_url=alert_webhook_url,
        resend_interval_s=alert_resend_interval,
        maintenance_file=Path(data_dir) / "alert-maintenance.json",
        state_file=Path(data_dir) / "alert-state.json",
        generator_url=url,
    )
    app = FastAPI(title="Outpost collector", version=__version__)
    middleware.install(app)
    app.add_middleware(middleware.ServiceHeader)  # type: ignore[arg-type]

    tokens = CollectorTokens({"admin": admin_token, "replica": replica_token}, control_plane_url, ca_file)
    read, change = RoleCheck(Role.READER, tokens), RoleCheck(Role.OPERATOR, tokens)
    app.include_router(
        build_router(
            col,
            require_admin=read,
            require_worker=ControlPlaneWorkerAuth(control_plane_url, ca_file=ca_file)
            if control_plane_url
            else no_direct_workers,
            allow_anonymous_query=query_anonymous,
        )
    )
    app.include_router(build_replica_ingest_router(col, admin_dependency(admin_token, replica_token)))
    app.include_router(build_alerting_router(evaluator, read, change))

    @app.get("/api/v1/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__, "role": "collector"}

    annotate_openapi(app)  # every route's role in /openapi.json, as on the server
    middleware.document_errors(app)

    col.start()
    evaluator.start()
    typer.echo(f"outpost collector on {url} (data in {data_dir}, {len(rules)} alert rules)")
    try:
        config = http_server.config(
            app,
            host=host,
            port=port,
            log_level=log_level.lower(),
            access_log=False,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )
        http_server.settle_heap()
        uvicorn.Server(config).run()
    finally:
        evaluator.stop()
        col.close()
