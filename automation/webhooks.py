"""Webhooks: a secret URL that starts a runbook, as on Azure Automation.

The token is shown once, at creation; only its SHA-256 digest is stored. A POST to
``/webhooks?token=TOKEN`` (Azure's shape) or ``/webhooks/TOKEN`` starts the linked
runbook on its group and answers ``202 {"JobIds": [...]}``. A wrong, expired or
disabled token gets the same ``404`` and starts nothing.

The runbook receives Azure's WebhookData as its **first positional parameter**
(``sys.argv[1]`` in Python, ``$1`` in bash), a JSON object::

    {"WebhookName": "...", "RequestBody": "<the body, as text>", "RequestHeader": {"Name": "value", ...}}

followed by the webhook's own parameters. Credentials a caller may send
(``Authorization``, ``Cookie``, ``Proxy-Authorization``) are left out of RequestHeader.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from automation import jobs, lifecycle, runbooks, secrets
from automation.context import ControlPlane
from automation.errors import STORE, BadRequest, Conflict, ControlPlaneError, NotFound, is_store_outage
from automation.models import Webhook, WorkerGroup, as_utc, utcnow
from outpost.contract import IDEMPOTENCY_HEADER, NAME_RE, WEBHOOKS, JobParam

DEFAULT_EXPIRY = timedelta(days=365)
MAX_EXPIRY = timedelta(days=10 * 365)
# The WebhookData reaches the runbook as one argv value: keep it within the per-parameter cap.
MAX_WEBHOOK_DATA_BYTES = jobs.MAX_PARAM_VALUE_BYTES
_DROPPED_HEADERS = {"authorization", "cookie", "proxy-authorization"}
NOT_FOUND = "webhook not found (wrong token, expired or disabled)"
TOKEN_PREFIX = "opwh"
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}_[A-Za-z0-9_-]{{43}}\Z")  # secrets.new_token's 32 random bytes
FIRE_ATTEMPTS = 3  # a job start that met a store blip is tried again, with the same key
FIRE_RETRY_S = 0.25


class PayloadTooLarge(ControlPlaneError):
    status = 413


def view(w: Webhook) -> dict[str, Any]:
    expires = as_utc(w.expires_at)
    return {
        "name": w.name,
        "runbook": w.runbook_name,
        "run_on": w.run_on,
        "params": json.loads(w.params_json),
        "enabled": w.enabled,
        "expires_at": expires.isoformat(),
        "expired": expires <= utcnow(),
        "created_at": as_utc(w.created_at).isoformat(),
        "last_used_at": as_utc(w.last_used_at).isoformat() if w.last_used_at else None,
    }


def create(
    cp: ControlPlane,
    name: str,
    runbook: str,
    run_on: str,
    params: list[JobParam] | None = None,
    expires_at: str | None = None,
    expires_in_s: float | None = None,
    enabled: bool = True,
    token: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Returns the view and the token (never stored, never shown again). `token`: one `new_token`
    made earlier (ARM's generateUri hands it out before the webhook exists)."""
    if not NAME_RE.match(name or ""):
        raise BadRequest(f"invalid webhook name {name!r}: use 1-128 letters, digits, '.', '_' or '-'")
    params = params or []
    jobs.validate_params(jobs.azure_positional(params))  # as jobs.create will read them
    runbooks.published(cp, runbook)
    now = utcnow()
    if expires_at and expires_in_s is not None:
        raise BadRequest("give either expires_at or expires_in_s, not both")
    if expires_at:
        try:
            expiry = as_utc(datetime.fromisoformat(expires_at)).astimezone(UTC)
        except ValueError:
            raise BadRequest(f"expiry {expires_at!r} is not ISO 8601") from None
    elif expires_in_s is not None:
        expiry = now + timedelta(seconds=expires_in_s)
    else:
        expiry = now + DEFAULT_EXPIRY
    if expiry <= now:
        raise BadRequest("the expiry must be in the future")
    if expiry > now + MAX_EXPIRY:
        raise BadRequest("the expiry can be at most 10 years away")
    if token is None:
        token = new_token()
    elif not _TOKEN_RE.match(token):
        raise BadRequest("the webhook URI's token is not one this server generated (generateUri)")
    hook = Webhook(
        name=name,
        runbook_name=runbook,
        run_on=run_on,
        params_json=json.dumps([p.model_dump() for p in params]),
        token_hash=secrets.digest(token),
        enabled=enabled,
        expires_at=expiry,
    )
    with cp.session() as s:
        if s.exec(select(WorkerGroup).where(WorkerGroup.name == run_on)).first() is None:
            raise NotFound(f"worker group {run_on!r} does not exist; register a worker into it first")
        if s.exec(select(Webhook).where(Webhook.name == name)).first() is not None:
            raise Conflict(f"webhook {name!r} already exists; delete it first or pick another name")
        s.add(hook)
        s.commit()
        s.refresh(hook)
    return view(hook), token


