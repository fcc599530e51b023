"""The agent poll's two doors answer alike.

`automation.agent_poll.PollFastPath` takes well-formed polls from workers whose credential is
cached and hands everything else to the documented FastAPI route. Each request below is sent
twice by the same worker: first as a newly registered worker's first request (its credential
is not cached yet, so the route takes it), then again with the credential cached. Status and body must
match, and the server's own counter says which door took each (`GET /api/v1/dispatch` "fast").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.api import publish, start_job
from tests.helpers.procs import Server

POLL = "/api/v1/agent/poll"

# (name, query, headers beyond the credential, body bytes or None, does the fast path take it?)
CASES: list[tuple[str, str, dict[str, str], bytes | None, bool]] = [
    ("no body", "wait=0", {}, None, True),
    ("empty held", "wait=0", {"content-type": "application/json"}, b'{"held": [], "settle": false}', True),
    ("lower-case scheme", "wait=0&max=2", {"content-type": "application/json"}, b'{"held": []}', True),
    ("wait too long", "wait=61", {}, None, False),
    ("wait not a number", "wait=nan", {}, None, False),
    ("max zero", "wait=0&max=0", {}, None, False),
    ("malformed JSON", "wait=0", {"content-type": "application/json"}, b"{not json", False),
    ("whitespace body", "wait=0", {"content-type": "application/json"}, b"   ", False),
    ("held not a list", "wait=0", {"content-type": "application/json"}, b'{"held": "x"}', False),
    ("form body", "wait=0", {"content-type": "application/x-www-form-urlencoded"}, b"held=x", False),
]


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the cases: each uses a worker of its own, so they cannot see each other's state."""
    server = Server(tmp_path_factory.mktemp("doors") / "server").start()
    yield server
    server.stop()


def _fast(server: Server) -> int:
    with server.client() as c:
        return int(c.get("/api/v1/dispatch").json()["fast"])


def _poll(server: Server, credential: str, query: str, headers: dict[str, str], body: bytes | None,
          scheme: str = "Bearer") -> httpx.Response:  # fmt: skip
    h = {"Authorization": f"{scheme} {credential}", **headers}
    return httpx.post(f"{server.url}{POLL}?{query}", headers=h, content=body, timeout=30)


def _register(server: Server, name: str) -> str:
    body = {"key": server.registration_key, "group": "doors", "name": name}
    r = httpx.post(f"{server.url}/api/v1/agent/register", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["credential"]


def _answer(r: httpx.Response) -> tuple[int, Any]:
    return r.status_code, (r.json() if r.content else None)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_both_doors_answer_alike(doors: Server, case: tuple[str, str, dict[str, str], bytes | None, bool]) -> None:
    server, (name, query, headers, body, fast) = doors, case
    scheme = "bearer" if name == "lower-case scheme" else "Bearer"
    credential = _register(server, "w-" + name.replace(" ", "-"))  # a credential no cache holds yet
    before = _fast(server)
    cold = _poll(server, credential, query, headers, body, scheme)
    assert _fast(server) == before, "a credential not yet cached must go through the route"
    warm = _poll(server, credential, query, headers, body, scheme)
    assert _answer(warm) == _answer(cold), name
    assert warm.headers.get("x-outpost-version") == cold.headers.get("x-outpost-version") is not None
    assert _fast(server) == before + (1 if fast else 0), f"{name}: fast path taken={not fast}"


def test_fast_path_hands_out_jobs_and_refuses_a_removed_worker(server: Server) -> None:
    credential = _register(server, "taker")
    with server.client() as c:
        publish(c, "hello", "echo hi\n")
        ids = {start_job(c, "hello", group="doors") for _ in range(3)}
    first = _poll(server, credential, "wait=0&max=1", {}, b"")  # cold: the route
    before = _fast(server)
    held = json.dumps({"held": [j["job_id"] for j in first.json()["jobs"]]}).encode()  # else re-offered as lost
    second = _poll(server, credential, "wait=0&max=2", {"content-type": "application/json"}, held)
    assert _fast(server) == before + 1
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    got = [j["job_id"] for j in first.json()["jobs"] + second.json()["jobs"]]
    assert sorted(got) == sorted(ids), (got, ids)  # each job once, max honoured by both doors
    assert all(j["runbook"] == "hello" and j["content"] == "echo hi\n" for j in second.json()["jobs"])
    with server.client() as c:
        assert c.delete("/api/v1/workers/taker", params={"group": "doors"}).status_code == 200
    gone = _poll(server, credential, "wait=0", {}, None)
    assert gone.status_code == 401, gone.text
