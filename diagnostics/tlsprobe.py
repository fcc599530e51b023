"""Two TLS handshakes per endpoint, over the agent's own path (direct or via the proxy).

1. A permissive one (no verification, TLS 1.0 upwards where the local OpenSSL allows) that
   learns what the server offers and collects the presented chain even when it is bad.
2. One with exactly the agent's policy (outpost.http.ssl_context: verified, TLS 1.2+) whose
   verdict is what the agent would get.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diagnostics import dnsutil
from diagnostics.sockets import classify_os_error

if TYPE_CHECKING:
    from diagnostics.context import Context, Endpoint


@dataclass
class TlsResult:
    via: str = ""
    path_problem: str | None = None  # no TCP path at all
    path_kind: str = ""
    version: str | None = None
    cipher: str | None = None
    cipher_bits: int | None = None
    ms: float = 0.0
    chain: list[bytes] = field(default_factory=list)  # DER, leaf first
    error_kind: str | None = None  # timeout | reset | closed | protocol | error
    error: str = ""
    verified: bool | None = None  # None: the verifying handshake could not be made
    verify_code: int | None = None
    verify_message: str = ""
    verify_error: str = ""


def _permissive_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings(), contextlib.suppress(ValueError, ssl.SSLError):
        warnings.simplefilter("ignore", DeprecationWarning)
        # Let old servers answer so the finding can say "TLS 1.1" rather than "handshake failed".
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


def _sni(ep: Endpoint) -> str | None:
    return None if dnsutil.is_ip(ep.host) else ep.host


def probe(ctx: Context, ep: Endpoint) -> TlsResult:
    result = TlsResult()
    path = ctx.open_path(ep)
    result.via = path.via
    if path.sock is None:
        result.path_problem, result.path_kind = path.problem, path.kind
        return result
    sock = path.sock
    try:
        sock.settimeout(ctx.remaining())
        start = time.monotonic()
        tls = _permissive_context().wrap_socket(sock, server_hostname=_sni(ep))
        result.ms = (time.monotonic() - start) * 1000
        result.version = tls.version()
        cipher = tls.cipher()
        if cipher:
            result.cipher, result.cipher_bits = cipher[0], cipher[2]
        result.chain = _chain(tls)
        tls.close()
    except ssl.SSLError as exc:
        sock.close()
        result.error_kind, result.error = "protocol", exc.reason or str(exc)
        return result
    except OSError as exc:
        sock.close()
        kind = classify_os_error(exc)
        result.error_kind = "closed" if kind == "error" and "EOF" in str(exc) else kind
        result.error = str(exc) or type(exc).__name__
        return result
    _verify(ctx, ep, result)
    return result


def _chain(tls: ssl.SSLSocket) -> list[bytes]:
    getter = getattr(tls, "get_unverified_chain", None) or getattr(tls._sslobj, "get_unverified_chain", None)
    if getter is not None:
        try:
            chain = getter() or []
            return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]
        except (AttributeError, ValueError, ssl.SSLError):
            pass
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _verify(ctx: Context, ep: Endpoint, result: TlsResult) -> None:
    from outpost.http import ssl_context

    try:
        agent_ctx = ssl_context(ctx.ca_file)
    except (OSError, ssl.SSLError) as exc:
        result.verify_error = f"cannot load CA file {ctx.ca_file}: {exc}"
        return
    path = ctx.open_path(ep)
    if path.sock is None:
        result.verify_error = f"second connection failed: {path.problem}"
        return
    try:
        path.sock.settimeout(ctx.remaining())
        # The agent checks the name it was given, IP literals included.
        agent_ctx.wrap_socket(path.sock, server_hostname=ep.host).close()
        result.verified = True
    except ssl.SSLCertVerificationError as exc:
        result.verified = False
        result.verify_code, result.verify_message = exc.verify_code, exc.verify_message or str(exc)
    except ssl.SSLError as exc:
        result.verify_error = f"handshake with the agent's TLS policy failed: {exc.reason or exc}"
    except OSError as exc:
        result.verify_error = f"handshake with the agent's TLS policy failed: {exc or type(exc).__name__}"
    finally:
        path.sock.close()
