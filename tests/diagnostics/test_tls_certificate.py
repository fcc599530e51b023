"""TLS handshake and server certificate: each broken certificate is caught by certificate.verify."""

from __future__ import annotations

import re
import ssl
import warnings
from pathlib import Path

import pytest

from tests.diagnostics.conftest import run_cli


def _cert_run(make_app, pki, issued, tmp_path, *extra):
    server = make_app(issued)
    run = run_cli(
        "--state-dir",
        str(tmp_path / "none"),
        "--url",
        server.url,
        "--ca-file",
        str(pki.ca.pem),
        "--check",
        "certificate",
        *extra,
    )
    return server, run, run.result("certificate.verify", f"127.0.0.1:{server.port}")


def test_valid_certificate(make_app, pki, tmp_path):
    _, run, r = _cert_run(make_app, pki, pki.valid, tmp_path)
    assert (run.rc, r["status"]) == (0, "pass")
    assert re.fullmatch(
        rf"trusted by CA file {re.escape(str(pki.ca.pem))}, valid for 127\.0\.0\.1, issued by 'Outpost Test CA', "
        r"expires in 36[45] days \(\d{4}-\d\d-\d\d\)",
        r["finding"],
    )


def test_certificate_expiring_soon_warns(make_app, pki, tmp_path):
    _, run, r = _cert_run(make_app, pki, pki.expiring, tmp_path)
    assert (run.rc, r["status"]) == (0, "warn")
    assert re.fullmatch(r"certificate for 127\.0\.0\.1 expires in (9|10) days \(\d{4}-\d\d-\d\d\)", r["finding"])


def test_expired_certificate(make_app, pki, tmp_path):
    _, run, r = _cert_run(make_app, pki, pki.expired, tmp_path)
    assert (run.rc, r["status"]) == (1, "fail")
    assert re.fullmatch(r"certificate for 127\.0\.0\.1 expired on \d{4}-\d\d-\d\d \((5|6) days ago\)", r["finding"])
    assert "renew" in r["remediation"]


def test_not_yet_valid_certificate(make_app, pki, tmp_path):
    _, run, r = _cert_run(make_app, pki, pki.future, tmp_path)
    assert (run.rc, r["status"]) == (1, "fail")
    assert re.fullmatch(r"certificate for 127\.0\.0\.1 is not valid until \d{4}-\d\d-\d\dT[\d:]+\+00:00", r["finding"])
    assert "clock" in r["remediation"]


def test_wrong_hostname(make_app, pki, tmp_path):
    _, run, r = _cert_run(make_app, pki, pki.wrong_host, tmp_path)
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == "certificate names other.example do not include 127.0.0.1"


def test_untrusted_issuer_is_reported_as_interception_and_chain_saved(make_app, pki, tmp_path):
    server, run, r = _cert_run(make_app, pki, pki.intercepted, tmp_path)
    assert (run.rc, r["status"]) == (1, "fail")
    saved = r["evidence"]["saved_chain"]
    assert r["finding"] == (
        "certificate issued by 'Intercepting Proxy CA', not by your CA ('Outpost Test CA'): probable TLS "
        f"interception by a proxy or firewall; presented chain saved to {saved}"
    )
    assert Path(saved).read_text().count("BEGIN CERTIFICATE") >= 1
    assert "Intercepting Proxy CA" in r["evidence"]["issuer"]


def test_self_signed_without_ca_file_is_untrusted(make_app, pki, tmp_path):
    server = make_app(pki.valid)
    run = run_cli("--state-dir", str(tmp_path / "none"), "--url", server.url, "--check", "certificate")
    r = run.result("certificate.verify")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"].startswith(
        "certificate issued by 'Outpost Test CA' is not trusted by the system trust store: a private CA, or TLS "
        "interception; presented chain saved to "
    )
    assert "--ca-file" in r["remediation"]


def test_tls_handshake_reports_version_and_cipher(app, pki, tmp_path):
    run = run_cli("--state-dir", str(tmp_path / "none"), "--url", app.url, "--check", "tls")
    r = run.result("tls.handshake")
    assert (run.rc, r["status"]) == (0, "pass")
    assert re.fullmatch(r"TLSv1\.3, TLS_\w+ \(\d+ bits\) in \d+ ms via direct 127\.0\.0\.1", r["finding"])
    assert r["evidence"]["version"] == "TLSv1.3"


def _local_openssl_speaks_tls11() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        return True
    except (ValueError, ssl.SSLError):
        return False


def test_tls11_only_server_fails(make_app, pki, tmp_path):
    if not _local_openssl_speaks_tls11():
        pytest.skip("the local OpenSSL cannot speak TLS 1.1 at all")
    server = make_app(pki.valid, max_tls11=True)
    run = run_cli(
        "--state-dir", str(tmp_path / "none"), "--url", server.url, "--ca-file", str(pki.ca.pem), "--check", "tls"
    )
    r = run.result("tls.handshake")
    assert (run.rc, r["status"]) == (1, "fail")
    if r["evidence"]["version"]:  # this OpenSSL negotiates TLS 1.1 when asked to
        assert re.fullmatch(rf"127\.0\.0\.1:{server.port} negotiated TLSv1(\.1)?, below TLS 1\.2 \(.*\)", r["finding"])
    else:  # OpenSSL's policy refuses even to try
        assert r["finding"].startswith(f"TLS handshake with 127.0.0.1:{server.port} failed: ")
        assert "TLS 1.2" in r["remediation"]
