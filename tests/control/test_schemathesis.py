"""schemathesis, every one of its checks, against a real `outpost server`'s own OpenAPI document.

`schemathesis run --checks all`, as a user would run it, once with a reader token and once with the
admin token: its coverage, fuzzing and stateful phases, so the checks that need them run too (an
unsupported method gets 405 with an `Allow` naming every method of the path; a deleted object reads
404 afterwards; a created one is there; a request the schema allows is accepted and one it forbids
is refused; auth is enforced where declared; status codes, bodies, content types and headers as
documented). The few operations whose refusals depend on meaning, not shape, are in
schemathesis.toml next to this file, each with why.

object_level_authorization is on as well, and finds nothing to compare: it needs peer identities
that own objects, and Outpost has none (a role reads every object; an operator's groups are
tested in test_roles.py).

The server is this module's alone: the admin run creates, changes and deletes whatever it likes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.procs import Server

pytestmark = pytest.mark.slow  # over 20 s each

EXAMPLES = 6  # per operation and phase: a run is about 30 s on 2 cores
SEED = 1  # a failure reproduces with the same seed (and says how to replay it)
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def st_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("schemathesis") / "server")
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    r = httpx.post(f"{server.url}/api/v1/tokens/st-reader", json={"role": "reader"},
                   headers={"Authorization": f"Bearer {server.token}"}, timeout=30)  # fmt: skip
    assert r.status_code == 201, r.text
    server.reader = r.json()["token"]  # type: ignore[attr-defined]
    yield server
    server.stop()


def _run_all(server: Server, token: str, workdir: Path) -> str:
    """`schemathesis run` with every check on every operation: its report, or fail with it."""
    args = [
        *(str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run", f"{server.url}/openapi.json"),
        *("--header", f"Authorization: Bearer {token}", "--checks", "all", "--max-examples", str(EXAMPLES)),
        # One worker: schemathesis's threads race CPython 3.11's AST recursion counter (gh-106905,
        # fixed in 3.11.8): hypothesis's ast.parse then fails with "AST constructor recursion depth mismatch".
        *("--seed", str(SEED), "--workers", "1", "--generation-database", "none", "--request-timeout", "60"),
    ]
    # In a directory of its own: schemathesis keeps a cache of failures (.schemathesis/) where it runs.
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, cwd=workdir)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-20000:]
    return report


def _tested(report: str) -> int:
    line = next(line for line in report.splitlines() if line.strip().startswith("Tested:"))
    return int(line.split(":")[1])


def test_the_api_answers_a_reader_as_its_openapi_says(st_server: Server, tmp_path: Path) -> None:
    assert _tested(_run_all(st_server, st_server.reader, tmp_path)) > 50  # type: ignore[attr-defined]


def test_the_api_answers_an_admin_as_its_openapi_says(st_server: Server, tmp_path: Path) -> None:
    assert _tested(_run_all(st_server, st_server.token, tmp_path)) > 50
