"""Proxy: discovery (agent vs shell), CONNECT through it, and direct vs proxied paths."""

from __future__ import annotations

import os

from diagnostics import proxies
from diagnostics.checks import CheckSpec
from diagnostics.context import Context, Endpoint
from diagnostics.model import Outcome, fail, ok, skip, warn


def discover(ctx: Context) -> Outcome:
    settings = ctx.proxy_settings()
    evidence = {
        "source": settings.source,
        "proxy": settings.proxy.display if settings.proxy else None,
        "no_proxy": settings.no_proxy,
        "variables": settings.seen,
    }
    if settings.error:
        return fail(
            f"unusable proxy setting: {settings.error}",
            "set HTTPS_PROXY=http://[user:password@]host:port in the agent's environment "
            "(systemd: Environment= in the unit or an EnvironmentFile)",
            evidence=evidence,
        )
    described = f"{settings.proxy.display} ({settings.source})" if settings.proxy else f"none ({settings.source})"
    if settings.source.startswith("agent process"):
        shell = proxies.from_environment(os.environ, "this shell")
        shell_proxy = shell.proxy.display if shell.proxy else None
        if shell_proxy != evidence["proxy"]:
            evidence["shell_proxy"] = shell_proxy
            return warn(
                f"the agent uses proxy {evidence['proxy'] or 'none'} but this shell has {shell_proxy or 'none'}; "
                "diagnose follows the agent",
                "tools run from this shell (curl) take a different path than the agent; align them or pass --proxy",
                evidence=evidence,
            )
    if settings.notes:
        return warn(
            f"proxy {described}; " + "; ".join(settings.notes),
            "fix the proxy variables in the agent's environment",
            evidence=evidence,
        )
    if settings.proxy and settings.proxy.scheme.startswith("socks"):
        return warn(
            f"proxy {described} is SOCKS: CONNECT is not tested",
            "the agent's HTTP client needs the socksio package for SOCKS proxies",
            evidence=evidence,
        )
    endpoints = ctx.endpoints().endpoints
    bypassed = [e.target for e in endpoints if settings.proxy and not settings.applies_to(e.host, e.port)]
    if bypassed:
        evidence["bypassed"] = bypassed
    suffix = f"; NO_PROXY bypasses {', '.join(bypassed)}" if bypassed else ""
    return ok(f"proxy: {described}{suffix}", evidence=evidence)


def _skip_reason(ctx: Context, ep: Endpoint) -> str | None:
    settings = ctx.proxy_settings()
    if settings.proxy is None:
        return "no proxy configured; the agent connects directly"
    if settings.proxy.scheme.startswith("socks"):
        return "SOCKS proxy: not tested"
    if not settings.applies_to(ep.host, ep.port):
        return f"{ep.host} is bypassed by NO_PROXY; the agent connects directly"
    return None


