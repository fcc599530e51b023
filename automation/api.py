"""REST API of the control plane: admin routes (admin token) and agent routes (worker credential)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from automation import dispatch, jobs, runbooks, secrets, workers
from automation.context import ControlPlane
from automation.errors import BadRequest, ControlPlaneError
from automation.notify import group_topic, job_topic
from outpost import __version__
from outpost import contract as c
from outpost.contract import FINAL_STATUSES, JobParam
from outpost.observer import WorkerIdentity

RECHECK_S = 5.0  # waiters re-read the store this often even without a wake-up
MAX_JOBS_PER_POLL = 64


class DraftBody(BaseModel):
    type: str = Field(description="python3, bash or pwsh")
    content: str
    description: str | None = None
    retry_on_worker_loss: bool | None = Field(
        default=None, description="re-queue a job whose worker is lost (Suspended after 3 activations)"
    )


class JobBody(BaseModel):
    runbook: str
    run_on: str
    params: list[JobParam] = Field(default_factory=list)
    timeout_s: float | None = None


async def _wait_for(
    cp: ControlPlane,
    topic: str,
    seconds: float,
    check: Callable[[], Any],
    request: Request | None = None,
    *,
    large_reads: bool = False,
) -> Any:
    """Run `check` until it returns something truthy, waking on `topic`, for at most `seconds`.

    With `request`, stop early once the client has gone: a poll must never claim a
    job for a worker that is no longer listening (the job would wait out a lease).
    `large_reads`: `check` may read thousands of rows, so it goes to a worker thread
    even on SQLite rather than hold up the event loop.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    first = True
    while True:
        event = cp.notifier.event(topic)
        # (A client that has just connected is there; after a wait, look again.)
        if request is not None and not first and await request.is_disconnected():
            return None
        first = False
        result = await (run_in_threadpool(check) if large_reads else cp.run(check))
        remaining = deadline - loop.time()
        if result or remaining <= 0:
            return result
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(remaining, RECHECK_S))


def _json(model: BaseModel) -> Response:
    """Serialise an already-validated model once (the hot agent routes skip FastAPI's re-validation)."""
    return Response(model.model_dump_json(), media_type="application/json")


