"""Assets through a real Python runbook on a real agent, and secrets kept out of everything."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli

PASSWORD = "s3cr3t-Pa55w0rd-xyzzy-7f1c"
ENC_VALUE = "enc-value-Qm9vbGVhbg-93a1"
CONN_SECRET = "conn-secret-Zm9vYmFy-5521"
PFX_PASSWORD = "pfx-pass-8d7e"

RUNBOOK = r"""import base64, hashlib, json, sys
import automationassets
from automationassets import AutomationAssetNotFound

out = {}
for name in ("v_str", "v_int", "v_bool", "v_null", "v_obj", "v_float", "v_enc"):
    value = automationassets.get_automation_variable(name)
    out[name] = [value, type(value).__name__]
out["v_enc"][0] = hashlib.sha256(out["v_enc"][0].encode()).hexdigest()  # a runbook that prints a secret leaks it
cred = automationassets.get_automation_credential("cred")
out["cred_keys"] = sorted(cred)
out["cred_user"] = cred["username"]
out["cred_pw_ok"] = hashlib.sha256(cred["password"].encode()).hexdigest() == sys.argv[1]
conn = automationassets.get_automation_connection("conn")
out["conn"] = {k: (v if k != "Secret" else hashlib.sha256(v.encode()).hexdigest() == sys.argv[2])
               for k, v in conn.items()}
pfx = automationassets.get_automation_certificate("cert")
out["pfx_type"] = type(pfx).__name__
out["pfx_b64"] = base64.b64encode(pfx).decode()
automationassets.set_automation_variable("v_int", out["v_int"][0] + 1)
automationassets.set_automation_variable("v_enc", "changed by the runbook")
for kind, fn in (("variable", automationassets.get_automation_variable),
                 ("credential", automationassets.get_automation_credential),
                 ("connection", automationassets.get_automation_connection),
                 ("certificate", automationassets.get_automation_certificate)):
    try:
        fn("no-such-" + kind)
        out["missing_" + kind] = "no exception"
    except AutomationAssetNotFound:
        out["missing_" + kind] = "AutomationAssetNotFound"
try:
    automationassets.set_automation_variable("no-such-variable", 1)
    out["set_missing"] = "no exception"
except AutomationAssetNotFound:
    out["set_missing"] = "AutomationAssetNotFound"
