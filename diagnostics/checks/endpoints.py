"""Required endpoints: what the server publishes (and Azure's records when asked)."""

from __future__ import annotations

from diagnostics.checks import CheckSpec
from diagnostics.context import Context
from diagnostics.model import Outcome, fail, ok, skip, warn
from outpost import contract


def endpoint_list(ctx: Context) -> Outcome:
    found = ctx.endpoints()
    listing = [
        {"name": e.host, "port": e.port, "purpose": e.purpose, "source": e.source, "required": e.required}
        for e in found.endpoints
    ]
    evidence = {"region": found.region, "endpoints": listing, "fetched": found.fetched, "rejected": found.rejected}
    names = ", ".join(e.target for e in found.endpoints)
    region = f" (region {found.region})" if found.region else ""
    url = ctx.server_url
    command = f"curl -sS {url}{contract.ENDPOINTS}" if url else None
    if not found.endpoints:
        if found.error:
            return fail(found.error, "pass --url https://HOST[:PORT] of the Outpost server", evidence=evidence)
        return skip("no server to check: not registered and no --url or --azure-region given", evidence=evidence)
    if url and not found.fetched:
        return warn(
            f"{found.error}; checking {names} only",
            "fix the connectivity problems below first; the server's full endpoint list is then checked too",
            evidence=evidence,
            command=command,
        )
    if found.rejected:
        return warn(
            f"{_count(len(found.endpoints), 'endpoint')}{region}; "
            f"ignored {_count(len(found.rejected), 'malformed entry')}",
            "fix the server's endpoint configuration: each entry needs a host name and a port 1-65535",
            evidence=evidence,
            command=command,
        )
    return ok(f"{_count(len(found.endpoints), 'endpoint')}{region}: {names}", evidence=evidence, command=command)


def _count(n: int, noun: str) -> str:
    """'1 endpoint', '2 endpoints', '1 malformed entry', '3 malformed entries'."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


CHECKS = [CheckSpec("endpoints.list", "Required endpoints", endpoint_list)]
