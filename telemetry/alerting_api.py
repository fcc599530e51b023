"""REST endpoints of the built-in alert evaluator: alert states, rules, maintenance windows.

GET    /api/v1/alerts?state=firing|suppressed|resolved
GET    /api/v1/alerts/rules
POST   /api/v1/alerts/evaluate                      evaluate every rule now
GET    /api/v1/alerts/maintenance?include_expired=true
POST   /api/v1/alerts/maintenance                   {worker|group, ends_at|duration_seconds, starts_at?, comment?}
DELETE /api/v1/alerts/maintenance/{id}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from outpost.messages import Name, StrictFloat
from telemetry.alerting import AlertEvaluator


class MaintenanceIn(BaseModel):
    worker: Name | None = Field(default=None, description="silence this worker's alerts")
    group: Name | None = Field(default=None, description="silence the alerts of every worker of this group")
    starts_at: datetime | None = Field(default=None, description="default: now")
    ends_at: datetime | None = None
    duration_seconds: StrictFloat | None = Field(default=None, gt=0, description="instead of ends_at")
    comment: str = ""


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def build_alerting_router(
    evaluator: AlertEvaluator, require_read: Callable[..., Any], require_change: Callable[..., Any] | None = None
) -> APIRouter:
    """Reading alerts needs `require_read`; evaluating and maintenance windows `require_change` (default: the same)."""
    router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], dependencies=[Depends(require_read)])
    change = [Depends(require_change or require_read)]

    @router.get("")
    def list_alerts(
        state: Literal["firing", "suppressed", "resolved"] | None = Query(default=None),
    ) -> dict[str, Any]:
        return {"alerts": evaluator.alerts(state), "delivery_error": evaluator.last_delivery_error}

    @router.get("/rules")
    def list_rules() -> list[dict[str, Any]]:
        return evaluator.rule_statuses()

    @router.post("/evaluate", dependencies=change)
    def evaluate_now() -> dict[str, Any]:
        evaluator.tick(force=True)
        return {"alerts": evaluator.alerts(), "delivery_error": evaluator.last_delivery_error}

    @router.get("/maintenance")
    def list_maintenance(include_expired: bool = False) -> list[dict[str, Any]]:
        return evaluator.maintenance_windows(include_expired=include_expired)

    @router.post("/maintenance", status_code=status.HTTP_201_CREATED, dependencies=change)
    def add_maintenance(body: MaintenanceIn) -> dict[str, Any]:
        if not body.worker and not body.group:
            raise HTTPException(422, "give a worker or a group to silence")
        if (body.ends_at is None) == (body.duration_seconds is None):
            raise HTTPException(422, "give exactly one of ends_at or duration_seconds")
        starts = _utc(body.starts_at) if body.starts_at else datetime.now(UTC)
        ends = _utc(body.ends_at) if body.ends_at else starts + timedelta(seconds=body.duration_seconds or 0)
        try:
            window = evaluator.add_maintenance(
                worker=body.worker, group=body.group, starts_at=starts, ends_at=ends, comment=body.comment
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return window.to_dict()

    @router.delete("/maintenance/{window_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=change)
    def remove_maintenance(window_id: str) -> None:
        if not evaluator.remove_maintenance(window_id):
            raise HTTPException(404, f"no maintenance window {window_id!r}")

    return router
