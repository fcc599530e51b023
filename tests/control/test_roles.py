"""Roles and named tokens: the authorisation matrix over every route, revocation on every
replica, audit rows naming the token, and the `outpost token` CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.api import publish, start_job, wait_job
from tests.helpers.procs import Server, cli, wait_until

RANK = {"reader": 0, "operator": 1, "author": 2, "admin": 3}
PLACEHOLDERS = {
    "job_id": "00000000-0000-0000-0000-000000000000",
    "plural": "variables",
    "which": "nosuch",
}


def _token(server: Server, name: str, role: str, **extra: Any) -> str:
    with server.client() as c:
        r = c.post(f"/api/v1/tokens/{name}", json={"role": role, **extra})
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests here that only add tokens, runbooks and workers of names of their own
    (test_token_cli, which lists every token, starts its own)."""
    server = Server(tmp_path_factory.mktemp("roles") / "server").start()
    yield server
    server.stop()


def _call(http: httpx.Client, server: Server, method: str, path: str, token: str | None) -> httpx.Response:
    for key, value in PLACEHOLDERS.items():
        path = path.replace("{" + key + "}", value)
    while "{" in path:  # any other path parameter: a name that does not exist
        start, end = path.index("{"), path.index("}")
        path = path[:start] + "nosuch-x" + path[end + 1 :]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if method in ("post", "put", "patch") else None
    return http.request(method.upper(), f"{server.url}{path}", json=body, headers=headers)


def test_every_route_declares_its_role_and_the_matrix_holds(server: Server, make_agent):
    agent = make_agent(server, start=False)
    worker_credential = (agent.state_dir / "credential").read_text().strip()
    tokens = {role: _token(server, f"t-{role}", role) for role in RANK}
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    checked = 0
    http = httpx.Client(timeout=30)  # one keep-alive connection for the ~900 calls (a client each was most of the time)
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            role = op.get("x-outpost-role")
            assert role, f"{method.upper()} {path} declares no role"
            if path.startswith("/api/v1/") and not path.startswith("/api/v1/agent/"):
                public = path in ("/api/v1/health", "/api/v1/endpoints")
                assert role == "public" if public else role in RANK, f"{method.upper()} {path}: {role}"
            if role not in RANK:
                continue
            # Regenerating a real key would break the rest of the suite's registrations: the placeholder
            # key name "nosuch" makes it a 400 for those allowed, which still proves the gate.
            anonymous = _call(http, server, method, path, None)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            worker = _call(http, server, method, path, worker_credential)
            assert worker.status_code in (401, 403), (method, path, worker.text)
            for who, token in tokens.items():
                r = _call(http, server, method, path, token)
                if RANK[who] < RANK[role]:
                    assert r.status_code == 403, (who, method, path, r.status_code, r.text)
                    assert f"needs role {role}" in r.json()["detail"]
                else:
                    assert r.status_code not in (401, 403), (who, method, path, r.status_code, r.text)
                    assert r.status_code < 500, (who, method, path, r.status_code, r.text)
                checked += 1
    http.close()
    assert checked > 100  # the walk really covered the API


def test_roles_in_practice(server: Server, make_agent):
    for group in ("g1", "g2"):
        make_agent(server, group=group, name=f"w-{group}")
    with server.client() as admin:
        publish(admin, "hello", "echo hi\n")
    reader = _token(server, "grafana", "reader")
    operator = _token(server, "oncall-g1", "operator", groups=["g1"])
    author = _token(server, "ci", "author")

    def as_(token: str) -> httpx.Client:
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    with as_(reader) as r, as_(operator) as o, as_(author) as a:
        assert r.get("/api/v1/runbooks").status_code == 200
        assert r.post("/api/v1/query", json={"query": "Heartbeat | take 1"}).status_code == 200
        assert r.post("/api/v1/jobs", json={"runbook": "hello", "run_on": "g1"}).status_code == 403
        job = o.post("/api/v1/jobs", json={"runbook": "hello", "run_on": "g1"})
        assert job.status_code == 201, job.text
        denied = o.post("/api/v1/jobs", json={"runbook": "hello", "run_on": "g2"})
        assert denied.status_code == 403 and "g1" in denied.json()["detail"]
        assert o.get(f"/api/v1/jobs/{job.json()['id']}/streams").status_code == 200
        assert o.put("/api/v1/runbooks/x/draft", json={"type": "bash", "content": "true"}).status_code == 403
        assert a.put("/api/v1/runbooks/x/draft", json={"type": "bash", "content": "true"}).status_code == 200
        assert a.put("/api/v1/assets/variables/region", json={"value": "eu"}).status_code == 200
        secret = a.put("/api/v1/assets/variables/key", json={"value": "k", "encrypted": True})
        assert secret.status_code == 403 and "needs role admin" in secret.json()["detail"]
        cred = a.put("/api/v1/assets/credentials/c", json={"username": "u", "password": "p"})
        assert cred.status_code == 403
        g2_job = start_job(server.client(), "hello", group="g2")
        assert o.post(f"/api/v1/jobs/{g2_job}/stop").status_code == 403
        assert o.get(f"/api/v1/jobs/{g2_job}/streams").status_code == 403
        with server.client() as admin:
            wait_job(admin, job.json()["id"])