def new_token() -> str:
    return secrets.new_token(TOKEN_PREFIX)


def url_for(base: str, token: str) -> str:
    """The URL a webhook's callers POST to (Azure's shape: the token in the query)."""
    return f"{base.rstrip('/')}{WEBHOOKS}?token={token}"


def _get(s: Any, name: str) -> Webhook:
    w = s.exec(select(Webhook).where(Webhook.name == name)).first()
    if w is None:
        raise NotFound(f"webhook {name!r} does not exist")
    return w


def show(cp: ControlPlane, name: str) -> dict[str, Any]:
    with cp.reading() as s:
        return view(_get(s, name))


def list_all(cp: ControlPlane) -> list[dict[str, Any]]:
    with cp.reading() as s:
        return [view(w) for w in s.exec(select(Webhook).order_by(Webhook.name)).all()]


def delete(cp: ControlPlane, name: str) -> None:
    with cp.session() as s:
        s.delete(_get(s, name))
        s.commit()


def set_enabled(cp: ControlPlane, name: str, enabled: bool) -> dict[str, Any]:
    with cp.session() as s:
        w = _get(s, name)
        w.enabled = enabled
        s.add(w)
        s.commit()
        s.refresh(w)
        return view(w)


def lookup(cp: ControlPlane, token: str) -> Webhook:
    if not token or len(token) > 256:
        raise NotFound(NOT_FOUND)
    with cp.session() as s:
        w = s.exec(select(Webhook).where(Webhook.token_hash == secrets.digest(token))).first()
    if w is None or not w.enabled or as_utc(w.expires_at) <= utcnow():
        raise NotFound(NOT_FOUND)
    return w


def webhook_data(name: str, body: bytes, headers: list[tuple[str, str]]) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the webhook body must be UTF-8 text (e.g. JSON)") from None
    header: dict[str, str] = {}
    for key, value in headers:
        if key.lower() in _DROPPED_HEADERS:
            continue
        canonical = "-".join(part.capitalize() for part in key.split("-"))
        header[canonical] = f"{header[canonical]},{value}" if canonical in header else value
    data = json.dumps({"WebhookName": name, "RequestBody": text, "RequestHeader": header}, ensure_ascii=False)
    if len(data.encode()) > MAX_WEBHOOK_DATA_BYTES:
        raise PayloadTooLarge(
            f"webhook payload too large: body and headers must stay under {MAX_WEBHOOK_DATA_BYTES // 1024} KiB"
        )
    return data


def fire(cp: ControlPlane, token: str, body: bytes, headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Start the webhook's runbook: one job per request, even when the store falters mid-way.

    The request gets a key (the caller's `Idempotency-Key`, else a fresh one) before the first
    attempt, and every attempt reuses it: an attempt whose commit went through but whose answer
    was lost is found again instead of starting a second job. A caller that retries with the same
    `Idempotency-Key` gets the same job id back.
    """
    hook = lookup(cp, token)
    data = webhook_data(hook.name, body, headers)
    params = [JobParam(name=None, value=data), *(JobParam(**p) for p in json.loads(hook.params_json))]
    given = next((v for k, v in headers if k.lower() == IDEMPOTENCY_HEADER.lower()), None)
    key = jobs.check_idempotency_key(given) if given is not None else uuid.uuid4().hex
    once = lifecycle.Idempotency(
        key=f"webhook:{hook.id}:{key}",
        fingerprint=lifecycle.fingerprint(webhook=hook.id, body=hashlib.sha256(body).hexdigest()),
    )
    for attempt in range(1, FIRE_ATTEMPTS + 1):
        try:
            job, _ = jobs.create(cp, hook.runbook_name, hook.run_on, params, once=once)
            break
        except Exception as exc:
            if attempt == FIRE_ATTEMPTS or not is_store_outage(exc):
                raise
            time.sleep(FIRE_RETRY_S * attempt)
    try:
        with cp.session() as s:
            s.execute(update(Webhook).where(Webhook.id == hook.id).values(last_used_at=utcnow()))
            s.commit()
    except Exception as exc:  # the job is queued; a missed "last used" stamp must not hide its id
        if not is_store_outage(exc):
            raise
        STORE.failed(exc)
    return {"JobIds": [job["id"]]}
