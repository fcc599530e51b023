"""Hybrid worker groups and their workers through ARM (automation.workers and automation.assets do the work).

A group's `credential` is its RunAs credential asset. Workers join by `outpost worker register`,
as hybrid workers join by their extension on Azure; ARM can list, read and remove them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from automation import assets, workers
from automation.arm.envelope import ACCOUNT_PATH, Account, AccountDependency, iso
from automation.arm.errors import ArmError
from automation.arm.paging import page_in_memory
from automation.context import ControlPlane

GROUPS = "hybridRunbookWorkerGroups"


class CredentialRef(BaseModel):
    name: str


class GroupProperties(BaseModel):
    credential: CredentialRef | None = None


class GroupBody(BaseModel):
    properties: GroupProperties = GroupProperties()


def group_resource(acct: Account, group: dict[str, Any]) -> dict[str, Any]:
    credential = group["run_as_credential"]
    props = {"groupType": "User", "credential": {"name": credential} if credential else None}
    return acct.resource(GROUPS, group["name"], props)


def worker_resource(acct: Account, worker: dict[str, Any]) -> dict[str, Any]:
    props = {
        "ip": None,
        "registeredDateTime": iso(worker["registered_at"]),
        "lastSeenDateTime": iso(worker["last_seen_at"]),
        "vmResourceId": None,
        "workerType": "HybridV2",
        "workerName": worker["name"],
        "hostname": worker["hostname"],
        "os": worker["os"],
        "agentVersion": worker["agent_version"],
    }
    return acct.resource(f"{GROUPS}/{worker['group']}/hybridRunbookWorkers", worker["id"], props)


def _group(cp: ControlPlane, name: str) -> dict[str, Any]:
    for group in workers.list_groups(cp):
        if group["name"] == name:
            return group
    raise ArmError(404, "NotFound", f"hybrid worker group {name!r} does not exist")


def _worker(cp: ControlPlane, group: str, worker_id: str) -> dict[str, Any]:
    _group(cp, group)
    for worker in workers.list_workers(cp, group):
        if worker["id"] == worker_id:
            return worker
    raise ArmError(404, "NotFound", f"hybrid worker group {group!r} has no worker {worker_id!r}")


def router(cp: ControlPlane, read: AccountDependency, admin: AccountDependency) -> APIRouter:
    r = APIRouter(prefix=f"{ACCOUNT_PATH}/{GROUPS}")

    @r.get("")
    def list_groups(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        return page_in_memory(request, [group_resource(acct, g) for g in workers.list_groups(cp)])

    @r.get("/{groupName}")
    def get_group(groupName: str, acct: Account = Depends(read)) -> dict[str, Any]:
        return group_resource(acct, _group(cp, groupName))

    def save(name: str, body: GroupBody, acct: Account) -> JSONResponse:
        existed = any(g["name"] == name for g in workers.list_groups(cp))
        credential = body.properties.credential
        if credential:
            assets.show(cp, "credential", credential.name)  # a missing credential creates no group
        workers.get_or_create_group(cp, name)
        assets.set_group_run_as(cp, name, credential.name if credential else None)
        return JSONResponse(group_resource(acct, _group(cp, name)), status_code=200 if existed else 201)

    @r.put("/{groupName}")
    def put_group(groupName: str, body: GroupBody, acct: Account = Depends(admin)) -> JSONResponse:
        return save(groupName, body, acct)

    @r.patch("/{groupName}")
    def patch_group(groupName: str, body: GroupBody, acct: Account = Depends(admin)) -> dict[str, Any]:
        _group(cp, groupName)
        credential = body.properties.credential
        assets.set_group_run_as(cp, groupName, credential.name if credential else None)
        return group_resource(acct, _group(cp, groupName))

    @r.delete("/{groupName}")
    def delete_group(groupName: str, acct: Account = Depends(admin)) -> Response:
        workers.delete_group(cp, groupName)
        return Response(status_code=200)

    @r.get("/{groupName}/hybridRunbookWorkers")
    def list_workers(groupName: str, request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        _group(cp, groupName)
        return page_in_memory(request, [worker_resource(acct, w) for w in workers.list_workers(cp, groupName)])

    @r.get("/{groupName}/hybridRunbookWorkers/{workerId}")
    def get_worker(groupName: str, workerId: str, acct: Account = Depends(read)) -> dict[str, Any]:
        return worker_resource(acct, _worker(cp, groupName, workerId))

    @r.delete("/{groupName}/hybridRunbookWorkers/{workerId}")
    def delete_worker(groupName: str, workerId: str, acct: Account = Depends(admin)) -> Response:
        worker = _worker(cp, groupName, workerId)
        workers.remove_by_name(cp, worker["name"], groupName)
        return Response(status_code=200)

    return r
