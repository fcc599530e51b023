"""Shared assets, as on Azure Automation: variables, credentials, certificates, connections.

Admins manage them through the REST API (admin token); a running job reads them only
through its worker, and only while that worker holds the job's lease (``for_job``).
Secret parts (encrypted variable values, passwords, certificate PFX bytes, encrypted
connection fields) are Fernet-encrypted at rest (automation/crypto.py) and are never
returned to admins: ``view`` shows only public parts, as Azure's portal does.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlmodel import select

from automation import crypto
from automation.context import ControlPlane
from automation.errors import BadRequest, Conflict, Forbidden, NotFound
from automation.models import Asset, Job, WorkerGroup, utcnow
from automation.queue_sql import HELD
from outpost.contract import NAME_RE
from outpost.observer import WorkerIdentity

KINDS = ("variable", "credential", "certificate", "connection")
# REST path segment -> kind
PLURAL = {
    "variables": "variable",
    "credentials": "credential",
    "certificates": "certificate",
    "connections": "connection",
}
MAX_VALUE_BYTES = 1024 * 1024
# Deeper values break JSON encoders on the way out (each level is a recursion step), so
# one stored value could make every listing fail. Azure's own variables are flat values.
MAX_VALUE_DEPTH = 32
MAX_CERT_BYTES = 256 * 1024

# Azure's built-in connection types and their fields; other type names take any fields.
CONNECTION_TYPES: dict[str, list[str]] = {
    "AzureServicePrincipal": ["ApplicationId", "TenantId", "CertificateThumbprint", "SubscriptionId"],
    "AzureClassicCertificate": ["SubscriptionName", "SubscriptionId", "CertificateAssetName"],
    "Azure": ["AutomationCertificateName", "SubscriptionID"],
}


def _check_name(kind: str, name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise BadRequest(f"invalid {kind} name {name!r}: use 1-128 letters, digits, '.', '_' or '-'")


def _get(s: Any, kind: str, name: str) -> Asset:
    row = s.exec(select(Asset).where(Asset.kind == kind, Asset.name == name)).first()
    if row is None:
        raise NotFound(f"{kind} {name!r} does not exist")
    return row


def view(row: Asset) -> dict[str, Any]:
    """What admins see: never a secret part."""
    public = json.loads(row.public_json)
    out: dict[str, Any] = {"name": row.name, "description": row.description}
    if row.kind == "variable":
        out["encrypted"] = row.encrypted
        out["value"] = None if row.encrypted else _shown(public.get("value"))
        out["type"] = public.get("type")
    elif row.kind == "credential":
        out["username"] = public.get("username")
    elif row.kind == "certificate":
        out.update({k: public.get(k) for k in ("thumbprint", "subject", "not_before", "expires_at", "exportable")})
    elif row.kind == "connection":
        out["connection_type"] = public.get("type")
        out["fields"] = {k: _shown(v) for k, v in public.get("fields", {}).items()}
        out["encrypted_fields"] = public.get("encrypted_fields", [])
    out["created_at"] = row.created_at.isoformat()
    out["updated_at"] = row.updated_at.isoformat()
    return out


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (the value may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _shown(value: Any) -> Any:
    """A stored value as listings show it: too deep (stored before the cap) -> its JSON text."""
    return json.dumps(value) if _depth(value) > MAX_VALUE_DEPTH else value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "array", dict: "object"}.get(
        type(value), "unknown"
    )


def _save(
    cp: ControlPlane,
    kind: str,
    name: str,
    public: dict[str, Any],
    secret: dict[str, Any] | None,
    description: str | None,
    encrypted: bool = False,
) -> dict[str, Any]:
    _check_name(kind, name)
    ring = crypto.keyring(cp)
    cipher = ring.encrypt(json.dumps(secret)) if secret is not None else None
    with cp.session() as s:
        row = s.exec(select(Asset).where(Asset.kind == kind, Asset.name == name)).first()
        if row is None:
            row = Asset(kind=kind, name=name)
        elif kind == "variable" and row.encrypted and not encrypted:
            raise Conflict(f"variable {name!r} is encrypted; an encrypted variable cannot become plain (delete it)")
        row.public_json = json.dumps(public)
        row.secret = cipher
        row.encrypted = encrypted
        if description is not None:
            row.description = description[:512]
        row.updated_at = utcnow()
        s.add(row)
        s.commit()
        s.refresh(row)
        return view(row)


# -- admin operations ----------------------------------------------------------------------


def set_variable(
    cp: ControlPlane, name: str, value: Any, encrypted: bool = False, description: str | None = None
) -> dict[str, Any]:
    depth = _depth(value)
    if depth > MAX_VALUE_DEPTH:
        raise BadRequest(f"variable value nests {depth} levels deep; at most {MAX_VALUE_DEPTH} are allowed")
    if len(json.dumps(value).encode()) > MAX_VALUE_BYTES:
        raise BadRequest(f"variable value too large (over {MAX_VALUE_BYTES // 1024} KiB as JSON)")
    public: dict[str, Any] = {"type": _json_type(value)}
    if encrypted:
        return _save(cp, "variable", name, public, {"value": value}, description, encrypted=True)
    public["value"] = value
    return _save(cp, "variable", name, public, None, description)


def set_credential(
    cp: ControlPlane, name: str, username: str, password: str, description: str | None = None
) -> dict[str, Any]:
    if not username:
        raise BadRequest("a credential needs a user name")
    return _save(cp, "credential", name, {"username": username}, {"password": password}, description)


def _parse_certificate(data: bytes, password: str | None) -> tuple[bytes, x509.Certificate]:
    """Accept PFX/PKCS#12 (optionally password-protected), PEM or DER; return unprotected PFX bytes."""
    pw = password.encode() if password else None
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
    except ValueError as exc:
        if "password" in str(exc).lower() or "mac" in str(exc).lower():
            raise BadRequest(f"cannot open the PFX: wrong or missing password ({exc})") from None
        key, cert, extra = None, None, None
        for loader in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate):
            try:
                cert = loader(data)
                break
            except ValueError:
                continue
        if cert is None:
            raise BadRequest("certificate is neither PFX/PKCS#12, PEM nor DER") from None
    if cert is None:
        raise BadRequest("the PFX holds no certificate")
    pfx = pkcs12.serialize_key_and_certificates(
        None,
        key,
        cert,
        list(extra or []) or None,
        serialization.NoEncryption(),  # type: ignore[arg-type]
    )
    return pfx, cert