def connect(ctx: Context, ep: Endpoint) -> Outcome:
    reason = _skip_reason(ctx, ep)
    if reason:
        return skip(reason)
    proxy = ctx.proxy_settings().proxy
    assert proxy is not None
    path, tunnel = ctx.open_proxied(ep)
    if path.sock is not None:
        path.sock.close()
    command = f"curl -sv -o /dev/null -x {proxy.display} https://{ep.target}/"
    evidence = {"proxy": proxy.display}
    if tunnel is not None:
        evidence.update(
            status=tunnel.status, reason=tunnel.reason, headers=_safe_headers(tunnel.headers), ms=round(tunnel.ms, 1)
        )
    if path.sock is not None:
        return ok(
            f"CONNECT {ep.target} via {proxy.address} accepted in {path.ms:.0f} ms", evidence=evidence, command=command
        )
    if tunnel is None or not tunnel.connect.ok:
        return fail(
            f"{path.problem}", "check the proxy address and that the proxy runs", evidence=evidence, command=command
        )
    if tunnel.status in (407, 401):  # some proxies (tinyproxy) answer bad credentials with 401
        challenge = tunnel.headers.get("proxy-authenticate", "no challenge")
        if proxy.username is None:
            return fail(
                f"proxy {proxy.address} requires authentication ({tunnel.status}, {challenge})",
                "put the credentials in the proxy URL: HTTPS_PROXY=http://USER:PASSWORD@host:port "
                "(URL-encode special characters) in the agent's environment",
                evidence=evidence,
                command=command,
            )
        return fail(
            f"proxy {proxy.address} rejected the credentials of user {proxy.username} ({tunnel.status})",
            "check the proxy user name and password in HTTPS_PROXY (URL-encode special characters)",
            evidence=evidence,
            command=command,
        )
    if tunnel.status == 403:
        return fail(
            f"proxy {proxy.address} refuses CONNECT to {ep.target} by policy (403 {tunnel.reason})",
            f"ask the proxy administrators to allow CONNECT to {ep.host} on port {ep.port} "
            "(tinyproxy: ConnectPort/Filter; squid: http_access / SSL_ports), or add it to NO_PROXY if direct works",
            evidence=evidence,
            command=command,
        )
    if tunnel.status:
        return fail(
            f"proxy {proxy.address} answered CONNECT {ep.target} with {tunnel.status} {tunnel.reason}",
            "5xx: the proxy cannot reach the target itself (its DNS or firewall); "
            "other codes: check the proxy's logs for this request",
            evidence=evidence,
            command=command,
        )
    return fail(
        f"proxy {proxy.address}: {tunnel.error}",
        "check that it is an HTTP proxy supporting CONNECT",
        evidence=evidence,
        command=command,
    )


def _safe_headers(headers: dict[str, str]) -> dict[str, str]:
    keep = ("proxy-authenticate", "server", "via", "x-squid-error", "content-type")
    return {k: v for k, v in headers.items() if k in keep}


def paths(ctx: Context, ep: Endpoint) -> Outcome:
    settings = ctx.proxy_settings()
    if settings.proxy is None:
        return skip("no proxy configured; only the direct path exists")
    if settings.proxy.scheme.startswith("socks"):
        return skip("SOCKS proxy: not compared")
    direct = ctx.open_direct(ep)
    proxied, _ = ctx.open_proxied(ep)
    for path in (direct, proxied):
        if path.sock is not None:
            path.sock.close()
    uses_proxy = settings.applies_to(ep.host, ep.port)
    evidence = {
        "agent_path": "proxy" if uses_proxy else "direct",
        "direct": direct.problem or f"ok in {direct.ms:.0f} ms",
        "proxy": proxied.problem or f"ok in {proxied.ms:.0f} ms",
    }
    d_ok, p_ok = direct.sock is not None, proxied.sock is not None
    agent_ok = p_ok if uses_proxy else d_ok
    summary = f"direct: {evidence['direct']}; via proxy: {evidence['proxy']}"
    if d_ok and p_ok:
        return ok(f"both paths work ({summary}); the agent uses the {evidence['agent_path']} path", evidence=evidence)
    if agent_ok:
        return ok(f"the agent's {evidence['agent_path']} path works ({summary})", evidence=evidence)
    if p_ok:
        return warn(
            f"{ep.host} is bypassed by NO_PROXY but only the proxy reaches it ({summary})",
            f"remove {ep.host} from NO_PROXY in the agent's environment",
            evidence=evidence,
        )
    if d_ok:
        return warn(
            f"only the direct path reaches {ep.target} but the agent uses the proxy ({summary})",
            f"add {ep.host} to NO_PROXY in the agent's environment, or fix the proxy (see proxy.connect)",
            evidence=evidence,
        )
    return fail(
        f"neither path reaches {ep.target} ({summary})",
        "fix the proxy (see proxy.connect) or open the direct route (see tcp.connect)",
        evidence=evidence,
    )


CHECKS = [
    CheckSpec("proxy.discover", "Proxy discovery", discover),
    CheckSpec("proxy.connect", "Proxy CONNECT", connect, per_endpoint=True),
    CheckSpec("proxy.paths", "Direct vs proxied path", paths, per_endpoint=True),
]
