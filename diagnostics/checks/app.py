"""HTTPS application check: the answer comes from Outpost (not a proxy's page); POST allowed."""

from __future__ import annotations

from diagnostics.checks import CheckSpec
from diagnostics.context import Context, HttpProbe
from diagnostics.model import Outcome, fail, ok, skip
from outpost import __version__, contract


def _snippet(probe: HttpProbe) -> str:
    text = " ".join(probe.body.split())[:100]
    return f"{probe.headers.get('content-type', 'no content-type')}, '{text}'" if text else "empty body"


def _not_outpost(probe: HttpProbe) -> Outcome:
    server = probe.headers.get("server") or probe.headers.get("via") or "unknown server"
    return fail(
        f"{probe.url} answered HTTP {probe.status} from {server} without the {contract.SERVICE_HEADER} header "
        f"({_snippet(probe)}): not Outpost, probably a proxy error or captive page",
        "check the URL and port; if a proxy or portal answers, allow the server in its policy or add it to NO_PROXY",
        evidence={"status": probe.status, "server": server, "via": probe.via, "body": probe.body[:300]},
    )


def health(ctx: Context) -> Outcome:
    if not ctx.server_url:
        return skip("no Outpost server to check (no registration, no --url)")
    probe = ctx.http("GET", contract.HEALTH)
    command = f"curl -sSi {probe.url}"
    if probe.error:
        return fail(
            f"GET {probe.url} failed: {probe.error}",
            "see the dns/tcp/proxy/tls/certificate checks above",
            evidence={"via": probe.via},
            command=command,
        )
    if not probe.is_outpost:
        out = _not_outpost(probe)
        out.command = command
        return out
    body = probe.json()
    version = probe.headers.get(contract.SERVICE_HEADER.lower())
    evidence = {
        "status": probe.status,
        "version": version,
        "agent_version": __version__,
        "ms": round(probe.ms, 1),
        "via": probe.via,
    }
    if probe.status != 200 or not isinstance(body, dict) or body.get("service") != "outpost":
        return fail(
            f"Outpost answered HTTP {probe.status} to GET {contract.HEALTH} ({_snippet(probe)})",
            "the server is up but unhealthy: check its logs (journalctl -u outpost-server)",
            evidence=evidence,
            command=command,
        )
    return ok(f"Outpost {version} answered in {probe.ms:.0f} ms ({probe.via})", evidence=evidence, command=command)


def post(ctx: Context) -> Outcome:
    if not ctx.server_url:
        return skip("no Outpost server to check (no registration, no --url)")
    probe = ctx.http("POST", contract.HEALTH)
    command = f"curl -sSi -X POST {probe.url}"
    if probe.error:
        return skip(f"not tried: {probe.error} (see app.health)", command=command)
    if not probe.is_outpost:
        out = _not_outpost(probe)
        out.finding = "POST: " + out.finding
        out.remediation = "a proxy or WAF blocks POST (the agent needs it to poll and report): allow POST to the server"
        out.command = command
        return out
    if probe.status >= 400:
        return fail(
            f"POST {contract.HEALTH} refused with HTTP {probe.status}",
            "the agent needs POST for polls and events: allow it on every hop",
            command=command,
        )
    return ok(f"POST allowed (HTTP {probe.status} in {probe.ms:.0f} ms)", command=command)


CHECKS = [
    CheckSpec("app.health", "HTTPS application answer", health),
    CheckSpec("app.post", "POST allowed", post),
]