def test_audit_rows_name_the_token(server: Server):
    author = _token(server, "release-bot", "author")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {author}"}, timeout=30) as a:
        assert a.put("/api/v1/runbooks/deploy/draft", json={"type": "bash", "content": "true"}).status_code == 200
        assert a.post("/api/v1/runbooks/deploy/publish").status_code == 200
        assert a.put("/api/v1/assets/credentials/c", json={"username": "u", "password": "p"}).status_code == 403

    query = (
        'AzureDiagnostics | where Category == "AuditEvent" and Caller_s == "release-bot" '
        "| project OperationName, ResultType, targetResources_Resource_s"
    )

    def rows() -> list[list[Any]] | None:
        with server.client() as c:
            answer = c.post("/api/v1/query", json={"query": query}).json()
        found = answer["tables"][0]["rows"] if answer.get("tables") else answer.get("rows", [])
        return found if len(found) >= 3 else None

    found = wait_until(rows, 30, 0.5, "three audit rows for release-bot")
    ops = {(r[0], r[1]) for r in found}
    assert ("PUT /api/v1/runbooks/{name}/draft", "Succeeded") in ops
    assert ("POST /api/v1/runbooks/{name}/publish", "Succeeded") in ops
    assert ("PUT /api/v1/assets/credentials/{name}", "Failed") in ops
    assert not any(r[2] == "p" for r in found)  # a target path, never a body


@pytest.mark.postgres
def test_a_revoked_token_is_refused_at_once_by_another_replica(make_server, pg_url):
    a = make_server("a", database_url=pg_url)
    b = make_server("b", database_url=pg_url)
    b.token = a.token
    token = _token(a, "temp", "reader")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{b.url}/api/v1/runbooks", headers=headers).status_code == 200
    with a.client() as c:
        assert c.delete("/api/v1/tokens/temp").status_code == 200
    refused = httpx.get(f"{b.url}/api/v1/runbooks", headers=headers)
    assert refused.status_code == 401, refused.text


def test_token_cli(make_server):
    server = make_server()
    env = server.env()
    created = cli("token", "create", "dash", "--role", "reader", "--json", env=env)
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["token"]
    listed = cli("token", "list", "--json", env=env)
    assert listed.returncode == 0 and secret not in listed.stdout
    names = {t["name"]: t["role"] for t in json.loads(listed.stdout)}
    assert names == {"admin": "admin", "dash": "reader"}
    reader_env = {**env, "OUTPOST_TOKEN": secret}
    assert cli("runbook", "list", env=reader_env).returncode == 0
    refused = cli("job", "start", "nosuch", "--run-on", "g1", env=reader_env)
    assert refused.returncode == 1 and "needs role operator" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bad_role = cli("token", "create", "x", "--role", "superuser", env=env)
    assert bad_role.returncode == 1 and "'superuser'" in bad_role.stderr
    assert "'operator', 'reader', 'author', 'admin'" in bad_role.stderr
    assert cli("token", "revoke", "dash", env=env).returncode == 0
    after = cli("runbook", "list", env=reader_env)
    assert after.returncode == 1 and "rejected" in after.stderr
    assert cli("token", "revoke", "admin", env=env).returncode == 1


def test_an_expired_token_is_refused(server: Server):
    token = _token(server, "short", "reader", expires_in="1s")
    time.sleep(1.5)
    r = httpx.get(f"{server.url}/api/v1/runbooks", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_the_standalone_collector_takes_named_tokens(server: Server, tmp_path):
    from tests.ha.fleet import COLLECTOR_ADMIN, CollectorProc

    collector = CollectorProc(tmp_path / "telemetry", ["--control-plane-url", server.url]).start()
    try:
        reader, operator = _token(server, "collector-reader", "reader"), _token(server, "oncall", "operator")

        def call(method: str, path: str, token: str, **kw: Any) -> httpx.Response:
            return httpx.request(method, f"{collector.url}{path}", headers={"Authorization": f"Bearer {token}"},
                                 timeout=30, **kw)  # fmt: skip

        query = {"json": {"query": "print x = 1"}}
        assert call("POST", "/api/v1/query", reader, **query).json()["rows"] == [[1]]
        assert call("POST", "/v1/rest/mgmt", reader, json={"db": "Outpost", "csl": ".show tables"}).status_code == 200
        assert call("GET", "/api/v1/alerts", reader).status_code == 200
        window = {"json": {"group": "g1", "duration_seconds": 60}}
        refused = call("POST", "/api/v1/alerts/maintenance", reader, **window)
        assert refused.status_code == 403 and "operator" in refused.json()["detail"], refused.text
        assert call("POST", "/api/v1/alerts/maintenance", operator, **window).status_code == 201
        assert call("POST", "/api/v1/query", COLLECTOR_ADMIN, **query).status_code == 200  # its own token
        assert call("POST", "/api/v1/query", "opt_not-a-token", **query).status_code == 401
        # named tokens are not a replica's: forwarding stays with --replica-token / --admin-token
        assert (
            call("POST", "/api/v1/telemetry/forward", reader, json={"replica": "x", "records": []}).status_code == 401
        )
        with server.client() as c:
            assert c.delete("/api/v1/tokens/collector-reader").status_code == 200
        revoked = call("POST", "/api/v1/query", reader, **query)
        assert revoked.status_code == 401, revoked.text  # at once: no cache
    finally:
        collector.stop()


def test_query_anonymous_still_checks_a_token_that_is_sent(make_server):
    server = make_server("anon", extra=["--query-anonymous"])
    query = {"query": "print x = 1"}
    assert httpx.post(f"{server.url}/api/v1/query", json=query, timeout=30).status_code == 200  # loopback
    reader = _token(server, "dash", "reader")
    ok = httpx.post(f"{server.url}/api/v1/query", json=query, headers={"Authorization": f"Bearer {reader}"})
    assert ok.status_code == 200, ok.text
    bad = httpx.post(f"{server.url}/api/v1/query", json=query, headers={"Authorization": "Bearer opt_wrong"})
    assert bad.status_code == 401, bad.text
