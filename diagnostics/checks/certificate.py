"""Server certificate: trust, host name, validity window, issuer (TLS interception)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from diagnostics import regions
from diagnostics.checks import CheckSpec
from diagnostics.context import Context, Endpoint
from diagnostics.model import Outcome, fail, ok, skip, warn
from diagnostics.tlsprobe import TlsResult

# OpenSSL X509_V_ERR_* codes the verdict depends on.
EXPIRED, NOT_YET_VALID = 10, 9
HOSTNAME_MISMATCH, IP_MISMATCH = 62, 64
UNTRUSTED = {2, 18, 19, 20, 21, 27}


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME) or name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


def _org(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(attrs[0].value) if attrs else ""


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return [_cn(cert.subject)]
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def describe(cert: x509.Certificate) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "names": _names(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": round((cert.not_valid_after_utc - now).total_seconds() / 86400, 1),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "self_signed": cert.issuer == cert.subject,
    }


def _save_chain(ctx: Context, ep: Endpoint, chain: list[x509.Certificate]) -> str | None:
    directory = ctx.options.artifacts_dir
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / (re.sub(r"[^A-Za-z0-9.-]", "_", f"{ep.host}_{ep.port}") + "-presented-chain.pem")
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    except OSError:
        return None
    return str(path)


def _ca_subjects(ca_file: str | None) -> list[str]:
    if not ca_file:
        return []
    try:
        return [_cn(c.subject) for c in x509.load_pem_x509_certificates(Path(ca_file).read_bytes())]
    except (OSError, ValueError):
        return []


def verify(ctx: Context, ep: Endpoint) -> Outcome:
    if not ep.tls:
        return skip(f"{ep.target} is a plain-HTTP endpoint: no TLS to check (config.registration warns about it)")
    result: TlsResult = ctx.tls(ep)
    command = f"openssl s_client -connect {ep.target} -servername {ep.host} -showcerts </dev/null"
    if ctx.ca_file:
        command += f" -CAfile {ctx.ca_file}"
    if result.path_problem or result.error_kind or not result.chain:
        return skip("no certificate: the TLS handshake did not complete (see tls.handshake)", command=command)
    chain = [x509.load_der_x509_certificate(der) for der in result.chain]
    leaf = chain[0]
    info = describe(leaf)
    trust = f"CA file {ctx.ca_file}" if ctx.ca_file else "the system trust store"
    evidence: dict[str, Any] = {
        **info,
        "trusted_by": trust,
        "via": result.via,
        "chain": [c.subject.rfc4514_string() for c in chain],
    }
    issuer, days = _cn(leaf.issuer), info["days_left"]
    not_after = leaf.not_valid_after_utc.date().isoformat()

    def out(status_fn: Any, finding: str, hint: str = "") -> Outcome:
        if status_fn is ok:
            return ok(finding, evidence=evidence, command=command)
        return status_fn(finding, hint, evidence=evidence, command=command)

    if result.verified is None:
        if result.verify_error.startswith("cannot load CA file"):
            return out(fail, result.verify_error, "pass --ca-file with a readable PEM bundle of the server's CA")
        return skip(f"not verified: {result.verify_error} (see tls.handshake)", evidence=evidence, command=command)
    if result.verified is False:
        code = result.verify_code
        if code == EXPIRED:
            return out(
                fail,
                f"certificate for {ep.host} expired on {not_after} ({-days:.0f} days ago)",
                "renew the server certificate (and restart the service that serves it)",
            )
        if code == NOT_YET_VALID:
            starts = leaf.not_valid_before_utc.isoformat(timespec="seconds")
            return out(
                fail,
                f"certificate for {ep.host} is not valid until {starts}",
                "either this machine's clock is behind (compare clock.skew; fix NTP: timedatectl) "
                "or the certificate was issued with a future start date",
            )
        if code in (HOSTNAME_MISMATCH, IP_MISMATCH):
            return out(
                fail,
                f"certificate names {', '.join(info['names'])} do not include {ep.host}",
                f"reissue the certificate with {ep.host} in subjectAltName, or use a URL with a name it covers",
            )
        if code in UNTRUSTED:
            return _untrusted(ctx, ep, result, chain, evidence, command, trust)
        return out(fail, f"certificate rejected: {result.verify_message}", "inspect the chain with the command shown")
    if ep.source == "azure" and _org(leaf.issuer) not in regions.AZURE_ISSUER_ORGS:
        saved = _save_chain(ctx, ep, chain)
        evidence["saved_chain"] = saved
        return out(
            warn,
            f"Azure endpoint certificate issued by '{issuer}' ({_org(leaf.issuer) or 'no O'}), not Microsoft/"
            f"DigiCert: probable TLS interception by a proxy; chain saved to {saved}",
            f"exempt {ep.host} from TLS inspection on the proxy/firewall; Azure Automation does not support it",
        )
    if days < ctx.options.thresholds.cert_warn_days:
        return out(
            warn,
            f"certificate for {ep.host} expires in {days:.0f} days ({not_after})",
            "renew the server certificate before it expires",
        )
    return out(
        ok, f"trusted by {trust}, valid for {ep.host}, issued by '{issuer}', expires in {days:.0f} days ({not_after})"
    )


def _untrusted(
    ctx: Context,
    ep: Endpoint,
    result: TlsResult,
    chain: list[x509.Certificate],
    evidence: dict[str, Any],
    command: str,
    trust: str,
) -> Outcome:
    leaf = chain[0]
    saved = _save_chain(ctx, ep, chain)
    evidence["saved_chain"] = saved
    issuer = _cn(leaf.issuer)
    expected = _ca_subjects(ctx.ca_file)
    where = f"; presented chain saved to {saved}" if saved else ""
    proxy = result.via if result.via.startswith("proxy") else None
    if expected and issuer not in expected:
        finding = (
            f"certificate issued by '{issuer}', not by your CA ('{', '.join(expected)}'): probable TLS "
            f"interception{' by ' + proxy if proxy else ' by a proxy or firewall'}{where}"
        )
        hint = (
            f"exempt {ep.host} from TLS inspection on the proxy/firewall, or, if '{issuer}' is legitimate, "
            "add its CA to the --ca-file bundle"
        )
        return fail(finding, hint, evidence=evidence, command=command)
    if proxy:
        finding = (
            f"certificate issued by untrusted '{issuer}' on the path through the {proxy}: "
            f"probable TLS interception{where}"
        )
        return fail(
            finding,
            f"exempt {ep.host} from TLS inspection on the proxy, or trust its CA with --ca-file",
            evidence=evidence,
            command=command,
        )
    if leaf.issuer == leaf.subject:
        return fail(
            f"self-signed certificate '{_cn(leaf.subject)}' is not trusted by {trust}{where}",
            "pass --ca-file with the server's certificate or CA (and re-register with it so the agent trusts it)",
            evidence=evidence,
            command=command,
        )
    return fail(
        f"certificate issued by '{issuer}' is not trusted by {trust}: a private CA, or TLS interception{where}",
        "if the server uses a private CA pass --ca-file with it; otherwise something between you and the server "
        "re-signs TLS: compare the saved chain with the server's real certificate",
        evidence=evidence,
        command=command,
    )


CHECKS = [CheckSpec("certificate.verify", "Server certificate", verify, per_endpoint=True)]