def admin_router(cp: ControlPlane, require_admin: Callable[..., None]) -> APIRouter:
    r = APIRouter(prefix=c.API, dependencies=[Depends(require_admin)])

    @r.get("/runbooks", tags=["runbooks"])
    def list_runbooks() -> list[dict[str, Any]]:
        return runbooks.list_all(cp)

    @r.get("/runbooks/{name}", tags=["runbooks"])
    def show_runbook(name: str) -> dict[str, Any]:
        return runbooks.show(cp, name)

    @r.put("/runbooks/{name}/draft", tags=["runbooks"])
    def save_draft(name: str, body: DraftBody) -> dict[str, Any]:
        return runbooks.save_draft(cp, name, body.type, body.content, body.description, body.retry_on_worker_loss)

    @r.post("/runbooks/{name}/publish", tags=["runbooks"])
    def publish(name: str) -> dict[str, Any]:
        return runbooks.publish(cp, name)

    @r.delete("/runbooks/{name}", tags=["runbooks"], status_code=204)
    def delete_runbook(name: str) -> Response:
        runbooks.delete(cp, name)
        return Response(status_code=204)

    @r.get("/groups", tags=["workers"])
    def list_groups() -> list[dict[str, Any]]:
        return workers.list_groups(cp)

    @r.delete("/groups/{name}", tags=["workers"], status_code=204)
    def delete_group(name: str) -> Response:
        workers.delete_group(cp, name)
        return Response(status_code=204)

    @r.get("/workers", tags=["workers"])
    def list_workers(group: str | None = None) -> list[dict[str, Any]]:
        return workers.list_workers(cp, group)

    @r.delete("/workers/{name}", tags=["workers"])
    def remove_worker(name: str, group: str | None = None) -> dict[str, str]:
        return workers.remove_by_name(cp, name, group)

    @r.post("/keys/{which}/regenerate", tags=["keys"])
    def regenerate(which: str) -> dict[str, str]:
        if which not in secrets.KEY_HASH:
            raise BadRequest("say which key to regenerate: primary or secondary")
        with cp.session() as s:
            key = secrets.regenerate_key(s, cp.data_dir, which)
        return {"which": which, "registration_key": key}

    @r.post("/jobs", tags=["jobs"], status_code=201, response_model=dict[str, Any])
    async def create_job(
        body: JobBody,
        request: Request,
        idempotency_key: str | None = Header(
            None, alias=c.IDEMPOTENCY_HEADER, description="a repeat within 24 h returns the job the first one started"
        ),
    ) -> Response:
        # A caller's W3C traceparent makes the job's trace a child of the caller's.
        # A repeated Idempotency-Key returns the job it started, again as 201, marked Idempotent-Replayed.
        job, replayed = await cp.run(
            jobs.create,
            cp,
            body.runbook,
            body.run_on,
            body.params,
            body.timeout_s,
            request.headers.get("traceparent"),
            idempotency_key,
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(orjson.dumps(job), status_code=201, media_type="application/json", headers=headers)

    @r.get("/jobs", tags=["jobs"])
    def list_jobs(
        status: str | None = None,
        runbook: str | None = None,
        group: str | None = None,
        limit: int = Query(50, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        return jobs.list_jobs(cp, status, runbook, group, limit)

    @r.get("/jobs/{job_id}", tags=["jobs"])
    def show_job(job_id: str) -> dict[str, Any]:
        return jobs.view(jobs.get(cp, job_id))

    @r.post("/jobs/{job_id}/stop", tags=["jobs"])
    def stop_job(job_id: str) -> dict[str, Any]:
        return jobs.stop(cp, job_id)

    @r.get("/jobs/{job_id}/streams", tags=["jobs"])
    async def job_streams(
        job_id: str,
        after: int = Query(-1, description="return records with seq greater than this"),
        limit: int = Query(1000, ge=1, le=10000),
        stream: str | None = Query(None, description="only this stream type, e.g. Output"),
        wait: float = Query(0, ge=0, le=30, description="long-poll up to this many seconds for new records"),
    ) -> dict[str, Any]:
        job = await run_in_threadpool(jobs.get, cp, job_id)

        def check() -> Any:
            records = jobs.streams(cp, job_id, after, limit, stream)
            current = jobs.get(cp, job_id)
            if records or current.status in FINAL_STATUSES or wait == 0:
                return records, current
            return None

        found = await _wait_for(cp, job_topic(job_id), wait, check, large_reads=True)
        records, job = found if found else ([], await run_in_threadpool(jobs.get, cp, job_id))
        return {"job": jobs.view(job), "records": records}

    return r


def agent_router(cp: ControlPlane, require_worker: Callable[..., Any]) -> APIRouter:
    r = APIRouter(tags=["agent"])

    @r.post(c.AGENT_REGISTER, status_code=201)
    def register(body: c.RegisterRequest) -> c.RegisterResponse:
        return workers.register(cp, body)

    @r.get(c.AGENT_SELF)
    def whoami(identity: WorkerIdentity = Depends(require_worker)) -> dict[str, str]:
        return {"worker_id": identity.worker_id, "name": identity.name, "group": identity.group}

    @r.delete(c.AGENT_SELF, status_code=204)
    def deregister(identity: WorkerIdentity = Depends(require_worker)) -> Response:
        workers.deregister(cp, identity)
        return Response(status_code=204)

    @r.post(c.AGENT_POLL, response_model=c.PollResponse, responses={204: {"description": "no job in the hold time"}})
    async def poll(
        request: Request,
        wait: float = Query(cp.poll_hold_s, ge=0, le=60, description="hold the request up to this long"),
        max_jobs: int = Query(1, alias="max", ge=1, le=MAX_JOBS_PER_POLL, description="the worker's free slots"),
        identity: WorkerIdentity = Depends(require_worker),
        body: c.PollRequest | None = None,
    ) -> Response:
        held = body.held if body is not None else None  # None: an agent that does not say what it holds

        def check() -> list[c.JobAssignment]:
            return dispatch.claim(cp, identity, max_jobs, held)

        jobs = await _wait_for(cp, group_topic(identity.group), wait, check, request)
        cp.observer.on_poll(identity, bool(jobs))
        return _json(c.PollResponse(jobs=jobs)) if jobs else Response(status_code=204)

    @r.post(c.AGENT_LEASE, response_model=c.LeaseResponse)
    async def renew(job_id: str, identity: WorkerIdentity = Depends(require_worker)) -> Response:
        return _json(await cp.run(dispatch.renew, cp, identity, job_id))

    @r.post(c.AGENT_EVENTS, response_model=c.EventsAnswer)
    async def events(body: c.EventsPost, identity: WorkerIdentity = Depends(require_worker)) -> Response:
        def apply_all() -> list[c.EventsResult]:
            results = []
            for batch in body.batches:
                try:
                    ack = dispatch.apply_events(cp, identity, batch.job_id, batch)
                except ControlPlaneError as exc:
                    results.append(c.EventsResult(job_id=batch.job_id, error_status=exc.status, error=exc.message))
                else:
                    results.append(c.EventsResult(job_id=batch.job_id, ack=ack))
            return results

        return _json(c.EventsAnswer(results=await cp.run(apply_all)))

    return r


def public_router(cp: ControlPlane) -> APIRouter:
    r = APIRouter(tags=["service"])

    @r.api_route(c.HEALTH, methods=["GET", "POST"])
    def health() -> dict[str, str]:
        return {"service": "outpost", "version": __version__}

    @r.get(c.ENDPOINTS)
    def endpoints(request: Request) -> dict[str, Any]:
        """Names and ports a worker must reach; `outpost diagnose` checks each."""
        base = cp.public_url or str(request.base_url)
        parts = urlsplit(base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or "localhost"
        return {
            "region": cp.region,
            "endpoints": [
                {
                    "name": host,
                    "port": port,
                    "url": f"{parts.scheme}://{parts.netloc}",
                    "purpose": "agent service: registration, job polling, streams, heartbeats",
                }
            ],
        }

    return r
