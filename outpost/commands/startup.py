"""What `outpost server` checks before it opens any store or prints credentials.

Each check ends a bad start with one line that says what to change: the data directory
lock (before DuckDB, whose own lock error is a 46-line traceback), the TLS pair (which
file is wrong), and the listening socket (bound here, handed to uvicorn, so "listening
on URL" is only printed once it is true).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import ssl
from pathlib import Path
from typing import IO

from outpost.commands.common import fail

LOCK_FILE = "server.lock"
ENV_PORT = "OUTPOST_PORT"


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the data dir for the life of the process; the file records our PID.

    The caller keeps the returned file open: the kernel drops the lock when the process ends,
    however it ends, so a crashed server never leaves a stale lock behind.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held open until exit on purpose)
    except OSError as exc:
        fail(f"cannot use data directory {data_dir}: {exc.strerror}")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        fail(f"data directory {data_dir} is in use by another outpost server (PID {pid})")
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def check_tls(cert: Path, key: Path) -> None:
    """Load the pair as uvicorn will; on failure name the file that is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key), password=lambda: b"")
        return
    except OSError as exc:
        if not isinstance(exc, ssl.SSLError):
            fail(f"cannot read {exc.filename or cert}: {exc.strerror}", 2)
        reason = exc.reason or str(exc)
    fail(_tls_problem(cert, key, reason), 2)


def _tls_problem(cert: Path, key: Path, reason: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    def certificates(path: Path) -> list[x509.Certificate]:
        try:
            return x509.load_pem_x509_certificates(path.read_bytes())
        except ValueError:
            return []

    def private_key(path: Path) -> object | None:
        try:
            return serialization.load_pem_private_key(path.read_bytes(), password=None)
        except TypeError:
            return "encrypted"
        except Exception:  # ValueError, UnsupportedAlgorithm: not a key we can use
            return None

    cert_chain, pkey = certificates(cert), private_key(key)
    if not cert_chain and not pkey and certificates(key) and private_key(cert):
        return f"--tls-cert and --tls-key are swapped: {cert} holds a private key and {key} a certificate"
    if not cert_chain:
        return f"--tls-cert {cert} is not a PEM certificate (expected -----BEGIN CERTIFICATE-----)"
    if pkey == "encrypted":
        return f"--tls-key {key} is encrypted with a passphrase; give the server an unencrypted key (mode 0600)"
    if pkey is None:
        return f"--tls-key {key} is not a PEM private key (expected -----BEGIN ... PRIVATE KEY-----)"
    if reason == "KEY_VALUES_MISMATCH" or "mismatch" in reason.lower():
        return f"--tls-key {key} does not belong to the certificate in --tls-cert {cert}"
    return f"cannot load --tls-cert {cert} with --tls-key {key}: {reason}"


def bind(host: str, port: int) -> socket.socket:
    """A bound socket for uvicorn, or one line saying why this address cannot be used."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        fail(f"cannot listen on {host!r}: unknown address ({exc.strerror}); pass --host with an IP or hostname", 2)
    except OverflowError:
        fail(f"--port {port} is not a TCP port (1-65535)", 2)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            fail(f"cannot listen on {shown}: the port is in use by another process; pick a free one with --port")
        if exc.errno == errno.EADDRNOTAVAIL:
            fail(f"cannot listen on {shown}: {host} is not an address of this machine; check --host")
        if exc.errno == errno.EACCES:
            fail(f"cannot listen on {shown}: permission denied (ports below 1024 need root); pick one with --port")
        fail(f"cannot listen on {shown}: {exc.strerror}")
    sock.set_inheritable(True)
    return sock
