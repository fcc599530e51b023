"""Which proxy the agent uses for a given endpoint, decided the way httpx decides it.

The agent (httpx, ``trust_env``) reads ``https_proxy``/``HTTPS_PROXY`` (then ``all_proxy``)
and ``no_proxy``/``NO_PROXY``, lowercase first. Diagnose prefers the running agent's own
environment (``/proc/PID/environ``) over the caller's shell, because a systemd unit often
sets a proxy the operator's shell doesn't have, or the reverse.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

DIRECT_WORDS = ("direct", "none", "")


@dataclass(frozen=True)
class ProxyURL:
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def display(self) -> str:
        """The URL with any password masked: safe to print."""
        auth = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_proxy(text: str) -> ProxyURL:
    """Parse a proxy URL as httpx would ("host:port" means http://host:port); ValueError if bad."""
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
        raise ValueError(f"not a proxy URL: {_mask(text)!r} (expected http://host:port)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 1080 if parts.scheme.startswith("socks") else 80)
    except ValueError as exc:
        raise ValueError(f"bad port in proxy URL {_mask(text)!r}: {exc}") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return ProxyURL(parts.scheme, parts.hostname, port, user, password)


def _mask(text: str) -> str:
    parts = urlsplit(text)
    if parts.password:
        return text.replace(f":{parts.password}@", ":***@")
    return text


@dataclass
class ProxySettings:
    proxy: ProxyURL | None
    source: str  # where the proxy setting came from
    no_proxy: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # suspicious settings, each one line
    seen: dict[str, str] = field(default_factory=dict)  # variable -> masked value
    error: str | None = None  # an unparseable proxy URL

    def applies_to(self, host: str, port: int) -> bool:
        return self.proxy is not None and not bypassed(self.no_proxy, host, port)


def _pick(env: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    """Lowercase wins, as in urllib/httpx; returns (value, variable name)."""
    for key in (name.lower(), name.upper()):
        value = env.get(key)
        if value:
            return value, key
    return None, None


def from_environment(env: Mapping[str, str], label: str) -> ProxySettings:
    seen = {k: _mask(v) for k, v in env.items() if k.lower() in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")}
    notes = []
    for name in ("https_proxy", "no_proxy"):
        low, up = env.get(name), env.get(name.upper())
        if low and up and low != up:
            notes.append(f"{name} and {name.upper()} differ in {label}; the agent uses {name} ({_mask(low)})")
    value, var = _pick(env, "https_proxy")
    if not value:
        value, var = _pick(env, "all_proxy")
    http_value, http_var = _pick(env, "http_proxy")
    if not value and http_value:
        notes.append(
            f"{http_var} is set in {label} but only applies to http:// URLs; the agent talks https://, "
            f"so set HTTPS_PROXY={_mask(http_value)} if it must use that proxy"
        )
    no_proxy_value, _ = _pick(env, "no_proxy")
    no_proxy = [h.strip() for h in (no_proxy_value or "").split(",") if h.strip()]
    settings = ProxySettings(None, f"{label}: no proxy variables", no_proxy, notes, seen)
    if value:
        settings.source = f"{label}: {var}"
        try:
            settings.proxy = parse_proxy(value)
        except ValueError as exc:
            settings.error = f"{var} in {label}: {exc}"
    return settings


def from_option(value: str) -> ProxySettings:
    if value.strip().lower() in DIRECT_WORDS:
        return ProxySettings(None, "--proxy direct")
    settings = ProxySettings(None, "--proxy")
    try:
        settings.proxy = parse_proxy(value)
    except ValueError as exc:
        settings.error = f"--proxy: {exc}"
    return settings


def process_environment(pid: int) -> dict[str, str] | None:
    """The environment a running process started with, or None when unreadable (not root)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def bypassed(no_proxy: list[str], host: str, port: int) -> bool:
    """NO_PROXY matching as httpx does it: '*', IPs and CIDRs, 'localhost', domain suffixes, host:port."""
    host = host.strip("[]").lower()
    for entry in no_proxy:
        entry = entry.lower()
        if entry == "*":
            return True
        if "://" in entry:
            entry = entry.split("://", 1)[1]
        entry_port = None
        if entry.count(":") == 1 and not entry.endswith("]"):
            entry, _, port_text = entry.partition(":")
            entry_port = int(port_text) if port_text.isdigit() else None
        if entry_port is not None and entry_port != port:
            continue
        entry = entry.strip("[]")
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            network = None
        if network is not None:
            try:
                if ipaddress.ip_address(host) in network:
                    return True
            except ValueError:
                pass
            continue
        if entry == "localhost":
            if host == "localhost":
                return True
            continue
        if host.endswith(entry.lstrip("*")):  # httpx: "example.com" -> "*example.com"
            return True
    return False


def proxy_url_with_auth(proxy: ProxyURL) -> str:
    """The full proxy URL for httpx, credentials included: never print this."""
    from urllib.parse import quote

    auth = ""
    if proxy.username is not None:
        auth = quote(proxy.username, safe="") + (":" + quote(proxy.password, safe="") if proxy.password else "") + "@"
    host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
    return f"{proxy.scheme}://{auth}{host}:{proxy.port}"
