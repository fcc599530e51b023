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


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)  # Function items have it; a plugin's custom item may not
    defs = info.name2fixturedefs.values() if info else []
    return any(d and d[-1].scope in ("module", "package") for d in defs)


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: the shares are of what runs
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each xdist worker's first share of the tests starts with the heavy modules: those with a test
    marked slow, and those whose tests share a module-scoped fixture (a server, a fleet, a collector).

    Worksteal hands worker i the i-th contiguous share of this list, and an idle worker takes the
    back half of the busiest one's queue. In collection order, a long test near the end of a share
    (the kusto-docs corpus, last of all) ran alone while the other workers idled, and a module
    with a costly module fixture late in a share was split by stealing, so two workers each built
    it (the live-conformance fleet, ~60 s). At the front of a share a module runs whole on one
    worker, early. Heavy modules, whole and in collection order, are dealt round-robin over the
    shares (a module counts once: one marked slow as a whole may hold many short cases); the other
    tests fill each share to its size, in collection order. Every worker collects the same list,
    so the order is the same on each.
    """
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def heavy(group: list[pytest.Item]) -> bool:
        return any(i.get_closest_marker("slow") or _shares_a_module_fixture(i) for i in group)

    rest = [i for g in modules.values() if not heavy(g) for i in g]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for n, group in enumerate(g for g in modules.values() if heavy(g)):
        shares[n % workers].extend(group)
    ordered: list[pytest.Item] = []
    for n, share in enumerate(shares):
        size = len(items) * (n + 1) // workers - len(items) * n // workers  # the share xdist sends worker n
        fill = max(0, size - len(share)) if n < workers - 1 else len(rest)
        ordered += share + rest[:fill]
        rest = rest[fill:]
    assert len(ordered) == len(items)
    items[:] = ordered
