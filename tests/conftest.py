"""Fixtures: real servers, real agents, a real PostgreSQL database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.procs import Agent, Server

PG_ADMIN_DSN = os.environ.get("OUTPOST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database; in CI a missing server fails the test instead of skipping it."""
    import psycopg

    problem = _pg_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_ADMIN_DSN}: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_DSN} ({problem}); CI runs these")
    name = f"outpost_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(name: str = "server", **kwargs: object) -> Server:
        server = Server(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def make(
        server: Server,
        group: str = "g1",
        name: str | None = None,
        start: bool = True,
        run_args: list[str] | None = None,
    ) -> Agent:
        name = name or f"w{len(agents) + 1}"
        agent = Agent(server, tmp_path / f"state-{name}", group, name, run_args)
        agent.register()
        agents.append(agent)
        return agent.start() if start else agent

    yield make
    for a in agents:
        a.stop()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that runbooks, which a root agent runs as another user, can write to (tmp_path is 0700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="outpost-shared-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
