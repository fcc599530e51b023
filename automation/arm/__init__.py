"""An Azure-compatible management API: the Microsoft.Automation subset that scripts and the
`azure-mgmt-automation` SDK call, served under ARM's own paths.

A door onto the same store as /api/v1 and the CLI: every operation calls the function the
/api/v1 route calls (automation.runbooks, .jobs, .workers, .assets), with the same tokens and
roles; only the shapes are ARM's (`{id, name, type, properties}`, `{value, nextLink}`,
`{"error": {"code", "message"}}`). It is a sub-application mounted at `/subscriptions`, so its
errors keep ARM's shape whatever goes wrong. See docs/arm.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request

from automation.arm import accounts, assets, errors, jobs, runbooks, schedules, webhooks, workers
from automation.arm.envelope import NAMESPACE, account_dependency
from automation.arm.errors import ArmError
from automation.arm.paths import CanonicalPath
from automation.auth import Role, RoleChecks
from automation.context import ControlPlane
from automation.roles import Principal, RoleCheck, annotate_openapi

PREFIX = "/subscriptions"
_ACTIONS = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete", "POST": "action"}


def operation_name(method: str, path: str) -> str:
    """ARM's name for what a request asks, e.g. Microsoft.Automation/automationAccounts/modules/write."""
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    if "providers" not in lowered:
        return f"{method} {path}"
    rest = segments[lowered.index("providers") + 1 :]
    types = [rest[0], *rest[1::2]] if rest else []
    action = _ACTIONS.get(method, method.lower())
    if method == "POST" and len(rest) % 2 == 0 and rest:  # .../things/{name}/verb: the verb names the action
        types, action = types[:-1], rest[-1]
    return "/".join([*types, action])


def unsupported_router(reader: RoleCheck) -> APIRouter:
    r = APIRouter()

    @r.api_route("/{path:path}", methods=["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD"])
    def not_implemented(path: str, request: Request, _: Principal = Depends(reader)) -> None:
        operation = operation_name(request.method, f"/subscriptions/{path}")
        if not operation.startswith(NAMESPACE):
            raise ArmError(400, "InvalidResourceNamespace", f"this server serves only {NAMESPACE}, not {path!r}")
        raise ArmError(
            501,
            "NotImplemented",
            f"Outpost does not implement {operation} ({request.method} {request.url.path}); "
            "docs/arm.md lists the operations it serves",
        )

    return r


def build(cp: ControlPlane, roles: RoleChecks) -> FastAPI:
    app = FastAPI(title="Outpost: Microsoft.Automation", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.public_url = cp.public_url  # the links it answers with (automation.arm.paging.public_url)
    errors.install(app)
    app.add_middleware(CanonicalPath)  # type: ignore[arg-type]
    read, operate, author, admin = (account_dependency(cp, roles[x]) for x in Role)
    app.include_router(accounts.router(cp, read, roles[Role.READER]))
    app.include_router(runbooks.router(cp, read, author))
    app.include_router(jobs.router(cp, read, operate))
    app.include_router(workers.router(cp, read, admin))
    app.include_router(assets.router(cp, read, author, admin))
    app.include_router(webhooks.router(cp, read, author))
    app.include_router(schedules.router(cp, read, author))
    app.include_router(unsupported_router(roles[Role.READER]))  # last: only what nothing above matched
    annotate_openapi(app)  # each route's role, which the audit trail reads
    return app
