"""Webhooks through ARM (automation.webhooks does the work).

As on Azure: `POST webhooks/generateUri` hands out a URL with a fresh token, then `PUT webhooks/{name}`
with that `uri` creates the webhook. Only the token's digest is stored, so the URI is never shown
again: a GET has `uri: null`. Callers POST to the URI (`/webhooks?token=...`) to start the runbook.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from automation import jobs, webhooks
from automation.arm.envelope import ACCOUNT_PATH, Account, AccountDependency, iso
from automation.arm.errors import ArmError
from automation.arm.paging import page_in_memory
from automation.context import ControlPlane
from automation.errors import BadRequest, NotFound
from outpost.contract import JobParam


class RunbookRef(BaseModel):
    name: str


class WebhookProperties(BaseModel):
    isEnabled: bool | None = None
    uri: str | None = None
    expiryTime: str | None = None
    parameters: dict[str, str] | None = None
    runbook: RunbookRef | None = None
    runOn: str | None = None


class WebhookBody(BaseModel):
    properties: WebhookProperties = WebhookProperties()


def _base(cp: ControlPlane, request: Request) -> str:
    return cp.public_url or f"{request.url.scheme}://{request.url.netloc}"


def resource(acct: Account, view: dict[str, Any], uri: str | None = None) -> dict[str, Any]:
    params: dict[str, str] = {}
    for p in view["params"]:
        params[p["name"] or f"[PARAMETER {len(params) + 1}]"] = p["value"]
    props = {
        "isEnabled": view["enabled"],
        "uri": uri,
        "expiryTime": iso(view["expires_at"]),
        "lastInvokedTime": iso(view["last_used_at"]),
        "parameters": params,
        "runbook": {"name": view["runbook"]},
        "runOn": view["run_on"],
        "creationTime": iso(view["created_at"]),
        "lastModifiedTime": iso(view["created_at"]),
        "description": "",
    }
    return acct.resource("webhooks", view["name"], props)


def _token_of(uri: str) -> str:
    tokens = parse_qs(urlsplit(uri).query).get("token") or []
    if len(tokens) != 1:
        raise BadRequest("properties.uri must be a URI from POST .../webhooks/generateUri")
    return tokens[0]


def router(cp: ControlPlane, read: AccountDependency, author: AccountDependency) -> APIRouter:
    r = APIRouter(prefix=ACCOUNT_PATH + "/webhooks")

    @r.post("/generateUri")
    def generate_uri(request: Request, acct: Account = Depends(author)) -> Response:
        # Plain text: the SDK takes the body as the URI. Nothing is stored until a webhook is created with it.
        return PlainTextResponse(webhooks.url_for(_base(cp, request), webhooks.new_token()))

    @r.get("")
    def list_webhooks(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        return page_in_memory(request, [resource(acct, v) for v in webhooks.list_all(cp)])

    @r.get("/{webhookName}")
    def get_webhook(webhookName: str, acct: Account = Depends(read)) -> dict[str, Any]:
        return resource(acct, webhooks.show(cp, webhookName))

    @r.put("/{webhookName}")
    def put_webhook(
        webhookName: str, body: WebhookBody, request: Request, acct: Account = Depends(author)
    ) -> JSONResponse:
        props = body.properties
        try:
            webhooks.show(cp, webhookName)
        except NotFound:
            pass
        else:
            raise ArmError(
                409,
                "Conflict",
                f"webhook {webhookName!r} exists: PATCH it (isEnabled) or delete it and create it again",
            )
        if props.runbook is None or not props.runOn:
            raise BadRequest("properties.runbook.name and properties.runOn (the hybrid worker group) are required")
        token = _token_of(props.uri) if props.uri else webhooks.new_token()
        view, token = webhooks.create(
            cp,
            webhookName,
            props.runbook.name,
            props.runOn,
            jobs.azure_positional([JobParam(name=k, value=v) for k, v in (props.parameters or {}).items()]),
            expires_at=props.expiryTime,
            enabled=props.isEnabled if props.isEnabled is not None else True,
            token=token,
        )
        # The URI only in this answer, as on Azure: the token is not kept.
        return JSONResponse(resource(acct, view, webhooks.url_for(_base(cp, request), token)), status_code=201)

    @r.patch("/{webhookName}")
    def patch_webhook(webhookName: str, body: WebhookBody, acct: Account = Depends(author)) -> dict[str, Any]:
        props = body.properties
        if props.runOn or props.parameters or props.runbook or props.uri or props.expiryTime:
            raise ArmError(
                501, "NotImplemented", "a webhook update changes isEnabled only; delete and create it for the rest"
            )
        if props.isEnabled is None:
            return resource(acct, webhooks.show(cp, webhookName))
        return resource(acct, webhooks.set_enabled(cp, webhookName, props.isEnabled))

    @r.delete("/{webhookName}")
    def delete_webhook(webhookName: str, acct: Account = Depends(author)) -> Response:
        webhooks.delete(cp, webhookName)
        return Response(status_code=200)

    return r
