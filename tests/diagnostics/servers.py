"""Real servers on loopback for diagnose tests: an Outpost-shaped HTTPS app, DNS, odd listeners, tinyproxy."""

from __future__ import annotations

import json
import select
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from tests.diagnostics.pki import Issued

# ----------------------------------------------------------------------------- Outpost-shaped HTTPS


@dataclass
class AppConfig:
    credential: str = "s3cret-worker-credential"
    worker: dict[str, str] = field(default_factory=lambda: {"worker_id": "w-1", "name": "web-1", "group": "linux"})
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    region: str | None = None
    date_offset_s: float = 0.0
    outpost: bool = True  # False: answer like a captive portal
    post_allowed: bool = True
    received: list[dict[str, Any]] = field(default_factory=list)  # POSTed diagnostics


class _Handler(BaseHTTPRequestHandler):
    server: _AppServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def version_string(self) -> str:
        return "Gateway/1.0"  # what sits in front: Outpost itself is recognised by X-Outpost-Version

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(time.time() + self.server.cfg.date_offset_s, usegmt=True)

    def _send(self, status: int, body: Any, *, outpost: bool = True) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        if outpost:
            self.send_header("X-Outpost-Version", "9.9.9-test")
            self.send_header("Content-Type", "application/json")
        else:
            self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _portal(self) -> bool:
        if self.server.cfg.outpost:
            return False
        self._send(200, b"<html><title>Guest Wi-Fi</title>Please log in to continue</html>", outpost=False)
        return True

    def do_GET(self) -> None:  # noqa: N802
        cfg = self.server.cfg
        if self._portal():
            return
        if self.path == "/api/v1/health":
            self._send(200, {"service": "outpost", "version": "9.9.9-test"})
        elif self.path == "/api/v1/endpoints":
            self._send(200, {"region": cfg.region, "endpoints": cfg.endpoints})
        elif self.path == "/api/v1/agent/self":
            if self.headers.get("Authorization") != f"Bearer {cfg.credential}":
                self._send(401, {"detail": "unknown or revoked worker credential"})
            else:
                self._send(200, cfg.worker)
        else:
            self._send(404, {"detail": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        cfg = self.server.cfg
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self._portal():
            return
        if self.path == "/api/v1/health":
            if cfg.post_allowed:
                self._send(200, {"service": "outpost", "version": "9.9.9-test"})
            else:  # a GET-only filtering proxy in front of the service
                self._send(405, b"<html>Method Not Allowed by policy</html>", outpost=False)
        elif self.path == "/api/v1/agent/diagnostics":
            if self.headers.get("Authorization") != f"Bearer {cfg.credential}":
                self._send(401, {"detail": "unknown or revoked worker credential"})
                return
            cfg.received.append(json.loads(body))
            self._send(202, {"accepted": len(cfg.received[-1]["results"])})
        else:
            self._send(404, {"detail": "not found"})


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True
    cfg: AppConfig

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that abort handshakes on purpose are the point of these tests


def tls_server_context(issued: Issued, *, max_tls11: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issued.cert, issued.key)
    if max_tls11:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


class AppServer:
    """An HTTPS server speaking the parts of Outpost's API that diagnose uses."""

    def __init__(self, issued: Issued, cfg: AppConfig | None = None, *, max_tls11: bool = False) -> None:
        self.cfg = cfg or AppConfig()
        self.httpd = _AppServer(("127.0.0.1", 0), _Handler)
        self.httpd.cfg = self.cfg
        ctx = tls_server_context(issued, max_tls11=max_tls11)
        # Handshake in the handler thread, so a silent client never blocks accept().
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------- DNS


@dataclass
class Zone:
    a: list[str] = field(default_factory=list)
    aaaa: list[str] = field(default_factory=list)
    cname: str | None = None
    rcode: str | None = None  # "NXDOMAIN" | "SERVFAIL"
    delay_s: float = 0.0
    drop: bool = False  # never answer


class DnsServer:
    """A UDP DNS server written with dnspython: answers from `zones` (name -> Zone), else NXDOMAIN."""

    def __init__(self, zones: dict[str, Zone], host: str = "127.0.0.1", port: int = 0) -> None:
        self.zones = {k.rstrip(".").lower(): v for k, v in zones.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()
        self.address = f"{self.host}:{self.port}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            try:
                wire, client = self.sock.recvfrom(4096)
            except OSError:
                return
            threading.Thread(target=self._answer, args=(wire, client), daemon=True).start()

    def _answer(self, wire: bytes, client: Any) -> None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = str(question.name).rstrip(".").lower()
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        zone = self.zones.get(name)
        if zone is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif zone.drop:
            return
        else:
            if zone.delay_s:
                time.sleep(zone.delay_s)
            if zone.rcode:
                reply.set_rcode(dns.rcode.from_text(zone.rcode))
            else:
                self._fill(reply, question, name, zone)
        if not self.stop.is_set():
            self.sock.sendto(reply.to_wire(), client)

    def _fill(self, reply: dns.message.Message, question: Any, name: str, zone: Zone) -> None:
        owner = name
        while zone.cname:  # answer the chain like a recursive resolver would
            reply.answer.append(dns.rrset.from_text(owner + ".", 60, "IN", "CNAME", zone.cname + "."))
            owner = zone.cname
            zone = self.zones.get(owner, Zone())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        values = zone.a if rdtype == "A" else zone.aaaa if rdtype == "AAAA" else []
        if values:
            reply.answer.append(dns.rrset.from_text_list(owner + ".", 60, "IN", rdtype, values))

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


# ----------------------------------------------------------------------------- odd TCP listeners


class Listener:
    """TCP listeners that misbehave: `silent` accepts and never speaks, `reset` accepts then RSTs,
    `full` has a full accept queue so new connects time out."""

    def __init__(self, mode: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        if mode == "full":
            self.sock.listen(0)
            for _ in range(2):  # fill the backlog; later SYNs are dropped
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", self.port))
                self.held.append(c)
            time.sleep(0.1)
            return
        self.sock.listen(16)
        self.mode = mode
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        for c in self.held:
            c.close()
        self.sock.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------------------- tinyproxy


class Tinyproxy:
    """Debian's tinyproxy on a loopback port, optionally with BasicAuth or a ConnectPort policy."""

    def __init__(self, directory: Path, *, auth: tuple[str, str] | None = None, connect_ports: list[int] | None = None):
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        self.port = closed_port()
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 10",
            "MaxClients 20",
            "Allow 127.0.0.1",
            "LogLevel Info",
            f'PidFile "{directory / "tinyproxy.pid"}"',
        ]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        for port in connect_ports or []:
            lines.append(f"ConnectPort {port}")
        conf = directory / "tinyproxy.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.log = (directory / "tinyproxy.log").open("w")
        self.proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tinyproxy exited: {(directory / 'tinyproxy.log').read_text()}") from None
                time.sleep(0.05)
        else:
            raise RuntimeError("tinyproxy did not start listening within 10 s")
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
