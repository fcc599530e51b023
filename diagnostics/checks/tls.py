"""TLS handshake: protocol version (TLS 1.2 at least), cipher, handshake time."""

from __future__ import annotations

from diagnostics.checks import CheckSpec
from diagnostics.context import Context, Endpoint
from diagnostics.model import Outcome, fail, ok, skip, warn
from diagnostics.tlsprobe import TlsResult

OLD_VERSIONS = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"}
WEAK_CIPHER_MARKS = ("RC4", "DES", "NULL", "EXP", "anon", "MD5")


def _protocol_hint(reason: str) -> str:
    text = reason.upper()
    if "WRONG_VERSION_NUMBER" in text or "HTTP_REQUEST" in text or "RECORD_LAYER" in text:
        return "the port does not speak TLS (plain HTTP or another protocol): check the URL scheme and port"
    if "PROTOCOL" in text or "VERSION" in text:
        return "the server only offers TLS versions this machine refuses: enable TLS 1.2 or 1.3 on the server"
    if "HANDSHAKE_FAILURE" in text or "CIPHER" in text:
        return "no cipher in common: enable modern AEAD ciphers (AES-GCM, CHACHA20) on the server"
    return "inspect with the command shown; a TLS-inspecting proxy or load balancer is a common cause"


def handshake(ctx: Context, ep: Endpoint) -> Outcome:
    if not ep.tls:
        return skip(f"{ep.target} is a plain-HTTP endpoint: no TLS to check (config.registration warns about it)")
    result: TlsResult = ctx.tls(ep)
    command = f"openssl s_client -connect {ep.target} -servername {ep.host} </dev/null"
    evidence = {
        "via": result.via,
        "version": result.version,
        "cipher": result.cipher,
        "bits": result.cipher_bits,
        "ms": round(result.ms, 1),
    }
    if result.path_problem:
        return skip(f"not tried: no connection ({result.path_problem}; see tcp.connect/proxy.connect)")
    timeout = ctx.options.timeout
    failures = {
        "timeout": (
            f"no TLS answer from {ep.target} within {timeout:g}s: the port accepts TCP but never answers the handshake",
            "a firewall, IPS or transparent proxy is swallowing TLS, or the port runs another protocol",
        ),
        "reset": (
            f"connection reset during the TLS handshake with {ep.target}",
            "a firewall or proxy resets TLS to this host (SNI filtering): allow it in the firewall/proxy policy",
        ),
        "closed": (
            f"{ep.target} closed the connection during the TLS handshake",
            "the server or a middlebox rejects this client's TLS: check the server's TLS configuration and logs",
        ),
    }
    if result.error_kind in failures:
        finding, hint = failures[result.error_kind]
        return fail(finding, hint, evidence=evidence, command=command)
    if result.error_kind:
        return fail(
            f"TLS handshake with {ep.target} failed: {result.error}",
            _protocol_hint(result.error),
            evidence=evidence,
            command=command,
        )
    summary = f"{result.version}, {result.cipher} ({result.cipher_bits} bits) in {result.ms:.0f} ms via {result.via}"
    if result.version in OLD_VERSIONS:
        return fail(
            f"{ep.target} negotiated {result.version}, below TLS 1.2 ({summary})",
            "enable TLS 1.2/1.3 on the server or the TLS-terminating proxy/load balancer; "
            "the agent refuses older versions",
            evidence=evidence,
            command=command,
        )
    if result.cipher and any(mark in result.cipher for mark in WEAK_CIPHER_MARKS):
        return warn(
            f"weak cipher: {summary}",
            "disable RC4/DES/NULL/EXPORT ciphers on the server",
            evidence=evidence,
            command=command,
        )
    if result.ms > ctx.options.thresholds.tls_slow_s * 1000:
        return warn(
            f"slow handshake: {summary}",
            "an overloaded server or inspecting proxy; check its CPU and OCSP/CRL access",
            evidence=evidence,
            command=command,
        )
    return ok(summary, evidence=evidence, command=command)


CHECKS = [CheckSpec("tls.handshake", "TLS handshake", handshake, per_endpoint=True)]
