"""The endpoints a worker needs: the server URL, the server's endpoints document, Azure's records."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from diagnostics import regions
from outpost import contract

if TYPE_CHECKING:
    from diagnostics.context import Context, EndpointList

HOST_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,62}[A-Za-z0-9_])?\.?)+$|^\[?[0-9A-Fa-f:.]+\]?$")


def collect(ctx: Context) -> EndpointList:
    from diagnostics.context import Endpoint, EndpointList, split_url

    found = EndpointList(endpoints=[])
    seen: set[tuple[str, int]] = set()

    def add(ep: Endpoint) -> None:
        key = (ep.host.lower(), ep.port)
        if key not in seen:
            seen.add(key)
            found.endpoints.append(ep)

    url = ctx.server_url
    if url:
        try:
            scheme, host, port = split_url(url)
        except ValueError as exc:
            found.error = str(exc)
        else:
            add(Endpoint(host, port, "Outpost server (from the server URL)", "server URL", tls=scheme == "https"))
            _from_document(ctx, found, add)
    if ctx.options.azure_region:
        region = regions.find_region(ctx.options.azure_region)
        found.region = found.region or region.code
        account = regions.check_account_id(ctx.options.account_id) if ctx.options.account_id else None
        for record in regions.azure_records(region, account):
            add(Endpoint(record.host, 443, record.purpose, "azure", record.required, record.expect))
    return found


def _from_document(ctx: Context, found: EndpointList, add: Any) -> None:
    from diagnostics.context import Endpoint

    probe = ctx.http("GET", contract.ENDPOINTS)
    if probe.error:
        found.error = f"could not fetch {contract.ENDPOINTS}: {probe.error}"
        return
    if not probe.is_outpost:
        found.error = f"{contract.ENDPOINTS} answered HTTP {probe.status} without the {contract.SERVICE_HEADER} header"
        return
    doc = probe.json()
    if probe.status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("endpoints"), list):
        found.error = f"{contract.ENDPOINTS} answered HTTP {probe.status} without an endpoints list"
        return
    found.fetched = True
    region = doc.get("region")
    found.region = region if isinstance(region, str) and region else None
    for item in doc["endpoints"]:
        host = item.get("name") if isinstance(item, dict) else None
        port = item.get("port", 443) if isinstance(item, dict) else None
        if not isinstance(host, str) or not HOST_RE.match(host) or not isinstance(port, int) or not 0 < port < 65536:
            found.rejected.append(repr(item)[:120])
            continue
        expect = item.get("network") if item.get("network") in ("public", "private") else None
        purpose = str(item.get("purpose") or "required by the server")
        tls = not str(item.get("url") or "").startswith("http://")
        add(
            Endpoint(
                host.strip("[]"), port, purpose, "endpoints document", bool(item.get("required", True)), expect, tls=tls
            )
        )
