"""REST API of the control plane: admin routes (admin token) and agent routes (worker credential)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StrictBool

from automation import agent_poll, dispatch, jobs, runbooks, secrets, workers
from automation.agent_poll import MAX_JOBS_PER_POLL, MAX_WAIT_S
from automation.auth import Role, RoleChecks
from automation.context import ControlPlane
from automation.errors import ControlPlaneError
from automation.notify import job_topic
from automation.params import JobIdPath, NamePath
from automation.roles import principal_of
from outpost import __version__
from outpost import contract as c
from outpost.contract import FINAL_STATUSES, JobStatus, RunbookType, StreamType
from outpost.messages import JobParamBody, Name, StrictFloat
from outpost.observer import WorkerIdentity
from outpost.settings import DISPATCH_RECHECK_S


class DraftBody(BaseModel):
    type: RunbookType
    content: str
    description: str | None = None
    retry_on_worker_loss: StrictBool | None = Field(
        default=None, description="re-queue a job whose worker is lost (Suspended after 3 activations)"
    )


class JobBody(BaseModel):
    runbook: Name
    run_on: Name
    params: list[JobParamBody] = Field(default_factory=list, max_length=jobs.MAX_PARAMS)
    timeout_s: StrictFloat | None = Field(default=None, gt=0, le=jobs.MAX_TIMEOUT_S)
    runtime_environment: Name | None = Field(default=None, description="run in this runtime environment instead")


async def _wait_for(cp: ControlPlane, topic: str, seconds: float, check: Callable[[], Any]) -> Any:
    """Run `check` (store reads, in a worker thread) until truthy, waking on `topic`, for at most `seconds`.

    For readers of one job (its streams); polls for jobs go through the dispatcher instead.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        event = cp.notifier.event(topic)
        result = await run_in_threadpool(check)
        remaining = deadline - loop.time()
        if result or remaining <= 0:
            return result
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(remaining, DISPATCH_RECHECK_S))


def _json(model: BaseModel) -> Response:
    """Serialise an already-validated model once (the hot agent routes skip FastAPI's re-validation)."""
    return Response(model.model_dump_json(), media_type="application/json")


EVENTS_ON_LOOP_CHARS = 64 * 1024  # larger events requests are stored in a worker thread


