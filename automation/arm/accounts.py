"""The one Automation account this server is (`--account-name`), as `GET automationAccounts/{name}` shows it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from automation.arm.envelope import ACCOUNT_PATH, NAMESPACE, Account, AccountDependency, check_api_version
from automation.context import ControlPlane
from automation.roles import Principal, RoleCheck

DEFAULT_GROUP = "outpost"


def account_resource(cp: ControlPlane, request: Request, sub: str, rg: str) -> dict[str, Any]:
    url = request.url
    body: dict[str, Any] = {
        "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{NAMESPACE}/automationAccounts/{cp.account_name}",
        "name": cp.account_name,
        "type": f"{NAMESPACE}/automationAccounts",
        "tags": {},
        "properties": {
            "sku": {"name": "Basic"},
            "state": "Ok",
            "description": "an Outpost server",
            "publicNetworkAccess": True,
            "disableLocalAuth": False,
            # Where hybrid workers register: this server.
            "automationHybridServiceUrl": cp.public_url or f"{url.scheme}://{url.netloc}",
        },
    }
    if cp.region:
        body["location"] = cp.region
    return body


def router(cp: ControlPlane, read: AccountDependency, reader: RoleCheck) -> APIRouter:
    r = APIRouter()

    @r.get(ACCOUNT_PATH)
    def get_account(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        return account_resource(cp, request, acct.subscription, acct.resource_group)

    @r.get("/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Automation/automationAccounts")
    def list_in_group(
        request: Request,
        subscriptionId: str,
        resourceGroupName: str,
        _: Principal = Depends(reader),
    ) -> dict[str, Any]:
        check_api_version(request.query_params.get("api-version"))
        return {"value": [account_resource(cp, request, subscriptionId, resourceGroupName)], "nextLink": None}

    @r.get("/{subscriptionId}/providers/Microsoft.Automation/automationAccounts")
    def list_in_subscription(request: Request, subscriptionId: str, _: Principal = Depends(reader)) -> dict[str, Any]:
        check_api_version(request.query_params.get("api-version"))
        # The account belongs to no resource group of its own: its id names the default one.
        return {"value": [account_resource(cp, request, subscriptionId, DEFAULT_GROUP)], "nextLink": None}

    return r
