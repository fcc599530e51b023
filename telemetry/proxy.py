"""A replica's telemetry reads, answered by the collector (`outpost server --collector-url URL`).

KQL (`/api/v1/query`), the Kusto REST API and the alerting API are proxied as they
are: the replica checks the caller (its admin token, or loopback with
--query-anonymous), then asks the collector with its collector token, and hands back
the collector's status code and body unchanged, so errors read the same from any
replica. Before a query the replica waits (up to 2 s) until the telemetry it has
taken reached the collector, so a query right after a job ends sees its logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from telemetry.api import QUERY, _body
from telemetry.forwarding import Forwarder

DRAIN_S = 2.0
PROXY_TIMEOUT_S = 120.0  # above any query budget; the collector enforces its own
_PASS_REQUEST = ("content-type", "accept", "x-ms-client-request-id", "x-ms-app", "x-ms-user", "traceparent")
_PASS_RESPONSE = ("x-ms-client-request-id", "x-ms-activity-id", "retry-after")
KUSTO_PATHS = ("/v1/rest/query", "/v2/rest/query", "/v1/rest/mgmt")
ALERTS = "/api/v1/alerts"


class CollectorProxy:
    def __init__(self, forwarder: Forwarder, collector_url: str, *, token: str, ca_file: str | None = None) -> None:
        from outpost.http import ssl_context

        self.forwarder = forwarder
        self.url = collector_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=PROXY_TIMEOUT_S,
            verify=ssl_context(ca_file),
            trust_env=True,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def forward(self, request: Request, *, drain: bool = False) -> Response:
        body = await _body(request)
        if drain:
            await run_in_threadpool(self.forwarder.drain, DRAIN_S)
        headers = {k: v for k in _PASS_REQUEST if (v := request.headers.get(k)) is not None}
        try:
            resp = await self._client.request(
                request.method, request.url.path, params=request.query_params, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            return self._unreachable(request.url.path, exc)
        out = {k: v for k in _PASS_RESPONSE if (v := resp.headers.get(k)) is not None}
        return Response(
            resp.content, status_code=resp.status_code, media_type=resp.headers.get("content-type"), headers=out
        )

    def _unreachable(self, path: str, exc: Exception) -> Response:
        message = (
            f"the telemetry collector at {self.url} did not answer ({type(exc).__name__}); "
            "queries and alerts of this fleet are served there"
        )
        if path in KUSTO_PATHS:
            kind = "Kusto.Data.Exceptions.KustoServiceException"
            error = {"code": "ServiceUnavailable", "message": message, "@type": kind, "@message": message,
                     "@permanent": False}  # fmt: skip
            return JSONResponse(status_code=503, content={"error": error}, headers={"Retry-After": "5"})
        return JSONResponse(status_code=503, content={"detail": message}, headers={"Retry-After": "5"})

    async def aclose(self) -> None:
        await self._client.aclose()


def build_proxy_router(
    proxy: CollectorProxy,
    *,
    query_auth: Callable[..., Any],
    require_read: Callable[..., Any],
    require_change: Callable[..., Any] | None = None,
) -> APIRouter:
    router = APIRouter()

    async def query(request: Request) -> Response:
        return await proxy.forward(request, drain=True)

    for path in (QUERY, *KUSTO_PATHS):
        router.add_api_route(path, query, methods=["POST"], dependencies=[Depends(query_auth)], tags=["query"])

    async def alerts(request: Request) -> Response:
        return await proxy.forward(request, drain=request.url.path.endswith("/evaluate"))

    # Reading alerts is a reader's business; evaluating and maintenance windows need `require_change`.
    for path in (ALERTS, f"{ALERTS}/{{rest:path}}"):
        router.add_api_route(path, alerts, methods=["GET"], dependencies=[Depends(require_read)], tags=["alerts"])
        router.add_api_route(
            path,
            alerts,
            methods=["POST", "DELETE"],
            dependencies=[Depends(require_change or require_read)],
            tags=["alerts"],
        )
    return router
