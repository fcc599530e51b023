"""Azure Automation's published DNS records, shipped as data (data/azure_regions.json).

Lets `outpost diagnose --azure-region CODE [--account-id GUID]` check a real Azure Hybrid
Runbook Worker's endpoints as well as Outpost's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Who signs Azure's public endpoints; any other issuer means something re-signed the TLS.
AZURE_ISSUER_ORGS = ("Microsoft Corporation", "DigiCert Inc")


class RegionError(ValueError):
    """An unknown region or a malformed account id (a usage error)."""


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    legacy: tuple[str, ...]
    account: tuple[str, ...]  # templates with "{account_id}"
    historical: tuple[str, ...]


@cache
def _data() -> dict[str, Any]:
    text = resources.files("diagnostics.data").joinpath("azure_regions.json").read_text(encoding="utf-8")
    return json.loads(text)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@cache
def regions() -> dict[str, Region]:
    out = {}
    for r in _data()["regions"]:
        out[r["code"]] = Region(
            r["code"], r["name"], tuple(r["legacy"]), tuple(r["account"]), tuple(r.get("historical", ()))
        )
    return out


def find_region(text: str) -> Region:
    """Accept a location code ("we"), a display name ("West Europe") or an ARM name ("westeurope")."""
    key = _norm(text)
    for region in regions().values():
        if key in (region.code, _norm(region.name)):
            return region
    codes = ", ".join(sorted(regions()))
    raise RegionError(f"unknown Azure region {text!r}; use a location code ({codes}) or a name like 'West Europe'")


def check_account_id(account_id: str) -> str:
    if not GUID_RE.match(account_id):
        raise RegionError(
            f"--account-id {account_id!r} is not a GUID; copy it from the Automation account's "
            "Keys page (URL https://<GUID>.agentsvc.<region>.azure-automation.net/accounts/<GUID>)"
        )
    return account_id.lower()


@dataclass(frozen=True)
class AzureRecord:
    host: str
    purpose: str
    required: bool
    expect: str | None  # "public", or None when Private Link may make it private


def azure_records(region: Region, account_id: str | None) -> list[AzureRecord]:
    records: list[AzureRecord] = []
    for host in region.legacy:
        kind = "job runtime data (legacy region record)" if "jobruntimedata" in host else "agent service (legacy)"
        records.append(AzureRecord(host, kind, True, "public"))
    for host in region.historical:
        records.append(AzureRecord(host, "historical record (older docs; may be retired)", False, "public"))
    if account_id:
        for template in region.account:
            host = template.format(account_id=account_id)
            service = host.split(".")[1]  # webhook / agentsvc / jrds
            records.append(AzureRecord(host, f"{service} (account-scoped, Private Link capable)", True, None))
    return records
