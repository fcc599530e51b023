"""The collector's HTTP surface, as one FastAPI router the server (or `outpost collector`) mounts.

Auth is injected: `require_admin` guards queries and the Kusto API (or, with
`allow_anonymous_query`, loopback clients may query without a token and other
clients are refused); `require_worker` guards heartbeats, diagnose results and
OTLP (agents export with their worker credential). `/metrics` is open, for
Prometheus.

Every DuckDB call runs in the thread pool: the event loop never waits on a
query or an insert.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from automation.roles import bearer
from outpost import contract
from outpost.observer import WorkerIdentity
from outpost.settings import MAX_BODY_BYTES
from telemetry import kql, kusto, otlp
from telemetry.collector import Collector
from telemetry.rows import HeartbeatRowError

if TYPE_CHECKING:
    from telemetry.forwarding import Forwarder

log = logging.getLogger(__name__)
QUERY = f"{contract.API}/query"
MAX_QUERY_CHARS = 100_000


async def _body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Request) -> Any:
    raw = await _body(request)
    try:
        return orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None


def _loopback_only(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise HTTPException(401, "anonymous queries are allowed from loopback only; send a token with the reader role")


def query_dependency(require_admin: Callable[..., Any], allow_anonymous_query: bool) -> Callable[..., Any]:
    """`require_admin` (a RoleCheck); with anonymous queries, loopback callers need no token, and a
    caller that sends one (from anywhere) is checked as without them."""
    if not allow_anonymous_query:
        return require_admin

    async def token_or_loopback(request: Request, creds: Any = Depends(bearer)) -> Any:
        if creds is None or not creds.credentials:
            return _loopback_only(request)
        return await require_admin(request, creds)

    return token_or_loopback


HeartbeatHook = Callable[[WorkerIdentity, datetime], None]


def build_router(
    collector: Collector | Forwarder,
    *,
    require_admin: Callable[..., Any],
    require_worker: Callable[..., Any],
    allow_anonymous_query: bool = False,
    on_heartbeat: HeartbeatHook | None = None,
    queries: bool = True,
) -> APIRouter:
    """`on_heartbeat(worker, received)` records liveness in the control-plane store (every replica
    reads it); `queries=False` leaves the query and Kusto routes to another router (a replica's proxy)."""
    router = APIRouter()
    query_auth = Depends(query_dependency(require_admin, allow_anonymous_query))

    def take_heartbeats(rows: list[Any], worker: WorkerIdentity, sent_at: Any) -> tuple[int, int]:
        received = datetime.now(UTC)
        inserted, dupes = collector.ingest_heartbeats(
            rows, worker=worker.name, group=worker.group, sent_at=sent_at, received=received
        )
        if on_heartbeat is not None and inserted + dupes:
            try:
                on_heartbeat(worker, received)
            except Exception:  # the rows are stored; liveness catches up at the next heartbeat
                log.warning(
                    "could not record the heartbeat of %s in the control-plane store", worker.name, exc_info=True
                )
        return inserted, dupes

    # -- agent ingestion --------------------------------------------------------

    @router.post(contract.AGENT_HEARTBEAT, tags=["agent"])
    async def heartbeat(request: Request, worker: WorkerIdentity = Depends(require_worker)) -> dict[str, Any]:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
            raise HTTPException(400, 'body must be {"rows": [{Heartbeat columns..., "HeartbeatId": "<uuid>"}]}')
        try:
            inserted, dupes = await run_in_threadpool(take_heartbeats, body["rows"], worker, body.get("sent_at"))
        except HeartbeatRowError as exc:
            raise HTTPException(400, str(exc)) from None
        answer: dict[str, Any] = {"accepted": inserted, "duplicates": dupes}
        if body.get("perf") is not None:  # the machine's Perf rows (agent/perf.py): a bad one costs no heartbeat
            try:
                answer["perf"] = await run_in_threadpool(
                    lambda: collector.ingest_perf(body["perf"], worker=worker.name, group=worker.group)
                )
            except HeartbeatRowError as exc:
                answer["perf_error"] = str(exc)
        return answer

    @router.post(contract.AGENT_DIAGNOSTICS, tags=["agent"])
    async def diagnostics(request: Request, worker: WorkerIdentity = Depends(require_worker)) -> dict[str, Any]:
        body = await _json_body(request)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("results"), list)
            or not all(isinstance(r, dict) for r in body["results"])
        ):
            raise HTTPException(400, 'body must be {"results": [{"id", "group", "status", ...}], "time": "<iso>"}')
        try:
            n = await run_in_threadpool(
                collector.ingest_diagnostics,
                body["results"],
                worker=worker.name,
                group=worker.group,
                time_=body.get("time"),
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"accepted": n}

    if queries:
        _query_routes(router, collector, query_auth)
    _otlp_routes(router, collector, require_worker)

    # -- Prometheus ----------------------------------------------------------------------

    @router.get("/metrics", tags=["metrics"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        body = await run_in_threadpool(collector.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return router


# The bodies the query routes read themselves (no model: Kusto clients send `properties` as a string or an
# object), published so a client and the OpenAPI document know them.
_NON_BLANK = {"type": "string", "minLength": 1, "pattern": "\\S"}
_QUERY_BODY = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": {**_NON_BLANK, "maxLength": MAX_QUERY_CHARS, "description": "KQL"}, "timeout_s": {}},
}
_KUSTO_BODY = {
    "type": "object",
    "required": ["csl"],
    "properties": {"db": {"description": "Outpost (not read)"}, "csl": _NON_BLANK, "properties": {}},
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _query_routes(router: APIRouter, collector: Any, query_auth: Any) -> None:
    # -- queries ----------------------------------------------------------------

    async def run(text: Any, timeout: Any = None) -> kql.QueryResult:
        if not isinstance(text, str) or not text.strip():
            raise kql.QueryError("query must be a non-empty KQL string")
        if len(text) > MAX_QUERY_CHARS:
            raise kql.QueryError(f"query longer than {MAX_QUERY_CHARS} characters")
        t = float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None
        return await run_in_threadpool(collector.query, text, timeout_s=t)

    @router.post(QUERY, dependencies=[query_auth], tags=["query"], openapi_extra=_body_doc(_QUERY_BODY))
    async def query(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise HTTPException(400, 'body must be {"query": "<KQL>"}')
        try:
            result = await run(body.get("query"), body.get("timeout_s"))
        except kql.QueryError as exc:
            return JSONResponse(status_code=exc.status, content={"detail": exc.message, **exc.to_dict()})
        return JSONResponse(
            {
                "columns": [{"name": n, "type": t} for n, t in result.columns],
                "rows": result.rows,
                "truncated": result.truncated,
                "visualization": result.visualization,  # the query's `render`, or null
            }
        )

    # -- Kusto REST API -----------------------------------------------------------

    async def kusto_request(request: Request) -> tuple[str, Any]:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("csl"), str):
            raise HTTPException(400, 'body must be {"db": "Outpost", "csl": "<query or command>"}')
        props = body.get("properties")
        if isinstance(props, str):
            try:
                props = json.loads(props)
            except ValueError:
                props = None
        timeout = None
        if isinstance(props, dict):
            servertimeout = (props.get("Options") or {}).get("servertimeout")
            if isinstance(servertimeout, str):
                try:
                    timeout = kql.parse_timespan_seconds(servertimeout)
                except ValueError:
                    timeout = None
        return body["csl"], timeout

    @router.post("/v2/rest/query", dependencies=[query_auth], tags=["kusto"], openapi_extra=_body_doc(_KUSTO_BODY))
    async def kusto_v2(request: Request) -> Response:
        csl, timeout = await kusto_request(request)
        try:
            result = await run(csl, timeout)
        except kql.QueryError as exc:
            return JSONResponse(status_code=exc.status, content=kusto.error_body(exc))
        request_id = request.headers.get("x-ms-client-request-id")
        return JSONResponse(
            kusto.v2_response(
                result.columns,
                result.rows,
                truncated=result.truncated,
                request_id=request_id,
                visualization=result.visualization,
            )
        )

    @router.post("/v1/rest/query", dependencies=[query_auth], tags=["kusto"], openapi_extra=_body_doc(_KUSTO_BODY))
    async def kusto_v1(request: Request) -> Response:
        csl, timeout = await kusto_request(request)
        try:
            result = await run(csl, timeout)
        except kql.QueryError as exc:
            return JSONResponse(status_code=exc.status, content=kusto.error_body(exc))
        return JSONResponse(kusto.v1_response(result.columns, result.rows))

    @router.post("/v1/rest/mgmt", dependencies=[query_auth], tags=["kusto"], openapi_extra=_body_doc(_KUSTO_BODY))
    async def kusto_mgmt(request: Request) -> Response:
        csl, _ = await kusto_request(request)
        try:
            columns, rows = kusto.mgmt(csl, collector.tables())
        except kusto.MgmtError as exc:
            return JSONResponse(status_code=400, content=kusto.error_body(kql.QueryError(str(exc))))
        return JSONResponse(kusto.v1_response(columns, rows))


def _otlp_routes(router: APIRouter, collector: Any, require_worker: Callable[..., Any]) -> None:
    # -- OTLP/HTTP -------------------------------------------------------------------

    async def otlp_export(signal: str, request: Request, worker: WorkerIdentity) -> Response:
        ctype = request.headers.get("content-type")
        as_json = (ctype or "").split(";")[0].strip().lower() == otlp.JSON
        media = otlp.JSON if as_json else otlp.PROTOBUF
        try:
            raw = await _body(request)
            data = otlp.decompress(raw, request.headers.get("content-encoding"), MAX_BODY_BYTES)
            msg, as_json = otlp.decode(signal, data, ctype)
            table, convert = otlp.ROWS[signal]
            rows, rejected, reason = convert(msg, worker)
            if rows:
                await run_in_threadpool(collector.ingest_rows, table, rows, worker=worker.name)
        except HTTPException as exc:
            return _otlp_error(exc.status_code, str(exc.detail), as_json)
        except otlp.OtlpError as exc:
            return _otlp_error(exc.status, exc.message, as_json)
        return Response(otlp.encode_response(signal, rejected, reason, as_json), media_type=media)

    @router.post("/v1/traces", tags=["otlp"])
    async def otlp_traces(request: Request, worker: WorkerIdentity = Depends(require_worker)) -> Response:
        return await otlp_export("traces", request, worker)

    @router.post("/v1/metrics", tags=["otlp"])
    async def otlp_metrics(request: Request, worker: WorkerIdentity = Depends(require_worker)) -> Response:
        return await otlp_export("metrics", request, worker)

    @router.post("/v1/logs", tags=["otlp"])
    async def otlp_logs(request: Request, worker: WorkerIdentity = Depends(require_worker)) -> Response:
        return await otlp_export("logs", request, worker)


def _otlp_error(status: int, message: str, as_json: bool) -> Response:
    from google.rpc import status_pb2

    st = status_pb2.Status(code=3 if status == 400 else 8 if status == 413 else 2, message=message)
    if as_json:
        return JSONResponse(status_code=status, content={"code": st.code, "message": message})
    return Response(st.SerializeToString(), status_code=status, media_type=otlp.PROTOBUF)
