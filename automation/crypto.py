"""Encryption at rest for secret asset values (Fernet: AES-128-CBC + HMAC-SHA256).

The master key comes from the environment (``OUTPOST_MASTER_KEY``, a Fernet key as
printed by ``Fernet.generate_key()``) or from ``<data-dir>/master.key`` (created on
first use, mode 0600). Replicas sharing one PostgreSQL database must share the key:
set the same ``OUTPOST_MASTER_KEY`` on every replica. A key that cannot decrypt the
store's check value is refused with a message saying so, instead of garbage or a
traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.exc import IntegrityError

from automation.context import ControlPlane
from automation.errors import ControlPlaneError
from automation.models import Setting
from outpost.settings import ENV_MASTER_KEY

MASTER_KEY_FILE = "master.key"
CHECK_SETTING = "master_key_check"
_CHECK_PLAINTEXT = b"outpost master key check"
_ATTR = "_outpost_keyring"


class MasterKeyError(ControlPlaneError):
    status = 500


def _load_or_create(data_dir: Path) -> bytes:
    env = os.environ.get(ENV_MASTER_KEY)
    if env:
        return env.strip().encode()
    path = data_dir / MASTER_KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this data dir won the race
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


class Keyring:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise MasterKeyError(
                f"the master key is not a valid Fernet key (32 url-safe base64 bytes); check {ENV_MASTER_KEY} "
                f"or {MASTER_KEY_FILE} in the data directory"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise MasterKeyError(
                "an encrypted asset cannot be decrypted with this server's master key; every replica must use "
                f"the same key (set {ENV_MASTER_KEY})"
            ) from None


def keyring(cp: ControlPlane) -> Keyring:
    """The control plane's keyring, verified against the store's check value on first use."""
    ring = getattr(cp, _ATTR, None)
    if ring is not None:
        return ring
    ring = Keyring(_load_or_create(cp.data_dir))
    with cp.session() as s:
        check = s.get(Setting, CHECK_SETTING)
        if check is None:
            s.add(Setting(key=CHECK_SETTING, value=ring.encrypt(_CHECK_PLAINTEXT.decode())))
            try:
                s.commit()
            except IntegrityError:  # another replica stored its check value first
                s.rollback()
                check = s.get(Setting, CHECK_SETTING)
    if check is not None:
        try:
            ring._fernet.decrypt(check.value.encode("ascii"))
        except InvalidToken:
            raise MasterKeyError(
                "this server's master key differs from the one that encrypted the stored assets; "
                f"set {ENV_MASTER_KEY} to the same key on every replica (or restore {MASTER_KEY_FILE})"
            ) from None
    setattr(cp, _ATTR, ring)
    return ring
