"""DNS: every required name, per resolver, with latency and private/public sanity."""

from __future__ import annotations

import time

from diagnostics import dnsutil
from diagnostics.checks import CheckSpec
from diagnostics.context import Context, Endpoint
from diagnostics.dnsutil import DnsAnswer, address_kind
from diagnostics.model import Outcome, Status, fail, ok, skip, warn

PRIVATE_KINDS = {"private", "loopback", "link-local", "shared"}

_FAIL_HINTS = {
    "nxdomain": "the name does not exist for this resolver: check the spelling and the DNS zone; "
    "for Private Link, add the record to the private zone or a conditional forwarder",
    "servfail": "the resolver could not reach the authoritative servers (DNSSEC failure, broken forwarder): "
    "check the resolver's forwarders",
    "refused": "the resolver refuses this machine: allow it in the resolver's ACL or use another resolver",
    "timeout": "no DNS answer: check that this machine can reach its resolver on UDP/TCP 53",
    "noanswer": "the name has no address records: add an A/AAAA record (or a CNAME to one)",
    "noresolver": "configure a nameserver in /etc/resolv.conf",
    "error": "check the resolver configuration in /etc/resolv.conf",
}


def _kind(answer: DnsAnswer) -> str:
    kinds = {address_kind(a) for a in answer.addresses}
    if kinds <= PRIVATE_KINDS:
        return "private"
    if kinds & PRIVATE_KINDS:
        return "mixed"
    return "public"


def _describe(answer: DnsAnswer) -> str:
    return ", ".join(answer.addresses[:4]) + (" ..." if len(answer.addresses) > 4 else "")


def resolve(ctx: Context, ep: Endpoint) -> Outcome:
    host = ep.host
    if dnsutil.is_ip(host):
        return skip(f"{host} is an IP address; no DNS lookup needed")
    system = ctx.system_dns(host)
    others: list[DnsAnswer] = []
    for server in ctx.options.dns_servers:
        deadline = time.monotonic() + ctx.remaining()
        others.append(dnsutil.resolve_with(host, server, deadline))
    evidence = {"system": system.as_evidence(), "others": [a.as_evidence() for a in others]}
    command = f"dig +short A {host}" + "".join(f" ; dig +short A {host} @{s}" for s in ctx.options.dns_servers)
    outcome = _judge(ctx, ep, system, others)
    outcome.evidence, outcome.command = evidence, command
    if outcome.status is Status.FAIL and not ep.required:
        outcome.status = Status.WARN
        outcome.finding += " (optional endpoint)"
    return outcome


def _judge(ctx: Context, ep: Endpoint, system: DnsAnswer, others: list[DnsAnswer]) -> Outcome:
    host = ep.host
    t = ctx.options.thresholds
    if not system.ok:
        resolved_elsewhere = [a for a in others if a.ok]
        also = (
            f"; {resolved_elsewhere[0].resolver} answers {_describe(resolved_elsewhere[0])}"
            if resolved_elsewhere
            else ""
        )
        finding = f"{host}: {system.error} (resolver {system.resolver}){also}"
        hint = _FAIL_HINTS.get(system.error_kind or "error", _FAIL_HINTS["error"])
        if resolved_elsewhere:
            hint = (
                f"make the system resolver use {resolved_elsewhere[0].resolver} (or forward this zone to it); " + hint
            )
        if ctx.proxied(ep):
            return warn(
                finding + "; the agent reaches it through the proxy, which resolves it itself",
                "nothing to do if proxy.connect passes",
            )
        return fail(finding, hint)
    base = f"{host} -> {_describe(system)} via {system.resolver} in {system.ms:.0f} ms"
    for other in others:
        if not other.ok:
            return warn(
                f"{base}; but {other.resolver}: {other.error}",
                f"the resolvers disagree: {_FAIL_HINTS.get(other.error_kind or 'error', '')}",
            )
        if _kind(other) != _kind(system):
            return warn(
                f"split-horizon answers for {host}: {system.resolver} -> {_kind(system)} {_describe(system)}, "
                f"{other.resolver} -> {_kind(other)} {_describe(other)}",
                "make sure the agent uses the resolver that gives the intended answer "
                "(private for Private Link / internal servers, public otherwise)",
            )
    kind = _kind(system)
    privatelink = any(".privatelink." in c for c in system.cnames)
    if privatelink and kind != "private":
        return warn(
            f"{host} is CNAMEd to {system.cnames[-1]} (Private Link) but resolves to public {_describe(system)}",
            "link the private DNS zone (e.g. privatelink.azure-automation.net) to this network, or add a "
            "conditional forwarder for it on your DNS server to the Azure resolver 168.63.129.16",
        )
    if ep.expect == "public" and kind != "public":
        return warn(
            f"{host} resolves to {kind} {_describe(system)} where a public address is expected",
            "look for an /etc/hosts entry, a split-horizon zone or a stale private record overriding this name",
        )
    if ep.expect == "private" and kind != "private":
        return warn(
            f"{host} resolves to public {_describe(system)} where a private address is expected",
            "the private DNS zone is not used by this resolver: forward the zone to the private resolver",
        )
    if kind == "mixed":
        return warn(
            f"{host} resolves to both private and public addresses: {_describe(system)}",
            "a name should be private or public, not both: remove the stray record",
        )
    slowest = max([system, *others], key=lambda a: a.ms)
    if slowest.ms > t.dns_slow_s * 1000:
        return warn(
            f"{base}; slow: {slowest.resolver} took {slowest.ms:.0f} ms",
            "a slow resolver delays every connection: use a closer or caching resolver (systemd-resolved, nscd)",
        )
    agree = "; other resolvers agree" if others else ""
    return ok(base + agree)


CHECKS = [CheckSpec("dns.resolve", "DNS resolution", resolve, per_endpoint=True)]
