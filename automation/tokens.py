"""Named API tokens: create (secret shown once), list (never the secret), revoke, authenticate.

Only a SHA-256 digest of each token is stored. Authentication reads the store on every
call, with no cache: a revoked or expired token is refused at once, on every replica.
The admin token `outpost server` prints is the first admin token, listed as `admin`.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from automation import secrets
from automation.context import ControlPlane
from automation.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from automation.models import ApiToken, Setting, WorkerGroup, as_utc, utcnow
from automation.roles import Principal, Role, parse_role
from outpost.contract import NAME_RE

BUILTIN_ADMIN = "admin"
MAX_EXPIRY = timedelta(days=3650)
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _one_to(n: int) -> str:
    """A regex for the decimal numbers 1..n (no leading zeros): shorter ones, then same length digit by digit."""
    digits = str(n)
    parts = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for i, ch in enumerate(digits):
        low, rest = (1 if i == 0 else 0), len(digits) - i - 1
        if int(ch) > low:
            parts.append(digits[:i] + f"[{low}-{int(ch) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(" + "|".join([*parts, digits]) + ")"


# TokenBody's expires_in: a positive count of one unit, at most MAX_EXPIRY (so the model, not a route, refuses more).
DURATION_PATTERN = (
    "^0*(" + "|".join(f"{_one_to(int(MAX_EXPIRY.total_seconds()) // sec)}{unit}" for unit, sec in _UNITS.items()) + ")$"
)

_t = ApiToken.__table__.c  # type: ignore[attr-defined]
_BY_DIGEST = select(_t.name, _t.role, _t.groups_json, _t.expires_at).where(_t.token_hash == bindparam("d"))


def parse_duration(text: str) -> timedelta:
    """'90d', '12h', '30m', '2w' -> timedelta."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise BadRequest(f"invalid duration {text!r}: use a number and s, m, h, d or w, e.g. 90d")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


class Authenticator:
    """token -> Principal; the printed admin token's digest is read once (it never changes)."""

    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self._admin_digest: str | None = None

    async def __call__(self, token: str) -> Principal:
        return await self._cp.run(self.authenticate, token)

    def authenticate(self, token: str) -> Principal:
        if self._admin_digest is None:
            with self._cp.reading() as s:
                setting = s.get(Setting, secrets.ADMIN_HASH)
            self._admin_digest = setting.value if setting is not None else ""
        if secrets.matches(token, self._admin_digest):
            return Principal(BUILTIN_ADMIN, Role.ADMIN)
        with self._cp.reading() as s:
            row = s.execute(_BY_DIGEST, {"d": secrets.digest(token)}).first()
        if row is None:
            if token.count(".") == 1 and token.split(".")[1].startswith("opw_"):
                raise Forbidden("a worker credential cannot call admin endpoints; use an API token")
            raise Unauthorized(
                "admin token rejected: neither the token `outpost server` printed nor a live token from "
                "`outpost token create` (unknown, revoked or mistyped)"
            )
        expires = as_utc(row.expires_at)
        if expires is not None and expires <= utcnow():
            raise Unauthorized(f"token {row.name!r} expired at {expires.isoformat()}; create a new one")
        groups = frozenset(json.loads(row.groups_json)) if row.groups_json else None
        return Principal(row.name, Role(row.role), groups)


def _view(t: ApiToken) -> dict[str, Any]:
    expires = as_utc(t.expires_at)
    return {
        "name": t.name,
        "role": t.role,
        "groups": json.loads(t.groups_json) if t.groups_json else None,
        "created_at": as_utc(t.created_at).isoformat() if t.created_at else None,  # type: ignore[union-attr]
        "expires_at": expires.isoformat() if expires else None,
        "expired": bool(expires and expires <= utcnow()),
        "created_by": t.created_by,
    }


def create(
    cp: ControlPlane,
    name: str,
    role: str,
    groups: list[str] | None,
    expires_in: str | None,
    created_by: str,
) -> dict[str, Any]:
    """A new token; the answer is the only place its secret ever appears (`token`)."""
    if not NAME_RE.match(name or ""):
        raise BadRequest(f"invalid token name {name!r}: use 1-128 letters, digits, '.', '_' or '-'")
    if name == BUILTIN_ADMIN:
        raise Conflict("'admin' is the token `outpost server` printed; pick another name")
    try:
        parsed = parse_role(role)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if groups and parsed != Role.OPERATOR:
        raise BadRequest("--group limits an operator token; other roles are not limited to groups")
    expires_at = None
    if expires_in:
        delta = parse_duration(expires_in)
        if delta > MAX_EXPIRY:
            raise BadRequest("a token expires within ten years at most")
        expires_at = utcnow() + delta
    secret = secrets.new_token("opt")
    with cp.session() as s:
        if groups:
            known = set(s.execute(select(WorkerGroup.name).where(WorkerGroup.name.in_(groups))).scalars())  # type: ignore[attr-defined]
            missing = sorted(set(groups) - known)
            if missing:
                raise NotFound(f"no worker group {', '.join(map(repr, missing))}; see `outpost group list`")
        row = ApiToken(
            name=name,
            role=str(parsed),
            groups_json=json.dumps(sorted(set(groups))) if groups else None,
            token_hash=secrets.digest(secret),
            expires_at=expires_at,
            created_by=created_by,
        )
        s.add(row)
        try:
            s.commit()
        except IntegrityError:
            raise Conflict(f"a token named {name!r} exists; revoke it first or pick another name") from None
        view = _view(row)
    return {**view, "token": secret}


def list_all(cp: ControlPlane) -> list[dict[str, Any]]:
    with cp.reading() as s:
        rows = s.execute(select(ApiToken).order_by(ApiToken.name)).scalars().all()
    builtin = {
        "name": BUILTIN_ADMIN,
        "role": str(Role.ADMIN),
        "groups": None,
        "created_at": None,
        "expires_at": None,
        "expired": False,
        "created_by": "outpost server",
    }
    return [builtin, *(_view(r) for r in rows)]


def revoke(cp: ControlPlane, name: str) -> dict[str, Any]:
    if name == BUILTIN_ADMIN:
        raise Conflict("the admin token `outpost server` printed cannot be revoked")
    with cp.session() as s:
        row = s.get(ApiToken, name)
        if row is None:
            raise NotFound(f"no token named {name!r}; see `outpost token list`")
        view = _view(row)
        s.delete(row)
        s.commit()
    return view
