"""Runbooks: a draft that authors edit and a published version that jobs run."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from automation import limits
from automation.context import ControlPlane
from automation.errors import BadRequest, NotFound
from automation.models import Runbook, as_utc, utcnow
from outpost.contract import NAME_RE, RunbookType

MAX_RUNBOOK_BYTES = 4 * 1024 * 1024


def _view(rb: Runbook, with_content: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": rb.name,
        "type": rb.runbook_type,
        "description": rb.description,
        "state": "Published"
        if rb.published_version and rb.draft_content is None
        else ("Edit" if rb.published_version else "New"),
        "has_draft": rb.draft_content is not None,
        "published_version": rb.published_version or None,
        "published_at": rb.published_at.isoformat() if rb.published_at else None,
        "draft_updated_at": rb.draft_updated_at.isoformat() if rb.draft_updated_at else None,
        "retry_on_worker_loss": rb.retry_on_worker_loss,
        "limits": limits.of_runbook(rb),  # they narrow its group's (automation/limits.py)
        "created_at": as_utc(rb.created_at).isoformat(),
    }
    if with_content:
        view["draft_content"] = rb.draft_content
        view["published_content"] = rb.published_content
    return view


def _get(s: Any, name: str) -> Runbook:
    rb = s.exec(select(Runbook).where(Runbook.name == name)).first()
    if rb is None:
        raise NotFound(f"runbook {name!r} does not exist")
    return rb


def save_draft(
    cp: ControlPlane,
    name: str,
    runbook_type: str,
    content: str,
    description: str | None = None,
    retry_on_worker_loss: bool | None = None,
) -> dict[str, Any]:
    if not NAME_RE.match(name):
        raise BadRequest(f"invalid runbook name {name!r}: use letters, digits, '.', '_' or '-'")
    _check_type(runbook_type)
    if len(content.encode()) > MAX_RUNBOOK_BYTES:
        raise BadRequest(f"runbook content exceeds {MAX_RUNBOOK_BYTES // 1024 // 1024} MiB")
    with cp.session() as s:
        rb = s.exec(select(Runbook).where(Runbook.name == name)).first()
        if rb is None:
            rb = Runbook(name=name, runbook_type=runbook_type)
        rb.runbook_type = runbook_type
        rb.draft_content = content
        rb.draft_updated_at = utcnow()
        if description is not None:
            rb.description = description[:512]
        if retry_on_worker_loss is not None:
            rb.retry_on_worker_loss = retry_on_worker_loss
        s.add(rb)
        s.commit()
        s.refresh(rb)
        return _view(rb)


def _check_type(runbook_type: str) -> None:
    try:
        RunbookType(runbook_type)
    except ValueError:
        raise BadRequest(
            f"unknown runbook type {runbook_type!r}: use one of {', '.join(t.value for t in RunbookType)}"
        ) from None


def define(
    cp: ControlPlane, name: str, runbook_type: str, description: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Create a runbook with an empty draft, or change an existing one's type and description and
    keep its content (ARM's `PUT runbooks/{name}`: content comes separately). -> (view, created)."""
    with cp.reading() as s:
        exists = s.exec(select(Runbook.id).where(Runbook.name == name)).first() is not None
    if not exists:
        return save_draft(cp, name, runbook_type, "", description), True
    _check_type(runbook_type)
    with cp.session() as s:
        rb = _get(s, name)
        rb.runbook_type = runbook_type
        if description is not None:
            rb.description = description[:512]
        s.add(rb)
        s.commit()
        s.refresh(rb)
        return _view(rb), False


def publish(cp: ControlPlane, name: str) -> dict[str, Any]:
    with cp.session() as s:
        rb = _get(s, name)
        if rb.draft_content is None:
            if rb.published_version:
                return _view(rb)  # nothing new to publish: idempotent
            raise BadRequest(f"runbook {name!r} has no draft to publish; upload content first")
        rb.published_content = rb.draft_content
        rb.published_type = rb.runbook_type
        rb.published_version += 1
        rb.published_at = utcnow()
        rb.draft_content = None
        rb.draft_updated_at = None
        s.add(rb)
        s.commit()
        s.refresh(rb)
        return _view(rb)


def show(cp: ControlPlane, name: str) -> dict[str, Any]:
    with cp.reading() as s:
        return _view(_get(s, name), with_content=True)


def list_all(cp: ControlPlane) -> list[dict[str, Any]]:
    with cp.reading() as s:
        return [_view(rb) for rb in s.exec(select(Runbook).order_by(Runbook.name)).all()]


def delete(cp: ControlPlane, name: str) -> None:
    with cp.session() as s:
        s.delete(_get(s, name))
        s.commit()


def published(cp: ControlPlane, name: str) -> Runbook:
    with cp.reading() as s:
        rb = _get(s, name)
    if not rb.published_version or rb.published_content is None:
        raise BadRequest(f"runbook {name} has no published version; publish it first")
    return rb
