"""Build the control plane and its FastAPI app; other parts add their routers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from automation import (
    agent_poll,
    api,
    arm,
    db,
    limits,
    middleware,
    runtime_api,
    runtime_envs,
    secrets,
    tokens_api,
    workers,
)
from automation.audit import AuditTrail
from automation.auth import RoleChecks, role_checks, worker_dependency
from automation.background import Background
from automation.context import ControlPlane
from automation.roles import annotate_openapi
from outpost import __version__
from outpost.contract import AGENT_EVENTS, MAX_EVENTS_POST_BYTES
from outpost.settings import MAX_BODY_BYTES

log = logging.getLogger("outpost.server")
EVENTS_LIMIT = {AGENT_EVENTS: MAX_EVENTS_POST_BYTES}  # the contract's cap on one events request


def open_control_plane(data_dir: Path, database_url: str | None = None, **options: object) -> ControlPlane:
    """Connect to the store, migrate it, and start cross-replica wake-ups on PostgreSQL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url or db.sqlite_url(data_dir)
    engine = db.make_engine(url)
    db.migrate(engine)
    cp = ControlPlane(engine=engine, data_dir=data_dir, **options)  # type: ignore[arg-type]
    if cp.dialect == "postgresql":
        cp.notifier.start_listener(db.listen_engine(url), engine)
    return cp


def admin_digest(cp: ControlPlane) -> str:
    with cp.session() as s:
        setting = s.get(secrets.Setting, secrets.ADMIN_HASH)
    if setting is None:
        raise RuntimeError("no admin token yet: call secrets.ensure_credentials first")
    return setting.value


def create_app(
    cp: ControlPlane,
    extra_routers: Callable[[RoleChecks, Callable[..., object]], Sequence[APIRouter]] | None = None,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """`extra_routers(roles, require_worker)` lets the server add telemetry routes."""
    admin_digest(cp)  # fails early when the credentials were never created
    roles = role_checks(cp)
    require_worker = worker_dependency(cp)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        cp.notifier.bind(loop)
        cp.notifier.on_credentials_changed = workers.clear_auth_cache  # another replica removed a worker
        cp.dispatcher.start(loop)
        background = Background(cp)
        background.start()
        try:
            yield
        finally:
            await background.stop()
            await cp.dispatcher.close()
            for hook in on_shutdown:
                hook()
            cp.notifier.close()
            cp.engine.dispose()

    app = FastAPI(
        title="Outpost",
        version=__version__,
        description="Control plane and telemetry collector of Outpost hybrid runbook workers.",
        lifespan=lifespan,
        # Job traces are ours (automation.tracing); per-request spans for every long-poll and
        # lease renewal would drown them and cost more than the request itself.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    # Innermost of the middlewares (added first): every edge below applies to it as to the routes.
    app.add_middleware(agent_poll.PollFastPath, cp=cp)  # type: ignore[arg-type]
    middleware.install(app)
    app.add_middleware(middleware.BodyLimit, limit=MAX_BODY_BYTES, paths=EVENTS_LIMIT)  # type: ignore[arg-type]
    app.add_middleware(middleware.ServiceHeader)  # type: ignore[arg-type]
    app.include_router(api.public_router(cp))
    app.include_router(api.agent_router(cp, require_worker))
    app.include_router(api.admin_router(cp, roles))
    app.include_router(tokens_api.router(cp, roles))
    app.include_router(limits.router(cp, roles))
    app.include_router(runtime_envs.router(cp, roles))
    for router in runtime_api.routers(cp, roles, require_worker):
        app.include_router(router)
    if extra_routers is not None:
        for router in extra_routers(roles, require_worker):
            app.include_router(router)
    app.mount(arm.PREFIX, arm.build(cp, roles))  # the Azure-compatible door, with ARM's error shapes
    app.add_middleware(AuditTrail, cp=cp)  # type: ignore[arg-type]
    annotate_openapi(app, require_worker)
    middleware.document_errors(app)
    return app
