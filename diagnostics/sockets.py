"""TCP connects and proxy CONNECT tunnels that say precisely how they failed."""

from __future__ import annotations

import base64
import errno
import select
import socket
import ssl
import time
from dataclasses import dataclass, field

from diagnostics.proxies import ProxyURL

MAX_PROXY_HEADER = 64 * 1024


@dataclass
class Connect:
    kind: str  # ok | refused | timeout | reset | closed | unreachable | error
    error: str = ""
    ms: float = 0.0
    address: str = ""
    sock: socket.socket | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def classify_os_error(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return "unreachable"
    return "error"


def connect(address: str, port: int, timeout: float, probe_s: float = 0.1) -> Connect:
    """Connect to one address; then watch briefly for an immediate reset or close by the peer.

    A TLS server stays silent until the client speaks, so anything readable within ``probe_s``
    is a firewall or middlebox killing the connection right after the handshake.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(max(0.05, timeout))
    start = time.monotonic()
    try:
        sock.connect((address, port))
    except OSError as exc:
        sock.close()
        return Connect(classify_os_error(exc), _os_text(exc), (time.monotonic() - start) * 1000, address)
    ms = (time.monotonic() - start) * 1000
    readable, _, _ = select.select([sock], [], [], probe_s)
    if readable:
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except OSError as exc:
            sock.close()
            return Connect(classify_os_error(exc), _os_text(exc), ms, address)
        if not data:
            sock.close()
            return Connect("closed", "the peer closed the connection right after accepting it", ms, address)
    return Connect("ok", "", ms, address, sock)


def _os_text(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@dataclass
class Tunnel:
    connect: Connect  # the TCP connect to the proxy itself
    status: int = 0  # the proxy's answer to CONNECT; 0 when none came
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    ms: float = 0.0  # CONNECT round trip (after the TCP connect)
    sock: socket.socket | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.sock is not None


def open_tunnel(proxy: ProxyURL, proxy_address: str, host: str, port: int, timeout: float) -> Tunnel:
    """CONNECT host:port through an HTTP(S) proxy; on 200 the socket carries the tunnel."""
    deadline = time.monotonic() + timeout
    conn = connect(proxy_address, proxy.port, timeout, probe_s=0)
    tunnel = Tunnel(conn)
    if not conn.ok or conn.sock is None:
        return tunnel
    sock: socket.socket = conn.sock
    start = time.monotonic()
    try:
        if proxy.scheme == "https":
            ctx = ssl.create_default_context()
            sock = ctx.wrap_socket(sock, server_hostname=proxy.host)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", "User-Agent: outpost-diagnose"]
        if proxy.username is not None:
            token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
            lines.append(f"Proxy-Authorization: Basic {token}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < MAX_PROXY_HEADER:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        tunnel.error = f"{classify_os_error(exc)}: {_os_text(exc)}"
        tunnel.ms = (time.monotonic() - start) * 1000
        return tunnel
    tunnel.ms = (time.monotonic() - start) * 1000
    status_line, *header_lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        sock.close()
        tunnel.error = (
            f"not an HTTP proxy answer: {status_line[:80]!r}" if status_line else "proxy closed the connection"
        )
        return tunnel
    tunnel.status, tunnel.reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
    for line in header_lines:
        key, sep, value = line.partition(":")
        if sep:
            tunnel.headers[key.strip().lower()] = value.strip()
    if tunnel.status == 200:
        tunnel.sock = sock
    else:
        sock.close()
    return tunnel
