"""Facts several checks share, each computed once per run on first use (thread-safe).

A check asks the context ("how does this name resolve?", "open a path to this endpoint"),
so `--check tls` works alone: whatever it depends on is computed quietly on the way.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from diagnostics import dnsutil, proxies, sockets
from diagnostics.options import Options
from outpost import __version__, contract
from outpost.settings import default_state_dir
from outpost.state import AgentState, Registration

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    purpose: str
    source: str  # "server URL", "endpoints document", "azure"
    required: bool = True
    expect: str | None = None  # "public" / "private" when the answer kind is known in advance
    tls: bool = True  # False for a plain-http:// endpoint: the TLS and certificate checks then skip

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class RegistrationInfo:
    registration: Registration | None = None
    error: str | None = None  # why it could not be read
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class EndpointList:
    endpoints: list[Endpoint]
    region: str | None = None
    fetched: bool = False
    error: str | None = None  # why the server's endpoints document could not be used
    rejected: list[str] = field(default_factory=list)  # malformed entries in the document


@dataclass
class HttpProbe:
    method: str
    url: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    ms: float = 0.0
    sent_at: float = 0.0  # wall clock, for clock skew
    received_at: float = 0.0
    error: str | None = None
    via: str = "direct"

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def is_outpost(self) -> bool:
        return contract.SERVICE_HEADER.lower() in self.headers

    def server_date(self) -> float | None:
        try:
            return parsedate_to_datetime(self.headers["date"]).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            return None


@dataclass
class Path_:
    """How bytes reach an endpoint: a connected socket, or why there is none."""

    sock: Any  # socket.socket | None
    via: str  # "direct 127.0.0.1" or "proxy http://p:3128"
    problem: str | None = None  # one line when no socket
    kind: str = ""  # the sockets.Connect kind, or "proxy"
    ms: float = 0.0


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a server URL; ValueError when it is not http(s)://host[:port]."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s):// URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port


class Context:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.state_dir = Path(options.state_dir) if options.state_dir else default_state_dir()
        self.state = AgentState(self.state_dir)
        self._memo: dict[Any, Any] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._guard = threading.Lock()
        self._local = threading.local()

    # -- bounded time: each check unit sets a deadline; network steps take what is left
    def set_deadline(self, deadline: float) -> None:
        self._local.deadline = deadline

    def remaining(self) -> float:
        deadline = getattr(self._local, "deadline", time.monotonic() + self.options.timeout)
        return max(0.05, deadline - time.monotonic())

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        with self._guard:
            if key in self._memo:
                return self._memo[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                value = compute()
                with self._guard:
                    self._memo[key] = value
            return self._memo[key]

    # -- registration and server
    def registration(self) -> RegistrationInfo:
        return self.memo("registration", self._load_registration)

    def _load_registration(self) -> RegistrationInfo:
        path = self.state.registration_path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return RegistrationInfo(error=f"no {path.name} in {self.state_dir}")
        except PermissionError:
            return RegistrationInfo(error=f"cannot read {path}: permission denied")
        except (OSError, ValueError) as exc:
            return RegistrationInfo(error=f"{path} is not valid JSON: {exc}")
        if not isinstance(raw, dict):
            return RegistrationInfo(error=f"{path} is not a JSON object")
        fields = {k: raw.get(k) for k in Registration.__dataclass_fields__}
        reg = Registration(**fields)  # type: ignore[arg-type]
        return RegistrationInfo(registration=reg, raw=raw)

    @property
    def server_url(self) -> str | None:
        if self.options.url:
            return self.options.url.rstrip("/")
        reg = self.registration().registration
        return reg.url.rstrip("/") if reg and isinstance(reg.url, str) and reg.url else None

    @property
    def ca_file(self) -> str | None:
        if self.options.ca_file:
            return self.options.ca_file
        reg = self.registration().registration
        # A registration's CA belongs to the registered server, not to another --url.
        if reg and reg.ca_file and (not self.options.url or same_server(self.options.url, reg.url or "")):
            return reg.ca_file
        return None

    def status(self) -> dict[str, Any]:
        return self.memo("status", self.state.read_status)

    def agent_pid(self) -> int | None:
        pid = self.status().get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    # -- endpoints
    def endpoints(self) -> EndpointList:
        return self.memo("endpoints", self._endpoints)

    def _endpoints(self) -> EndpointList:
        from diagnostics.endpoints_doc import collect

        return collect(self)

    # -- DNS
    def system_dns(self, host: str) -> dnsutil.DnsAnswer:
        deadline = time.monotonic() + self.remaining()
        opts = self.options
        return self.memo(
            ("dns", host), lambda: dnsutil.resolve_system(host, opts.resolv_conf, opts.hosts_file, deadline)
        )

    def addresses(self, host: str) -> tuple[list[str], str | None]:
        """Addresses to connect to, or (None, why not)."""
        if dnsutil.is_ip(host):
            return [host.strip("[]")], None
        answer = self.system_dns(host)
        if not answer.ok:
            return [], f"{host} did not resolve ({answer.error_kind}; see dns.resolve)"
        return answer.addresses, None

    # -- proxy
    def proxy_settings(self) -> proxies.ProxySettings:
        return self.memo("proxy", self._proxy_settings)

    def _proxy_settings(self) -> proxies.ProxySettings:
        if self.options.proxy is not None:
            return proxies.from_option(self.options.proxy)
        pid = self.agent_pid()
        env = proxies.process_environment(pid) if pid and pid != os.getpid() else None
        if env is not None:
            return proxies.from_environment(env, f"agent process {pid}")
        return proxies.from_environment(os.environ, "this shell's environment")

    def proxied(self, ep: Endpoint) -> bool:
        return self.proxy_settings().applies_to(ep.host, ep.port)

    # -- connection paths
    def open_direct(self, ep: Endpoint) -> Path_:
        addresses, why = self.addresses(ep.host)
        if not addresses:
            return Path_(None, "direct", why, "dns")
        last: sockets.Connect | None = None
        for address in addresses[:4]:
            last = sockets.connect(address, ep.port, self.remaining())
            if last.ok:
                return Path_(last.sock, f"direct {address}", None, "ok", last.ms)
        assert last is not None
        return Path_(None, f"direct {last.address}", f"{last.kind}: {last.error}", last.kind, last.ms)

    def open_proxied(self, ep: Endpoint) -> tuple[Path_, sockets.Tunnel | None]:
        proxy = self.proxy_settings().proxy
        assert proxy is not None
        addresses, why = self.addresses(proxy.host)
        if not addresses:
            return Path_(None, f"proxy {proxy.display}", f"proxy host {why}", "dns"), None
        tunnel = sockets.open_tunnel(proxy, addresses[0], ep.host, ep.port, self.remaining())
        via = f"proxy {proxy.display}"
        if tunnel.ok:
            return Path_(tunnel.sock, via, None, "ok", tunnel.connect.ms + tunnel.ms), tunnel
        if not tunnel.connect.ok:
            problem = f"proxy unreachable: {tunnel.connect.kind}: {tunnel.connect.error}"
            return Path_(None, via, problem, tunnel.connect.kind), tunnel
        problem = tunnel.error or f"proxy answered CONNECT with {tunnel.status} {tunnel.reason}"
        return Path_(None, via, problem, "proxy"), tunnel

    def open_path(self, ep: Endpoint) -> Path_:
        """The path the agent itself would take: through the proxy when one applies."""
        if self.proxied(ep):
            return self.open_proxied(ep)[0]
        return self.open_direct(ep)

    # -- TLS
    def tls(self, ep: Endpoint) -> Any:
        from diagnostics.tlsprobe import probe

        return self.memo(("tls", ep.target), lambda: probe(self, ep))

    # -- HTTP to the Outpost server
    def http_client(self, token: str | None = None) -> httpx.Client:
        from outpost.http import ssl_context

        url = self.server_url
        assert url
        _, host, port = split_url(url)
        settings = self.proxy_settings()
        proxy = (
            proxies.proxy_url_with_auth(settings.proxy) if settings.proxy and settings.applies_to(host, port) else None
        )
        headers = {"User-Agent": f"outpost-diagnose/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(
            base_url=url,
            headers=headers,
            timeout=self.remaining(),
            verify=ssl_context(self.ca_file),
            proxy=proxy,
            trust_env=False,
        )

    def http(self, method: str, path: str, token: str | None = None) -> HttpProbe:
        key = ("http", method, path, bool(token))
        return self.memo(key, lambda: self._http(method, path, token))

    def _http(self, method: str, path: str, token: str | None) -> HttpProbe:
        url = self.server_url or ""
        probe = HttpProbe(method, url + path)
        try:
            _, host, port = split_url(url)
            probe.via = "proxy" if self.proxy_settings().applies_to(host, port) else "direct"
            with self.http_client(token) as client:
                probe.sent_at = time.time()
                start = time.monotonic()
                response = client.request(method, path, timeout=self.remaining())
                probe.ms = (time.monotonic() - start) * 1000
                probe.received_at = time.time()
        except httpx.HTTPError as exc:
            probe.error = describe_http_error(exc)
            return probe
        except (OSError, ValueError) as exc:  # unreadable CA file, bad URL
            probe.error = str(exc)
            return probe
        probe.status = response.status_code
        probe.headers = {k.lower(): v for k, v in response.headers.items()}
        probe.body = response.text[:4096]
        return probe


def describe_http_error(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within the timeout ({type(exc).__name__})"
    if isinstance(exc, httpx.ProxyError):
        return f"proxy refused: {text}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS verification failed: {text.split('CERTIFICATE_VERIFY_FAILED')[-1].strip(' ]()')}"
    return f"{type(exc).__name__}: {text}"


def same_server(a: str, b: str) -> bool:
    try:
        sa, sb = split_url(a), split_url(b)
    except ValueError:
        return a.rstrip("/") == b.rstrip("/")
    return (sa[0], sa[1].lower(), sa[2]) == (sb[0], sb[1].lower(), sb[2])