print(json.dumps(out))
print("unicode: żółw ✓")
"""


def _pfx(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outpost-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(
        b"cert", key, cert, None, serialization.BestAvailableEncryption(PFX_PASSWORD.encode())
    )
    path = tmp_path / "cert.pfx"
    path.write_bytes(data)
    return path, cert.fingerprint(hashes.SHA1()).hex().upper()


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow  # > 20 s: end to end with real processes
def test_every_asset_kind_round_trips_through_a_python_runbook(server, make_agent, tmp_path):
    agent = make_agent(server)
    env = server.env()
    for name, value in [
        ("v_str", '"text"'),
        ("v_int", "41"),
        ("v_bool", "true"),
        ("v_null", "null"),
        ("v_obj", '{"a": [1, 2], "b": {"c": "d"}}'),
        ("v_float", "2.5"),
    ]:
        _ok(cli("asset", "variable", "set", name, "--value", value, env=env))
    _ok(cli("asset", "variable", "set", "v_enc", "--value", json.dumps(ENC_VALUE), "--encrypted", env=env))
    _ok(
        cli(
            "asset",
            "credential",
            "set",
            "cred",
            "--username",
            "svc-user",
            "--password-stdin",
            input=PASSWORD + "\n",
            env=env,
        )
    )
    _ok(
        cli(
            "asset",
            "connection",
            "set",
            "conn",
            "--type",
            "MyApi",
            "--field",
            "Url=https://api.example",
            "--field",
            "Port=8443",
            "--field",
            f"Secret={CONN_SECRET}",
            "--encrypted-field",
            "Secret",
            env=env,
        )
    )
    pfx_path, thumbprint = _pfx(tmp_path)
    cert_view = json.loads(
        _ok(
            cli(
                "asset",
                "certificate",
                "set",
                "cert",
                "--file",
                str(pfx_path),
                "--password-stdin",
                "--json",
                input=PFX_PASSWORD + "\n",
                env=env,
            )
        ).stdout
    )
    assert cert_view["thumbprint"] == thumbprint
    assert cert_view["subject"] == "CN=outpost-test"
    assert datetime.fromisoformat(cert_view["expires_at"]) > datetime.now(UTC) + timedelta(days=29)

    shown = json.loads(_ok(cli("asset", "variable", "show", "v_obj", "--json", env=env)).stdout)
    assert shown["value"] == {"a": [1, 2], "b": {"c": "d"}} and shown["encrypted"] is False
    enc = json.loads(_ok(cli("asset", "variable", "show", "v_enc", "--json", env=env)).stdout)
    assert enc["value"] is None and enc["encrypted"] is True

    with server.client() as c:
        publish(c, "assets", RUNBOOK, "python3")
        # the runbook gets digests to compare with: the secrets themselves must not be job parameters
        job_id = start_job(
            c, "assets", params=[{"name": None, "value": _sha(PASSWORD)}, {"name": None, "value": _sha(CONN_SECRET)}]
        )
        job = wait_job(c, job_id)
        lines = outputs(c, job_id)
        errors = outputs(c, job_id, "Error")
        assert job["status"] == "Completed", (job, errors)
        out = json.loads(lines[0])
        assert out["v_str"] == ["text", "str"]
        assert out["v_int"] == [41, "int"]
        assert out["v_bool"] == [True, "bool"]
        assert out["v_null"] == [None, "NoneType"]
        assert out["v_obj"] == [{"a": [1, 2], "b": {"c": "d"}}, "dict"]
        assert out["v_float"] == [2.5, "float"]
        assert out["v_enc"] == [_sha(ENC_VALUE), "str"]
        assert out["cred_keys"] == ["password", "username"]
        assert out["cred_user"] == "svc-user" and out["cred_pw_ok"] is True
        assert out["conn"] == {"Url": "https://api.example", "Port": "8443", "Secret": True}
        assert out["pfx_type"] == "bytes"
        _key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(out["pfx_b64"]), None)
        assert cert.fingerprint(hashes.SHA1()).hex().upper() == thumbprint and _key is not None
        for kind in ("variable", "credential", "connection", "certificate"):
            assert out[f"missing_{kind}"] == "AutomationAssetNotFound"
        assert out["set_missing"] == "AutomationAssetNotFound"
        assert lines[1] == "unicode: żółw ✓"  # UTF-8 output survives

        # set_automation_variable persisted, types and encryption kept
        assert c.get("/api/v1/assets/variables/v_int").json()["value"] == 42
        assert c.get("/api/v1/assets/variables/v_enc").json()["value"] is None

        # the per-job working directory is gone
        assert not list((agent.state_dir / "work").glob(f"{job_id}*"))

        # --- secrets: never in listings, shows, job views, streams or logs ---
        secrets = [PASSWORD, ENC_VALUE, CONN_SECRET, "changed by the runbook", PFX_PASSWORD]
        answers = [
            c.get(f"/api/v1/assets/{p}").text for p in ("variables", "credentials", "certificates", "connections")
        ]
        answers += [
            c.get(f"/api/v1/assets/{p}").text
            for p in ("variables/v_enc", "credentials/cred", "connections/conn", "certificates/cert")
        ]
        answers += [c.get("/api/v1/groups").text, c.get(f"/api/v1/jobs/{job_id}/streams").text]
        listed = [
            cli("asset", kind, "list", *flag, env=env).stdout
            for kind in ("variable", "credential", "certificate", "connection")
            for flag in ([], ["--json"])
        ]
        streams = json.dumps(c.get(f"/api/v1/jobs/{job_id}/streams", params={"limit": 10000}).json()["records"])
    agent.stop()
    server.stop()
    logs = [server.log_path.read_text(), agent.log()]
    for blob in answers + listed + logs + [streams]:
        for secret in secrets:
            assert secret not in blob
    # the encrypted values are not in the database file in clear either
    db = (server.data_dir / "control-plane.db").read_bytes()
    for extra in (server.data_dir / "control-plane.db-wal",):
        if extra.exists():
            db += extra.read_bytes()
    for secret in (PASSWORD, ENC_VALUE, CONN_SECRET):
        assert secret.encode() not in db
    key = server.data_dir / "master.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_only_the_worker_holding_the_lease_reads_a_jobs_assets(server, make_agent):
    holder = make_agent(server, name="holder")
    other = make_agent(server, name="other", start=False)
    with server.client() as c:
        c.put("/api/v1/assets/credentials/cred", json={"username": "u", "password": PASSWORD}).raise_for_status()
        publish(c, "slow", "import time\ntime.sleep(30)\n", "python3")
        job_id = start_job(c, "slow")
        wait_job(c, job_id, ("Running",), timeout=30)
        path = f"/api/v1/agent/jobs/{job_id}/assets/credentials/cred"

        def as_worker(agent):
            credential = (agent.state_dir / "credential").read_text().strip()
            return httpx.get(server.url + path, headers={"Authorization": f"Bearer {credential}"}, timeout=10)

        mine = as_worker(holder)
        assert mine.status_code == 200 and mine.json()["password"] == PASSWORD
        stolen = as_worker(other)
        assert stolen.status_code == 403 and PASSWORD not in stolen.text
        assert "not held by this worker" in stolen.json()["detail"]
        admin = c.get(path)  # the admin token is not a worker credential
        assert admin.status_code == 401
        c.post(f"/api/v1/jobs/{job_id}/stop")
        wait_job(c, job_id)
        after = as_worker(holder)  # lease gone with the job
        assert after.status_code == 403


def test_asset_bad_input_and_cli_errors(server):
    env = server.env()
    bad = cli("asset", "variable", "set", "x", "--value", "not json", env=env)
    assert bad.returncode == 2 and "--value must be JSON" in bad.stderr
    missing = cli("asset", "credential", "show", "nope", env=env)
    assert missing.returncode == 1 and "credential 'nope' does not exist" in missing.stderr
    with server.client() as c:
        r = c.put(
            "/api/v1/assets/connections/az",
            json={"connection_type": "AzureServicePrincipal", "fields": {"ApplicationId": "a"}},
        )
        assert r.status_code == 400 and "missing: TenantId" in r.json()["detail"]
        r = c.put("/api/v1/assets/certificates/c", json={"data": base64.b64encode(b"junk").decode()})
        assert r.status_code == 400 and "neither PFX" in r.json()["detail"]
        r = c.get("/api/v1/assets/widgets")
        assert r.status_code == 404
        r = c.put("/api/v1/assets/variables/bad name", json={"value": 1})
        assert r.status_code == 422 and "'bad name' is not valid" in r.json()["detail"]


@pytest.mark.slow  # > 20 s: end to end with real processes
def test_master_key_from_env_and_a_wrong_key_is_named(make_server, make_agent, monkeypatch):
    from cryptography.fernet import Fernet

    monkeypatch.setenv("OUTPOST_MASTER_KEY", Fernet.generate_key().decode())
    server = make_server()
    agent = make_agent(server)
    with server.client() as c:
        c.put("/api/v1/assets/variables/enc", json={"value": ENC_VALUE, "encrypted": True}).raise_for_status()
        publish(c, "read", "import automationassets\nautomationassets.get_automation_variable('enc')\n", "python3")
        assert wait_job(c, start_job(c, "read"))["status"] == "Completed"
    assert not (server.data_dir / "master.key").exists()  # the env key was used
    agent.stop()
    server.stop()
    monkeypatch.setenv("OUTPOST_MASTER_KEY", Fernet.generate_key().decode())  # not the key that encrypted them
    server.start()
    agent.start()
    with server.client() as c:
        job = wait_job(c, start_job(c, "read"))
        errors = "\n".join(outputs(c, job["id"], "Error"))
    assert job["status"] == "Failed"
    assert "master key differs from the one that encrypted the stored assets" in errors
    assert "master key differs" in server.log_path.read_text()
