"""What every ARM answer shares: the account scope of the path, api-version, ids and the resource envelope.

Paths are ARM's: `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Automation/
automationAccounts/{account}/...`. Any subscription and resource group are taken and echoed in
`id`s; the account must be this server's (`outpost server --account-name`, default `outpost`),
compared without case as ARM compares names.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Depends, Request

from automation.arm.errors import ArmError
from automation.context import ControlPlane
from automation.models import as_utc
from automation.roles import Principal, RoleCheck

# The published stable versions of Microsoft.Automation; the shapes served are the same for each.
API_VERSIONS = ("2015-10-31", "2018-06-30", "2019-06-01", "2022-08-08", "2023-11-01", "2024-10-23")
NAMESPACE = "Microsoft.Automation"
ACCOUNT_PATH = (
    "/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Automation"
    "/automationAccounts/{automationAccountName}"
)
# Azure's rule for account names.
_ACCOUNT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]\Z")


def account_name_problem(name: str) -> str | None:
    if _ACCOUNT_RE.match(name):
        return None
    return "an account name is 6-50 letters, digits or '-', starting with a letter and ending with a letter or digit"


def check_api_version(value: str | None) -> str:
    if not value:
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if value not in API_VERSIONS:
        raise ArmError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for API version '{value}' and namespace '{NAMESPACE}'. "
            f"The supported api-versions are '{', '.join(API_VERSIONS)}'.",
        )
    return value


def iso(value: datetime | str | None) -> str | None:
    """A time as ARM writes it: ISO 8601 with its UTC offset (the store's views may lack it)."""
    if value is None:
        return None
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value).isoformat()


@dataclass(frozen=True)
class Account:
    """The account a request addresses, and who made it."""

    subscription: str
    resource_group: str
    name: str
    principal: Principal
    region: str | None

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{NAMESPACE}/automationAccounts/{self.name}"
        )

    def resource(self, kind: str, name: str, properties: dict[str, Any], tracked: bool = False) -> dict[str, Any]:
        """ARM's envelope. `kind` is the path under the account, e.g. "runbooks" or
        "hybridRunbookWorkerGroups/linux/hybridRunbookWorkers"; its odd segments make the type."""
        types = kind.split("/")[::2]
        body: dict[str, Any] = {
            "id": f"{self.id}/{kind}/{name}",
            "name": name,
            "type": f"{NAMESPACE}/automationAccounts/" + "/".join(types),
        }
        if tracked:  # tracked resources carry a location (the server's --region) and tags
            if self.region:
                body["location"] = self.region
            body["tags"] = {}
        body["properties"] = properties
        return body


AccountDependency = Callable[..., Awaitable[Account]]


def account_dependency(cp: ControlPlane, check: RoleCheck) -> AccountDependency:
    """The token first (ARM answers 401 before anything else), then api-version, then the account."""

    async def account(
        request: Request,
        subscriptionId: str,
        resourceGroupName: str,
        automationAccountName: str,
        principal: Principal = Depends(check),
    ) -> Account:
        check_api_version(request.query_params.get("api-version"))
        if automationAccountName.casefold() != cp.account_name.casefold():
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{NAMESPACE}/automationAccounts/{automationAccountName}' under resource group "
                f"'{resourceGroupName}' was not found. This server's account is '{cp.account_name}'.",
            )
        return Account(subscriptionId, resourceGroupName, cp.account_name, principal, cp.region)

    return account
