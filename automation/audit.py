"""One AuditEvent row per change made through the API, naming the token that made it.

ASGI middleware: after a POST/PUT/PATCH/DELETE under /api/v1 or the ARM API (not the agent routes, and
not reader routes such as `POST /api/v1/query`) answers, it reports the route, the path and
the caller's token name (set by its RoleCheck) to the observer, which writes `AzureDiagnostics` rows with
`Category == "AuditEvent"` and `Caller_s` = the token's name. Refused calls are
audited too (ResultType `Failed`), when the caller was identified.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automation.context import ControlPlane
from outpost import contract as c

log = logging.getLogger("outpost.server")
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_AGENT = f"{c.API}/agent/"
_DOORS = (c.API, "/subscriptions/")  # /api/v1 and the Azure-compatible API (automation/arm)


class AuditTrail:
    def __init__(self, app: ASGIApp, cp: ControlPlane) -> None:
        self.app = app
        self.cp = cp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or scope.get("method") not in _CHANGES or not path.startswith(_DOORS):
            await self.app(scope, receive, send)
            return
        if path.startswith(_AGENT):
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status)

    def _record(self, scope: Scope, status: int) -> None:
        principal: Any = scope.get("state", {}).get("principal")
        if principal is None:  # no identified caller (401): nothing to attribute
            return
        route = scope.get("route")
        role = (getattr(route, "openapi_extra", None) or {}).get("x-outpost-role")
        if role in (None, "reader", "public", "worker"):  # a query is a POST, not a change
            return
        template = getattr(route, "path", None) or scope.get("path", "")
        operation = f"{scope.get('method')} {template}"
        result = "Succeeded" if status < 400 else "Failed"
        try:
            self.cp.observer.on_audit(operation, scope.get("path", ""), principal.name, result)
        except Exception:  # auditing must never fail the call it records
            log.warning("audit row for %s not recorded", operation, exc_info=True)
