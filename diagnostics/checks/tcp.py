"""TCP connect to each endpoint's port, on the path the agent uses (direct or to the proxy)."""

from __future__ import annotations

from diagnostics import sockets
from diagnostics.checks import CheckSpec
from diagnostics.context import Context, Endpoint
from diagnostics.model import Outcome, fail, ok, skip, warn

HINTS = {
    "refused": "nothing accepts connections on {port} there: check that the service runs and listens on that "
    "address, and that no firewall rejects the port",
    "timeout": "packets are silently dropped: open outbound TCP {port} in the host and network firewalls "
    "(or use the proxy your network requires)",
    "reset": "a firewall or IPS resets the connection: allow outbound TCP {port} to this host",
    "closed": "the server (or a middlebox) accepts and immediately closes: check its logs and connection limits",
    "unreachable": "no route to the host: check routing, VPN and the default gateway",
    "error": "check the network configuration",
}


def _failure(kind: str, finding: str, port: int, required: bool) -> Outcome:
    hint = HINTS.get(kind, HINTS["error"]).format(port=port)
    return fail(finding, hint) if required else warn(finding + " (optional endpoint)", hint)


def connect(ctx: Context, ep: Endpoint) -> Outcome:
    settings = ctx.proxy_settings()
    if ctx.proxied(ep) and settings.proxy is not None:
        proxy = settings.proxy
        addresses, why = ctx.addresses(proxy.host)
        command = f"nc -vz {proxy.host} {proxy.port}"
        if not addresses:
            return fail(f"proxy host {why}", "fix the proxy host name in HTTPS_PROXY", command=command)
        result = sockets.connect(addresses[0], proxy.port, ctx.remaining())
        if result.sock:
            result.sock.close()
        evidence = {"path": "proxy", "proxy": proxy.display, "address": result.address, "ms": round(result.ms, 1)}
        if not result.ok:
            return _failure(
                result.kind,
                f"proxy {proxy.address}: {result.kind} ({result.error}) after {result.ms:.0f} ms",
                proxy.port,
                True,
            )
        return ok(
            f"proxy {proxy.address} accepts in {result.ms:.0f} ms (the agent reaches {ep.target} through it)",
            evidence=evidence,
            command=command,
        )
    addresses, why = ctx.addresses(ep.host)
    command = f"nc -vz {ep.host} {ep.port}"
    if not addresses:
        return skip(f"not tried: {why}", command=command)
    attempts = []
    for address in addresses[:4]:
        result = sockets.connect(address, ep.port, ctx.remaining())
        if result.sock:
            result.sock.close()
        attempts.append({"address": address, "result": result.kind, "ms": round(result.ms, 1), "error": result.error})
        if result.ok:
            evidence = {"path": "direct", "attempts": attempts}
            if result.ms > ctx.options.thresholds.tcp_slow_s * 1000:
                return warn(
                    f"connected to {address}:{ep.port} but slowly ({result.ms:.0f} ms)",
                    "high latency to the server: check the network path (VPN, congested links)",
                    evidence=evidence,
                    command=command,
                )
            return ok(f"connected to {address}:{ep.port} in {result.ms:.1f} ms", evidence=evidence, command=command)
    last = attempts[-1]
    out = _failure(
        last["result"],
        f"{last['address']}:{ep.port}: connection {_verb(last['result'])} after {last['ms']:.0f} ms",
        ep.port,
        ep.required,
    )
    out.evidence, out.command = {"path": "direct", "attempts": attempts}, command
    return out


def _verb(kind: str) -> str:
    return {
        "refused": "refused",
        "timeout": "timed out",
        "reset": "reset by peer",
        "closed": "closed by peer right after connect",
        "unreachable": "failed: network unreachable",
    }.get(kind, "failed")


CHECKS = [CheckSpec("tcp.connect", "TCP connect", connect, per_endpoint=True)]
