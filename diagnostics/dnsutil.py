"""Name resolution the way diagnose needs it: per resolver, with rcode, latency and CNAMEs.

"System" means what the agent's resolver library sees: the hosts file first, then the
nameservers of resolv.conf (queried with dnspython so NXDOMAIN, SERVFAIL and timeouts stay
distinguishable, which getaddrinfo hides).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import dns.resolver


@dataclass
class DnsAnswer:
    resolver: str  # "system (10.0.0.2)", "/etc/hosts", "127.0.0.1:5353"
    addresses: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    error_kind: str | None = None  # nxdomain | servfail | refused | timeout | noanswer | noresolver | error
    error: str = ""
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_kind is None and bool(self.addresses)

    def as_evidence(self) -> dict[str, Any]:
        return {
            "resolver": self.resolver,
            "addresses": self.addresses,
            "kinds": sorted({address_kind(a) for a in self.addresses}),
            "cnames": self.cnames,
            "error": self.error_kind,
            "ms": round(self.ms, 1),
        }


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def address_kind(address: str) -> str:
    """public | private | loopback | link-local | shared (CGNAT) | reserved."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "shared"
    if ip.is_private:
        return "private"
    if ip.is_global:
        return "public"
    return "reserved"


def parse_server(text: str) -> tuple[str, int]:
    """'10.0.0.2', '10.0.0.2:5353', '[::1]:5353' or '::1' -> (ip, port); ValueError otherwise."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def hosts_lookup(hosts_file: Path, name: str) -> list[str]:
    try:
        lines = hosts_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name.lower() in (f.lower() for f in fields[1:]) and is_ip(fields[0]):
            found.append(fields[0])
    return found


def _query(resolver: dns.resolver.Resolver, name: str, deadline: float) -> DnsAnswer:
    label = ", ".join(f"{ns}" if resolver.port == 53 else f"{ns}:{resolver.port}" for ns in resolver.nameservers)
    answer = DnsAnswer(resolver=label)
    start = time.monotonic()
    for rdtype in ("A", "AAAA"):
        resolver.lifetime = max(0.05, deadline - time.monotonic())
        try:
            result = resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            answer.error_kind, answer.error = "nxdomain", f"NXDOMAIN: {name} does not exist"
            break
        except dns.resolver.NoNameservers as exc:
            answer.error_kind, answer.error = _no_nameservers(exc)
            break
        except dns.exception.Timeout:
            answer.error_kind = "timeout"
            answer.error = f"no answer within {time.monotonic() - start:.1f}s"
            break
        except dns.exception.DNSException as exc:
            answer.error_kind, answer.error = "error", f"{type(exc).__name__}: {exc}"
            break
        if rdtype == "A":
            answer.ms = (time.monotonic() - start) * 1000
        for rrset in result.chaining_result.cnames:
            for rr in rrset:
                target = str(rr.target).rstrip(".")
                if target not in answer.cnames:
                    answer.cnames.append(target)
        if result.rrset is not None:
            answer.addresses.extend(rr.address for rr in result.rrset)
    if not answer.ms:
        answer.ms = (time.monotonic() - start) * 1000
    if answer.error_kind is None and not answer.addresses:
        answer.error_kind, answer.error = "noanswer", f"{name} exists but has no A or AAAA record"
    return answer


def _no_nameservers(exc: dns.resolver.NoNameservers) -> tuple[str, str]:
    rcodes = set()
    for error in exc.kwargs.get("errors", []):
        message = error[-1] if isinstance(error, tuple) else None
        if isinstance(message, dns.message.Message):
            rcodes.add(message.rcode())
    if dns.rcode.SERVFAIL in rcodes:
        return "servfail", "SERVFAIL: the resolver failed to get an answer from the authoritative servers"
    if dns.rcode.REFUSED in rcodes:
        return "refused", "REFUSED: the resolver refuses to answer this client"
    return "error", f"no nameserver answered: {exc}"


def resolve_system(name: str, resolv_conf: Path, hosts_file: Path, deadline: float) -> DnsAnswer:
    start = time.monotonic()
    hosts = hosts_lookup(hosts_file, name)
    if hosts:
        return DnsAnswer(resolver=str(hosts_file), addresses=hosts, ms=(time.monotonic() - start) * 1000)
    try:
        resolver = dns.resolver.Resolver(filename=str(resolv_conf))
    except (dns.resolver.NoResolverConfiguration, OSError) as exc:
        return DnsAnswer(
            resolver=str(resolv_conf), error_kind="noresolver", error=f"no usable nameserver in {resolv_conf}: {exc}"
        )
    answer = _query(resolver, name, deadline)
    answer.resolver = f"system ({answer.resolver} from {resolv_conf})"
    return answer


def resolve_with(name: str, server: str, deadline: float) -> DnsAnswer:
    ip, port = parse_server(server)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [ip]
    resolver.port = port
    return _query(resolver, name, deadline)
