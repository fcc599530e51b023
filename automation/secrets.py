"""Tokens and keys: generation, hashing, constant-time checks, credentials.json.

Every secret is a high-entropy random token, so a SHA-256 digest is enough to
store it (no password-stretching needed); only digests live in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlmodel import Session, select

from automation.models import Setting
from outpost.state import write_private

ADMIN_HASH = "admin_token_sha256"
KEY_HASH = {"primary": "registration_key_primary_sha256", "secondary": "registration_key_secondary_sha256"}
CREDENTIALS_FILE = "credentials.json"


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, expected_digest: str | None) -> bool:
    return bool(expected_digest) and hmac.compare_digest(digest(token), expected_digest or "")


@dataclass
class Credentials:
    """What `outpost server` prints; plaintext kept only in <data-dir>/credentials.json."""

    admin_token: str | None
    registration_key_primary: str | None
    registration_key_secondary: str | None


def _load_file(path: Path) -> Credentials:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        data = {}
    return Credentials(
        admin_token=data.get("admin_token"),
        registration_key_primary=data.get("registration_key_primary"),
        registration_key_secondary=data.get("registration_key_secondary"),
    )


def _save_file(path: Path, creds: Credentials) -> None:
    write_private(path, json.dumps(asdict(creds), indent=2) + "\n")


def ensure_credentials(session: Session, data_dir: Path) -> Credentials:
    """Create the admin token and registration keys on first start; reuse them later.

    With several replicas on one PostgreSQL, the first to start creates them; the
    others verify whatever their own credentials.json holds against the shared digests
    and print only what they can prove.
    """
    path = data_dir / CREDENTIALS_FILE
    local = _load_file(path)
    stored = {s.key: s.value for s in session.exec(select(Setting)).all()}
    result = Credentials(None, None, None)
    fields = {
        ADMIN_HASH: ("admin_token", "opa"),
        KEY_HASH["primary"]: ("registration_key_primary", "opk"),
        KEY_HASH["secondary"]: ("registration_key_secondary", "opk"),
    }
    changed = False
    for setting_key, (attr, prefix) in fields.items():
        value = getattr(local, attr)
        if setting_key not in stored:
            value = new_token(prefix)
            session.add(Setting(key=setting_key, value=digest(value)))
            changed = True
        elif not (value and matches(value, stored[setting_key])):
            value = None
        setattr(result, attr, value)
    session.commit()
    if changed or result != local:
        _save_file(path, result)
    return result


def regenerate_key(session: Session, data_dir: Path, which: str) -> str:
    key = new_token("opk")
    setting = session.get(Setting, KEY_HASH[which])
    if setting is None:
        setting = Setting(key=KEY_HASH[which], value="")
    setting.value = digest(key)
    session.add(setting)
    session.commit()
    path = data_dir / CREDENTIALS_FILE
    creds = _load_file(path)
    setattr(creds, f"registration_key_{which}", key)
    _save_file(path, creds)
    return key
