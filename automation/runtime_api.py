"""REST routes of the runbook runtime: assets, RunAs, schedules, webhooks.

- admin (admin token): ``/api/v1/assets/{variables|credentials|certificates|connections}``,
  ``/api/v1/groups/{name}/runas``, ``/api/v1/schedules``, ``/api/v1/webhooks``;
- agent (worker credential, only while it holds the job's lease):
  ``/api/v1/agent/jobs/{job_id}/assets/{kind}/{name}``;
- public (the token is the secret): ``POST /webhooks?token=...`` and ``POST /webhooks/{token}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool

from automation import assets, crypto, jobs, schedules, webhooks
from automation.auth import Role, RoleChecks
from automation.context import ControlPlane
from automation.errors import NotFound
from automation.params import AssetPlural, JobIdPath, NamePath
from automation.roles import principal_of
from outpost import contract as c
from outpost.messages import JobParamBody, JsonInt, Name, StrictFloat
from outpost.observer import WorkerIdentity

log = logging.getLogger("outpost.server")


class VariableBody(BaseModel):
    value: Any = Field(description="any JSON value: string, number, bool, null, array, object")
    encrypted: StrictBool = False
    description: str | None = None


class CredentialBody(BaseModel):
    username: str = Field(min_length=1)
    password: str
    description: str | None = None


class CertificateBody(BaseModel):
    data: str = Field(description="the PFX/PKCS#12 (or PEM/DER certificate) file, base64")
    password: str | None = Field(default=None, description="the PFX password, if it has one")
    exportable: StrictBool = False
    description: str | None = None


class ConnectionBody(BaseModel):
    connection_type: Name
    fields: dict[str, Any] = Field(default_factory=dict)
    encrypted_fields: list[str] = Field(default_factory=list)
    description: str | None = None


class RunAsBody(BaseModel):
    credential: Name | None = Field(description="a credential asset's name; null clears RunAs")


class ScheduleBody(BaseModel):
    runbook: Name
    run_on: Name
    frequency: Literal["OneTime", "Minute", "Hour", "Day", "Week"]
    interval: JsonInt = Field(default=1, ge=1, le=schedules.MAX_INTERVAL)
    start_time: str | None = Field(default=None, description="ISO 8601; without an offset: in time_zone")
    time_zone: str = "UTC"
    expiry_time: str | None = None
    params: list[JobParamBody] = Field(default_factory=list, max_length=jobs.MAX_PARAMS)
    description: str = ""
    enabled: StrictBool = True


class WebhookBody(BaseModel):
    runbook: Name
    run_on: Name
    params: list[JobParamBody] = Field(default_factory=list, max_length=jobs.MAX_PARAMS)
    expires_at: str | None = Field(default=None, description="ISO 8601; default one year from now")
    expires_in_s: StrictFloat | None = None
    enabled: StrictBool = True


class EnabledBody(BaseModel):
    enabled: StrictBool


class SetVariableBody(BaseModel):
    value: Any


SECRET_KINDS = ("credential", "certificate")  # only admins write or delete these


def _kind(plural: str) -> str:
    kind = assets.PLURAL.get(plural)
    if kind is None:
        raise NotFound(f"no asset kind {plural!r}: use variables, credentials, certificates or connections")
    return kind


def admin_router(cp: ControlPlane, roles: RoleChecks) -> APIRouter:
    """Every route names the least role it needs (automation.roles)."""
    r = APIRouter(prefix=c.API)
    READ, OPERATE, AUTHOR, ADMIN = (Depends(roles[x]) for x in (Role.READER, Role.OPERATOR, Role.AUTHOR, Role.ADMIN))

    # One set of routes per kind, not one `/assets/{plural}/{name}`: that template would cover the same
    # URLs as the kinds' own PUT routes, and a URL would answer methods its template does not document.
    def kind_routes(plural: str, kind: str) -> None:
        @r.get(f"/assets/{plural}", tags=["assets"], dependencies=[READ], name=f"list_{plural}")
        def list_assets() -> list[dict[str, Any]]:
            return assets.list_kind(cp, kind)

        @r.get(f"/assets/{plural}/{{name}}", tags=["assets"], dependencies=[READ], name=f"show_{kind}")
        def show_asset(name: NamePath) -> dict[str, Any]:
            return assets.show(cp, kind, name)

        deleter = ADMIN if kind in SECRET_KINDS else AUTHOR  # the route of each kind declares its own role

        @r.delete(f"/assets/{plural}/{{name}}", tags=["assets"], status_code=204, dependencies=[deleter],
                  name=f"delete_{kind}")  # fmt: skip
        def delete_asset(name: NamePath) -> Response:
            assets.delete(cp, kind, name)
            return Response(status_code=204)

    for plural, kind in assets.PLURAL.items():
        kind_routes(plural, kind)

    @r.put("/assets/variables/{name}", tags=["assets"], dependencies=[AUTHOR])
    def set_variable(name: NamePath, body: VariableBody, request: Request) -> dict[str, Any]:
        if body.encrypted:
            principal_of(request).require(Role.ADMIN, "an encrypted variable")
        return assets.set_variable(cp, name, body.value, body.encrypted, body.description)

    @r.put("/assets/credentials/{name}", tags=["assets"], dependencies=[ADMIN])
    def set_credential(name: NamePath, body: CredentialBody) -> dict[str, Any]:
        return assets.set_credential(cp, name, body.username, body.password, body.description)

    @r.put("/assets/certificates/{name}", tags=["assets"], dependencies=[ADMIN])
    def set_certificate(name: NamePath, body: CertificateBody) -> dict[str, Any]:
        return assets.set_certificate(cp, name, body.data, body.password, body.exportable, body.description)

    @r.put("/assets/connections/{name}", tags=["assets"], dependencies=[AUTHOR])
    def set_connection(name: NamePath, body: ConnectionBody, request: Request) -> dict[str, Any]:
        if body.encrypted_fields:
            principal_of(request).require(Role.ADMIN, "a connection with encrypted fields")
        return assets.set_connection(
            cp, name, body.connection_type, body.fields, body.encrypted_fields, body.description
        )

    @r.put("/groups/{name}/runas", tags=["workers"], dependencies=[ADMIN])
    def set_run_as(name: NamePath, body: RunAsBody) -> dict[str, Any]:
        return assets.set_group_run_as(cp, name, body.credential)

    @r.post("/schedules/{name}", tags=["schedules"], status_code=201, dependencies=[AUTHOR])
    def create_schedule(name: NamePath, body: ScheduleBody) -> dict[str, Any]:
        return schedules.create(
            cp,
            name,
            body.runbook,
            body.run_on,
            body.frequency,
            body.interval,
            body.start_time,
            body.time_zone,
            body.expiry_time,
            body.params,
            body.description,
            body.enabled,
        )

    @r.get("/schedules", tags=["schedules"], dependencies=[READ])
    def list_schedules() -> list[dict[str, Any]]:
        return schedules.list_all(cp)

    @r.get("/schedules/{name}", tags=["schedules"], dependencies=[READ])
    def show_schedule(name: NamePath) -> dict[str, Any]:
        return schedules.show(cp, name)

    @r.patch("/schedules/{name}", tags=["schedules"], dependencies=[AUTHOR])
    def enable_schedule(name: NamePath, body: EnabledBody) -> dict[str, Any]:
        return schedules.set_enabled(cp, name, body.enabled)

    @r.delete("/schedules/{name}", tags=["schedules"], status_code=204, dependencies=[AUTHOR])
    def delete_schedule(name: NamePath) -> Response:
        schedules.delete(cp, name)
        return Response(status_code=204)

    @r.post("/webhooks/{name}", tags=["webhooks"], status_code=201, dependencies=[AUTHOR])
    def create_webhook(name: NamePath, body: WebhookBody, request: Request) -> dict[str, Any]:
        view, token = webhooks.create(
            cp, name, body.runbook, body.run_on, body.params, body.expires_at, body.expires_in_s, body.enabled
        )
        return {**view, "token": token, "url": webhooks.url_for(cp.public_url or str(request.base_url), token)}

    @r.get("/webhooks", tags=["webhooks"], dependencies=[READ])
    def list_webhooks() -> list[dict[str, Any]]:
        return webhooks.list_all(cp)

    @r.get("/webhooks/{name}", tags=["webhooks"], dependencies=[READ])
    def show_webhook(name: NamePath) -> dict[str, Any]:
        return webhooks.show(cp, name)

    @r.patch("/webhooks/{name}", tags=["webhooks"], dependencies=[AUTHOR])
    def enable_webhook(name: NamePath, body: EnabledBody) -> dict[str, Any]:
        return webhooks.set_enabled(cp, name, body.enabled)

    @r.delete("/webhooks/{name}", tags=["webhooks"], status_code=204, dependencies=[AUTHOR])
    def delete_webhook(name: NamePath) -> Response:
        webhooks.delete(cp, name)
        return Response(status_code=204)

    return r


def agent_router(cp: ControlPlane, require_worker: Callable[..., Any]) -> APIRouter:
    r = APIRouter(tags=["agent"])

    @r.get(c.AGENT_ASSET)
    def read_asset(
        job_id: JobIdPath, plural: AssetPlural, name: NamePath, identity: WorkerIdentity = Depends(require_worker)
    ) -> dict[str, Any]:
        return assets.for_job(cp, identity, job_id, _kind(plural), name)

    @r.put(c.AGENT_ASSET, status_code=204)
    def write_asset(
        job_id: JobIdPath,
        plural: AssetPlural,
        name: NamePath,
        body: SetVariableBody,
        identity: WorkerIdentity = Depends(require_worker),
    ) -> Response:
        if _kind(plural) != "variable":
            raise NotFound("runbooks can set variables only")
        assets.set_variable_for_job(cp, identity, job_id, name, body.value)
        return Response(status_code=204)

    return r


def public_router(cp: ControlPlane) -> APIRouter:
    r = APIRouter(tags=["webhooks"])

    async def _fire(token: str, request: Request) -> JSONResponse:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items()]
        answer = await run_in_threadpool(webhooks.fire, cp, token, body, headers)
        return JSONResponse(answer, status_code=202)

    @r.post(c.WEBHOOKS, status_code=202)
    async def webhook_query(request: Request, token: str = "") -> JSONResponse:
        """Azure's shape: POST /webhooks?token=TOKEN."""
        return await _fire(token, request)

    @r.post(c.WEBHOOKS + "/{token}", status_code=202)
    async def webhook_path(token: str, request: Request) -> JSONResponse:
        return await _fire(token, request)

    return r


def routers(cp: ControlPlane, roles: RoleChecks, require_worker: Callable[..., Any]) -> list[APIRouter]:
    try:  # say at start-up, not at the first job, when the master key cannot read the stored assets
        crypto.keyring(cp)
    except crypto.MasterKeyError as exc:
        log.error("assets: %s", exc.message)
    return [public_router(cp), agent_router(cp, require_worker), admin_router(cp, roles)]