def admin_router(cp: ControlPlane, roles: RoleChecks) -> APIRouter:
    """Every route names the least role it needs (automation.roles)."""
    r = APIRouter(prefix=c.API)
    READ, OPERATE, AUTHOR, ADMIN = (Depends(roles[x]) for x in (Role.READER, Role.OPERATOR, Role.AUTHOR, Role.ADMIN))

    @r.get("/runbooks", tags=["runbooks"], dependencies=[READ])
    def list_runbooks() -> list[dict[str, Any]]:
        return runbooks.list_all(cp)

    @r.get("/runbooks/{name}", tags=["runbooks"], dependencies=[READ])
    def show_runbook(name: NamePath) -> dict[str, Any]:
        return runbooks.show(cp, name)

    @r.put("/runbooks/{name}/draft", tags=["runbooks"], dependencies=[AUTHOR])
    def save_draft(name: NamePath, body: DraftBody) -> dict[str, Any]:
        return runbooks.save_draft(cp, name, body.type, body.content, body.description, body.retry_on_worker_loss)

    @r.post("/runbooks/{name}/publish", tags=["runbooks"], dependencies=[AUTHOR])
    def publish(name: NamePath) -> dict[str, Any]:
        return runbooks.publish(cp, name)

    @r.delete("/runbooks/{name}", tags=["runbooks"], status_code=204, dependencies=[AUTHOR])
    def delete_runbook(name: NamePath) -> Response:
        runbooks.delete(cp, name)
        return Response(status_code=204)

    @r.get("/dispatch", tags=["workers"], dependencies=[READ])
    def dispatch_view() -> dict[str, Any]:
        """This replica's parked polls per group and its claim counters (claims per job stay flat)."""
        return cp.dispatcher.view()

    @r.get("/groups", tags=["workers"], dependencies=[READ])
    def list_groups() -> list[dict[str, Any]]:
        return workers.list_groups(cp)

    @r.delete("/groups/{name}", tags=["workers"], status_code=204, dependencies=[ADMIN])
    def delete_group(name: NamePath) -> Response:
        workers.delete_group(cp, name)
        return Response(status_code=204)

    @r.get("/workers", tags=["workers"], dependencies=[READ])
    def list_workers(group: str | None = None) -> list[dict[str, Any]]:
        return workers.list_workers(cp, group)

    @r.delete("/workers/{name}", tags=["workers"], dependencies=[ADMIN])
    def remove_worker(name: NamePath, group: str | None = None) -> dict[str, str]:
        return workers.remove_by_name(cp, name, group)

    @r.post("/keys/{which}/regenerate", tags=["keys"], dependencies=[ADMIN])
    def regenerate(which: Literal["primary", "secondary"]) -> dict[str, str]:
        with cp.session() as s:
            key = secrets.regenerate_key(s, cp.data_dir, which)
        return {"which": which, "registration_key": key}

    @r.post("/jobs", tags=["jobs"], status_code=201, response_model=dict[str, Any], dependencies=[OPERATE])
    async def create_job(
        body: JobBody,
        request: Request,
        idempotency_key: str | None = Header(
            None,
            alias=c.IDEMPOTENCY_HEADER,
            pattern=jobs.IDEMPOTENCY_KEY_PATTERN,
            description="a repeat within 24 h returns the job the first one started",
        ),
    ) -> Response:
        principal_of(request).require_group(body.run_on, "start jobs")
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
            runtime=body.runtime_environment,
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(orjson.dumps(job), status_code=201, media_type="application/json", headers=headers)

    @r.get("/jobs", tags=["jobs"], dependencies=[READ])
    def list_jobs(
        status: JobStatus | None = None,
        runbook: str | None = None,
        group: str | None = None,
        limit: int = Query(50, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        return jobs.list_jobs(cp, status, runbook, group, limit)

    @r.get("/jobs/{job_id}", tags=["jobs"], dependencies=[READ])
    def show_job(job_id: JobIdPath) -> dict[str, Any]:
        return jobs.view(jobs.get(cp, job_id))

    @r.post("/jobs/{job_id}/stop", tags=["jobs"], dependencies=[OPERATE])
    def stop_job(job_id: JobIdPath, request: Request) -> dict[str, Any]:
        principal_of(request).require_group(jobs.get(cp, job_id).group_name, "stop jobs")
        return jobs.stop(cp, job_id)

    @r.get("/jobs/{job_id}/streams", tags=["jobs"], dependencies=[OPERATE])
    async def job_streams(
        job_id: JobIdPath,
        request: Request,
        after: int = Query(-1, description="return records with seq greater than this"),
        limit: int = Query(1000, ge=1, le=10000),
        stream: StreamType | None = Query(None, description="only this stream type"),
        wait: float = Query(0, ge=0, le=30, description="long-poll up to this many seconds for new records"),
    ) -> dict[str, Any]:
        job = await run_in_threadpool(jobs.get, cp, job_id)
        principal_of(request).require_group(job.group_name, "read job output")

        def check() -> Any:
            # The job first: when it reads final, the records read after it hold every line.
            current = jobs.get(cp, job_id)
            records = jobs.streams(cp, job_id, after, limit, stream)
            if records or current.status in FINAL_STATUSES or wait == 0:
                return records, current
            return None

        found = await _wait_for(cp, job_topic(job_id), wait, check)
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
        wait: float = Query(cp.poll_hold_s, ge=0, le=MAX_WAIT_S, description="hold the request up to this long"),
        max_jobs: int = Query(1, alias="max", ge=1, le=MAX_JOBS_PER_POLL, description="the worker's free slots"),
        identity: WorkerIdentity = Depends(require_worker),
        body: c.PollRequest | None = None,
    ) -> Response:
        # Most polls of a parked fleet never reach here: agent_poll.PollFastPath answers them.
        return await agent_poll.serve(cp, identity, wait, max_jobs, body, request.is_disconnected)

    @r.post(c.AGENT_LEASE, response_model=c.LeaseResponse)
    async def renew(job_id: JobIdPath, identity: WorkerIdentity = Depends(require_worker)) -> Response:
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

        # A batch of many long lines takes tens of ms to store: off the loop, so health and polls keep answering.
        size = sum(len(r.text) for b in body.batches for r in b.records)
        run = cp.run_in_thread if size > EVENTS_ON_LOOP_CHARS else cp.run
        return _json(c.EventsAnswer(results=await run(apply_all)))

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