def set_certificate(
    cp: ControlPlane,
    name: str,
    data_b64: str,
    password: str | None = None,
    exportable: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    try:
        data = base64.b64decode(data_b64, validate=True)
    except ValueError:
        raise BadRequest("certificate data must be base64") from None
    if len(data) > MAX_CERT_BYTES:
        raise BadRequest(f"certificate too large (over {MAX_CERT_BYTES // 1024} KiB)")
    pfx, cert = _parse_certificate(data, password)
    public = {
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 (the Azure thumbprint is SHA-1)
        "subject": cert.subject.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.astimezone(UTC).isoformat(),
        "expires_at": cert.not_valid_after_utc.astimezone(UTC).isoformat(),
        "exportable": exportable,
    }
    return _save(cp, "certificate", name, public, {"pfx": base64.b64encode(pfx).decode()}, description)


def set_connection(
    cp: ControlPlane,
    name: str,
    connection_type: str,
    fields: dict[str, Any],
    encrypted_fields: list[str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    if not connection_type or not NAME_RE.match(connection_type):
        raise BadRequest(f"invalid connection type {connection_type!r}")
    depth = _depth(fields) - 1
    if depth > MAX_VALUE_DEPTH:
        raise BadRequest(f"connection field values nest {depth} levels deep; at most {MAX_VALUE_DEPTH} are allowed")
    required = CONNECTION_TYPES.get(connection_type)
    if required is not None:
        missing = [f for f in required if f not in fields]
        unknown = [f for f in fields if f not in required]
        if missing or unknown:
            raise BadRequest(
                f"connection type {connection_type} has the fields {', '.join(required)}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
    hidden = list(dict.fromkeys(encrypted_fields or []))
    for f in hidden:
        if f not in fields:
            raise BadRequest(f"encrypted field {f!r} is not one of the connection's fields")
    plain = {k: v for k, v in fields.items() if k not in hidden}
    secret = {k: v for k, v in fields.items() if k in hidden}
    public = {"type": connection_type, "fields": plain, "encrypted_fields": hidden}
    return _save(cp, "connection", name, public, {"fields": secret}, description)


def show(cp: ControlPlane, kind: str, name: str) -> dict[str, Any]:
    with cp.reading() as s:
        return view(_get(s, kind, name))


def list_kind(cp: ControlPlane, kind: str) -> list[dict[str, Any]]:
    with cp.reading() as s:
        return [view(r) for r in s.exec(select(Asset).where(Asset.kind == kind).order_by(Asset.name)).all()]


def delete(cp: ControlPlane, kind: str, name: str) -> None:
    with cp.session() as s:
        row = _get(s, kind, name)
        if kind == "credential":
            users = s.exec(select(WorkerGroup.name).where(WorkerGroup.run_as_credential == name)).all()
            if users:
                raise Conflict(
                    f"credential {name!r} is the RunAs account of group(s) {', '.join(users)}; "
                    f"clear it first (outpost group set-runas {users[0]} --clear)"
                )
        s.delete(row)
        s.commit()


def set_group_run_as(cp: ControlPlane, group: str, credential: str | None) -> dict[str, Any]:
    with cp.session() as s:
        g = s.exec(select(WorkerGroup).where(WorkerGroup.name == group)).first()
        if g is None:
            raise NotFound(f"worker group {group!r} does not exist")
        if credential is not None:
            _get(s, "credential", credential)
        g.run_as_credential = credential
        s.add(g)
        s.commit()
    return {"group": group, "run_as_credential": credential}


# -- job-scoped access (worker credential, lease held) ---------------------------------------


def _require_lease(cp: ControlPlane, identity: WorkerIdentity, job_id: str) -> None:
    now = utcnow()
    with cp.reading() as s:
        job = s.get(Job, job_id)
    held = (
        job is not None
        and job.worker_id == identity.worker_id
        and job.status in HELD
        and job.lease_expires_at is not None
        and (job.lease_expires_at if job.lease_expires_at.tzinfo else job.lease_expires_at.replace(tzinfo=UTC)) > now
    )
    if not held:
        raise Forbidden(f"job {job_id} is not held by this worker; assets are readable only while holding its lease")


def for_job(cp: ControlPlane, identity: WorkerIdentity, job_id: str, kind: str, name: str) -> dict[str, Any]:
    """The full asset (secrets decrypted), as automationassets returns it."""
    _require_lease(cp, identity, job_id)
    with cp.reading() as s:
        row = _get(s, kind, name)
    public = json.loads(row.public_json)
    secret = json.loads(crypto.keyring(cp).decrypt(row.secret)) if row.secret else {}
    if kind == "variable":
        return {"name": name, "value": secret["value"] if row.encrypted else public.get("value")}
    if kind == "credential":
        return {"name": name, "username": public["username"], "password": secret.get("password", "")}
    if kind == "certificate":
        return {"name": name, "thumbprint": public.get("thumbprint"), "pfx": secret["pfx"]}
    return {"name": name, "connection_type": public.get("type"), "fields": {**public["fields"], **secret["fields"]}}


def set_variable_for_job(cp: ControlPlane, identity: WorkerIdentity, job_id: str, name: str, value: Any) -> None:
    """set_automation_variable: the variable must exist (as on Azure); it keeps its encryption."""
    _require_lease(cp, identity, job_id)
    with cp.session() as s:
        row = _get(s, "variable", name)
        encrypted = row.encrypted
    set_variable(cp, name, value, encrypted=encrypted)
