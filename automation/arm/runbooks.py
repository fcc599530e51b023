"""Runbooks through ARM: define, upload a draft, publish, read content (automation.runbooks does the work)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from automation import runbooks
from automation.arm.envelope import ACCOUNT_PATH, Account, AccountDependency, iso
from automation.arm.errors import ArmError
from automation.arm.paging import page_in_memory, public_url
from automation.context import ControlPlane
from automation.errors import BadRequest

# ARM runbookType (lower case) -> Outpost's type. Azure's newest API says "Python"/"PowerShell" plus a
# runtimeEnvironment; the older ones "Python3"/"PowerShell72". Linux hybrid workers run PowerShell as pwsh.
TYPES = {
    "python3": "python3",
    "python": "python3",
    "powershell72": "pwsh",
    "powershell7": "pwsh",
    "powershell": "pwsh",
    "bash": "bash",  # not an Azure type: Outpost's own
}
ARM_TYPE = {"python3": "Python3", "pwsh": "PowerShell72", "bash": "Bash"}
# The work is done when the 202 is sent, so the poll the SDK makes at once finds it done;
# Retry-After keeps any later poll from waiting its 30 s default.
LRO_HEADERS = {"Retry-After": "1"}


class RunbookProperties(BaseModel):
    runbookType: str | None = None
    runtimeEnvironment: str | None = None
    description: str | None = None
    publishContentLink: dict[str, Any] | None = None
    draft: dict[str, Any] | None = None


class RunbookBody(BaseModel):
    properties: RunbookProperties = RunbookProperties()


def outpost_type(name: str, props: RunbookProperties) -> str:
    given = props.runbookType
    if not given:
        raise BadRequest("properties.runbookType is required: Python3, PowerShell72 or Bash")
    runtime = (props.runtimeEnvironment or "").lower()
    if given.lower() == "python2" or (given.lower() == "python" and runtime.startswith("python-2")):
        raise BadRequest(
            f"Python 2 is not supported: runbook {name} would run as Python 2; port it to Python 3 "
            "and create it with runbookType Python3"
        )
    mapped = TYPES.get(given.lower())
    if mapped is None:
        raise BadRequest(
            f"runbookType {given!r} is not supported by Outpost's hybrid workers: use Python3, PowerShell72 or Bash"
        )
    return mapped


def _refuse_links(props: RunbookProperties) -> None:
    if props.publishContentLink or (props.draft or {}).get("draftContentLink"):
        raise BadRequest(
            "content links (a URI Outpost would fetch) are not supported: upload the content with "
            "PUT .../runbooks/{name}/draft/content, then POST .../publish"
        )


def resource(acct: Account, view: dict[str, Any]) -> dict[str, Any]:
    changed = [t for t in (view["published_at"], view["draft_updated_at"]) if t]
    props = {
        "runbookType": ARM_TYPE.get(view["type"], view["type"]),
        "state": view["state"],
        "logVerbose": False,
        "logProgress": False,
        "logActivityTrace": 0,
        "jobCount": 0,
        "parameters": {},
        "outputTypes": [],
        "draft": {"inEdit": view["has_draft"], "lastModifiedTime": iso(view["draft_updated_at"])},
        "provisioningState": "Succeeded",
        "creationTime": iso(view["created_at"]),
        "lastModifiedTime": iso(max(changed)) if changed else iso(view["created_at"]),
        "description": view["description"],
    }
    return acct.resource("runbooks", view["name"], props, tracked=True)


def _same_url_then(request: Request, suffix: str) -> str:
    """The request's URL with `suffix` cut off its path: where a Location poll reads the result."""
    url = request.url
    return public_url(request, url.replace(path=url.path[: -len(suffix)] if suffix else url.path))


def router(cp: ControlPlane, read: AccountDependency, author: AccountDependency) -> APIRouter:
    r = APIRouter(prefix=ACCOUNT_PATH + "/runbooks")

    @r.get("")
    def list_runbooks(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        return page_in_memory(request, [resource(acct, v) for v in runbooks.list_all(cp)])

    @r.get("/{runbookName}")
    def get_runbook(runbookName: str, acct: Account = Depends(read)) -> dict[str, Any]:
        return resource(acct, runbooks.show(cp, runbookName))

    @r.put("/{runbookName}")
    def put_runbook(runbookName: str, body: RunbookBody, acct: Account = Depends(author)) -> JSONResponse:
        _refuse_links(body.properties)
        kind = outpost_type(runbookName, body.properties)
        view, created = runbooks.define(cp, runbookName, kind, body.properties.description)
        return JSONResponse(resource(acct, view), status_code=201 if created else 200)

    @r.patch("/{runbookName}")
    def patch_runbook(runbookName: str, body: RunbookBody, acct: Account = Depends(author)) -> dict[str, Any]:
        _refuse_links(body.properties)
        current = runbooks.show(cp, runbookName)
        kind = outpost_type(runbookName, body.properties) if body.properties.runbookType else current["type"]
        view, _ = runbooks.define(cp, runbookName, kind, body.properties.description)
        return resource(acct, view)

    @r.delete("/{runbookName}")
    def delete_runbook(runbookName: str, acct: Account = Depends(author)) -> Response:
        runbooks.delete(cp, runbookName)  # what is not there is a 404, as for every ARM delete here
        return Response(status_code=200)

    @r.get("/{runbookName}/content")
    def published_content(runbookName: str, acct: Account = Depends(read)) -> PlainTextResponse:
        view = runbooks.show(cp, runbookName)
        if view["published_content"] is None:
            raise ArmError(404, "NotFound", f"runbook {runbookName} has no published content; publish it first")
        return PlainTextResponse(view["published_content"])

    @r.get("/{runbookName}/draft")
    def get_draft(runbookName: str, acct: Account = Depends(read)) -> dict[str, Any]:
        view = runbooks.show(cp, runbookName)
        return {
            "inEdit": view["has_draft"],
            "creationTime": iso(view["created_at"]),
            "lastModifiedTime": iso(view["draft_updated_at"]),
            "parameters": {},
            "outputTypes": [],
        }

    @r.get("/{runbookName}/draft/content")
    def draft_content(runbookName: str, acct: Account = Depends(read)) -> PlainTextResponse:
        view = runbooks.show(cp, runbookName)
        # Not in edit: the draft is what was published, as on Azure.
        content = view["draft_content"] if view["draft_content"] is not None else view["published_content"]
        if content is None:
            raise ArmError(404, "NotFound", f"runbook {runbookName} has no draft content")
        return PlainTextResponse(content)

    @r.put("/{runbookName}/draft/content", status_code=202)
    async def replace_draft(runbookName: str, request: Request, acct: Account = Depends(author)) -> Response:
        raw = await request.body()
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArmError(400, "InvalidRequestContent", "runbook content must be UTF-8 text") from None

        def save() -> None:
            current = runbooks.show(cp, runbookName)  # ARM: the runbook must exist; its type stays
            runbooks.save_draft(cp, runbookName, current["type"], content)

        await cp.run(save)
        return Response(status_code=202, headers={"Location": _same_url_then(request, ""), **LRO_HEADERS})

    @r.post("/{runbookName}/publish", status_code=202)
    def publish(runbookName: str, request: Request, acct: Account = Depends(author)) -> Response:
        runbooks.publish(cp, runbookName)
        return Response(status_code=202, headers={"Location": _same_url_then(request, "/publish"), **LRO_HEADERS})

    return r
