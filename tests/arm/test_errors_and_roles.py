"""Bad input, unknown things and missing rights answer ARM's error shape and status, so the SDK raises
the exception type an Azure script already catches; roles are enforced as on /api/v1; lists page."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from tests.arm.conftest import ACCOUNT, RG, Arm
from tests.helpers.api import publish, wait_job
from tests.helpers.procs import cli, wait_until


def arm_error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


def raises(exc_type: type[HttpResponseError], code: str, call: Any) -> HttpResponseError:
    with pytest.raises(exc_type) as info:
        call()
    assert info.value.error is not None and info.value.error.code == code, info.value
    return info.value


@pytest.fixture(scope="module")
def ready(arm: Arm) -> Arm:
    with arm.server.client() as c:
        publish(c, "hello", "echo hello $1\n")
        r = c.put("/api/v1/runbooks/draft-only/draft", json={"type": "bash", "content": "true"})
        assert r.status_code == 200, r.text
    return arm


def test_unknown_things_and_bad_input(ready: Arm):
    arm, sdk = ready, ready.sdk()
    raises(ResourceNotFoundError, "NotFound", lambda: sdk.runbook.get(RG, ACCOUNT, "nosuch"))
    raises(ResourceNotFoundError, "NotFound", lambda: sdk.job.get(RG, ACCOUNT, str(uuid.uuid4())))
    raises(
        ResourceNotFoundError, "ResourceNotFound", lambda: list(sdk.runbook.list_by_automation_account(RG, "elsewhere"))
    )
    old = arm.sdk(api_version="2099-01-01")
    e = raises(HttpResponseError, "NoRegisteredProviderFound", lambda: old.runbook.get(RG, ACCOUNT, "hello"))
    assert e.status_code == 400 and "2024-10-23" in e.message
    assert arm.sdk(api_version="2019-06-01").runbook.get(RG, ACCOUNT, "hello").name == "hello"
    assert sdk.runbook.get(RG, ACCOUNT.upper(), "hello").name == "hello"  # ARM compares names without case
    with arm.raw() as raw:  # ... and paths: resource ids often come lower-cased
        r = raw.get(arm.path("/runbooks/hello").lower())
        assert r.status_code == 200 and r.json()["id"] == arm.path("/runbooks/hello"), r.text

    # An unpublished runbook: no job, no published content.
    start = {"properties": {"runbook": {"name": "draft-only"}, "runOn": "linux"}}
    e = raises(HttpResponseError, "BadRequest", lambda: sdk.job.create(RG, ACCOUNT, str(uuid.uuid4()), start))
    assert "publish it first" in e.message
    raises(ResourceNotFoundError, "NotFound", lambda: sdk.runbook.get_content(RG, ACCOUNT, "draft-only"))
    python2 = {"properties": {"runbookType": "Python2"}}
    e = raises(HttpResponseError, "BadRequest", lambda: sdk.runbook.create_or_update(RG, ACCOUNT, "old", python2))
    assert "Python 2 is not supported" in e.message

    # No token, a wrong one.
    with pytest.raises(ClientAuthenticationError):
        arm.sdk(token="opt_not-a-token").runbook.get(RG, ACCOUNT, "hello")
    with arm.raw(token="") as anonymous:
        arm_error(anonymous.get(arm.path("/runbooks")), 401, "AuthenticationFailed")

    with arm.raw() as raw:
        message = arm_error(
            raw.put(arm.path("/runbooks/x"), content=b'{"properties": ', headers={"Content-Type": "application/json"}),
            400,
            "InvalidRequestContent",
        )
        assert "not valid JSON" in message
        arm_error(
            raw.put(arm.path(f"/jobs/{uuid.uuid4()}"), json={"properties": {"runOn": "linux"}}),
            400,
            "InvalidRequestContent",
        )
        no_group = {"properties": {"runbook": {"name": "hello"}}}
        assert "runOn" in arm_error(raw.put(arm.path(f"/jobs/{uuid.uuid4()}"), json=no_group), 400, "BadRequest")
        not_json = {"properties": {"value": "eu-west"}}
        assert "JSON-encoded" in arm_error(raw.put(arm.path("/variables/v"), json=not_json), 400, "BadRequest")
        bad_filter = raw.get(arm.path("/jobs"), params={"$filter": "properties/status eq 'Sleepy'"})
        assert "Sleepy" in arm_error(bad_filter, 400, "BadRequest")
        arm_error(raw.get(arm.path("/jobs"), params={"$filter": "name eq 'x' or 1 eq 1"}), 400, "BadRequest")
        no_version = httpx.get(
            arm.server.url + arm.path("/runbooks"), headers=raw.headers, verify=arm.server.verify(), timeout=30
        )
        arm_error(no_version, 400, "MissingApiVersionParameter")
        # Operations Outpost does not serve say so by name: never a bare 404.
        message = arm_error(raw.get(arm.path("/modules")), 501, "NotImplemented")
        assert "Microsoft.Automation/automationAccounts/modules/read" in message
    raises(HttpResponseError, "NotImplemented", lambda: list(sdk.module.list_by_automation_account(RG, ACCOUNT)))


def test_a_job_name_starts_one_job(ready: Arm):
    sdk, name = ready.sdk(), str(uuid.uuid4())
    body = {"properties": {"runbook": {"name": "hello"}, "runOn": "linux", "parameters": {"[PARAMETER 1]": "x"}}}
    first = sdk.job.create(RG, ACCOUNT, name, body)
    again = sdk.job.create(RG, ACCOUNT, name, body)  # a retried PUT: the same job, not a second one
    assert again.properties.job_id == first.properties.job_id
    other = {"properties": {"runbook": {"name": "hello"}, "runOn": "linux", "parameters": {"[PARAMETER 1]": "y"}}}
    raises(ResourceExistsError, "Conflict", lambda: sdk.job.create(RG, ACCOUNT, name, other))
    with ready.server.client() as c:
        assert wait_job(c, first.properties.job_id)["status"] == "Completed"
        same = c.get("/api/v1/jobs", params={"runbook": "hello", "limit": 1000}).json()
    assert [j["id"] for j in same].count(first.properties.job_id) == 1


def test_roles_hold_on_this_door(ready: Arm):
    arm = ready
    reader = arm.sdk(arm.token("arm-reader", "reader"))
    operator = arm.sdk(arm.token("arm-operator", "operator"))
    author = arm.sdk(arm.token("arm-author", "author"))
    # A group made through ARM (a token can be limited to it once it exists).
    made = arm.sdk().hybrid_runbook_worker_group.create(RG, ACCOUNT, "other", {"properties": {}})
    assert made.name == "other" and made.properties.credential is None
    elsewhere = arm.sdk(arm.token("arm-other-ops", "operator", groups=["other"]))

    assert "hello" in [r.name for r in reader.runbook.list_by_automation_account(RG, ACCOUNT)]
    bash = {"properties": {"runbookType": "Bash"}}
    e = raises(
        HttpResponseError, "AuthorizationFailed", lambda: reader.runbook.create_or_update(RG, ACCOUNT, "r", bash)
    )
    assert e.status_code == 403 and "needs role author" in e.message
    start = {"properties": {"runbook": {"name": "hello"}, "runOn": "linux"}}
    raises(HttpResponseError, "AuthorizationFailed", lambda: reader.job.create(RG, ACCOUNT, str(uuid.uuid4()), start))
    job = operator.job.create(RG, ACCOUNT, str(uuid.uuid4()), start)
    raises(HttpResponseError, "AuthorizationFailed", lambda: operator.runbook.create_or_update(RG, ACCOUNT, "o", bash))
    e = raises(
        HttpResponseError, "AuthorizationFailed", lambda: elsewhere.job.create(RG, ACCOUNT, str(uuid.uuid4()), start)
    )
    assert "other" in e.message
    raises(HttpResponseError, "AuthorizationFailed", lambda: elsewhere.job.get_output(RG, ACCOUNT, job.name))
    assert author.runbook.create_or_update(RG, ACCOUNT, "by-author", bash).name == "by-author"
    cred = {"name": "c", "properties": {"userName": "u", "password": "p"}}
    raises(HttpResponseError, "AuthorizationFailed", lambda: author.credential.create_or_update(RG, ACCOUNT, "c", cred))
    secret = {"name": "k", "properties": {"value": '"v"', "isEncrypted": True}}
    raises(HttpResponseError, "AuthorizationFailed", lambda: author.variable.create_or_update(RG, ACCOUNT, "k", secret))
    assert arm.sdk().variable.create_or_update(RG, ACCOUNT, "k", secret).properties.is_encrypted is True
    shown = reader.variable.get(RG, ACCOUNT, "k")
    assert shown.properties.is_encrypted is True and shown.properties.value is None  # never the secret
    with arm.server.client() as c:
        assert wait_job(c, job.properties.job_id)["status"] == "Completed"

    # Changes through this door are audited like any other, naming the token.
    query = (
        'AzureDiagnostics | where Category == "AuditEvent" and Caller_s == "arm-author" '
        "| project OperationName, ResultType"
    )

    def rows() -> list[list[Any]] | None:
        with arm.server.client() as c:
            answer = c.post("/api/v1/query", json={"query": query}).json()
        found = answer["tables"][0]["rows"] if answer.get("tables") else answer.get("rows", [])
        return found if len(found) >= 3 else None

    ops = {tuple(r) for r in wait_until(rows, 30, 0.5, "audit rows for arm-author")}
    assert any(
        op.startswith("PUT ") and op.endswith("/runbooks/{runbookName}") and res == "Succeeded" for op, res in ops
    ), ops
    assert any(op.endswith("/credentials/{name}") and res == "Failed" for op, res in ops), ops


def test_lists_page_with_next_links(ready: Arm):
    arm = ready
    with arm.server.client() as c:
        for i in range(5):
            assert c.put(f"/api/v1/assets/variables/page-{i}", json={"value": i}).status_code == 200
        ids = [c.post("/api/v1/jobs", json={"runbook": "hello", "run_on": "linux"}).json()["id"] for _ in range(3)]
    with arm.raw() as raw:
        seen: list[str] = []
        url: str | None = arm.path("/variables")
        params: dict[str, str] | None = {"$top": "2"}
        for _ in range(20):  # bounded: 5 variables and a few others make a handful of pages
            if url is None:
                break
            page = raw.get(url, params=params).json()
            assert len(page["value"]) <= 2
            seen += [v["name"] for v in page["value"]]
            url, params = page["nextLink"], None
        assert {f"page-{i}" for i in range(5)} <= set(seen) and len(seen) == len(set(seen))
        jobs: list[str] = []
        url, params = arm.path("/jobs"), {"$top": "1", "$filter": "properties/runbook/name eq 'hello'"}
        for _ in range(50):
            if url is None:
                break
            page = raw.get(url, params=params).json()
            jobs += [j["properties"]["jobId"] for j in page["value"]]
            url, params = page["nextLink"], None
        assert set(ids) <= set(jobs) and len(jobs) == len(set(jobs))
    assert {f"page-{i}" for i in range(5)} <= {
        v.name for v in arm.sdk().variable.list_by_automation_account(RG, ACCOUNT)
    }
    with arm.server.client() as c:  # an agent stops at once only when it runs nothing
        assert all(wait_job(c, job_id)["status"] == "Completed" for job_id in ids)


HOSTILE_BODIES: list[Any] = [
    [],
    "text",
    None,
    {"properties": []},
    {"properties": {"runbookType": 5, "runbook": "x", "runOn": ["g"], "value": {"a": 1}, "parameters": [1]}},
    {"properties": {"frequency": "Day", "startTime": "not a time", "interval": True, "timeZone": "Mars/Olympus"}},
    {"properties": {"schedule": {"name": "x" * 300}, "runbook": {"name": "../x"}, "runOn": "\x00"}},
    {"properties": {"uri": "https://h/webhooks?token=opwh_forged", "runbook": {"name": "hello"}, "runOn": "linux"}},
    {"properties": {"base64Value": "!!!", "userName": "", "password": 1, "connectionType": {"name": "../x"}}},
    {"properties": {"value": "[" * 5000 + "]" * 5000}},
]
KINDS = [
    "runbooks/r1", "runbooks/r1/draft/content", "jobs/j1", "jobs", "variables/v1", "credentials/c1",
    "certificates/c1", "connections/c1", "hybridRunbookWorkerGroups/g1", "webhooks/w1", "schedules/s1",
    f"jobSchedules/{uuid.UUID(int=1)}", "jobs/j1/streams", "jobs/%00", "runbooks/" + "a" * 300,
]  # fmt: skip


def test_hostile_input_gets_a_4xx_in_arm_shape(ready: Arm):
    """Junk bodies, names and filters on every kind of resource: a 4xx (or a success, or 501 for an
    operation not served), never a 500."""
    with ready.raw() as raw:
        for kind in KINDS:
            for method in ("PUT", "PATCH"):
                for body in HOSTILE_BODIES:
                    r = raw.request(method, ready.path(f"/{kind}"), json=body)
                    if r.status_code >= 400:
                        assert set(r.json()) == {"error"}, (method, kind, r.text)
                    unserved = r.status_code == 501 and r.json()["error"]["code"] == "NotImplemented"
                    assert r.status_code < 500 or unserved, (method, kind, body, r.status_code, r.text)
            for params in ({"$filter": "properties/time ge 'x' and"}, {"$skiptoken": "x|y"}, {"$top": "-1"}):
                r = raw.get(ready.path(f"/{kind}"), params=params)
                assert r.status_code < 500, (kind, params, r.status_code, r.text)
        r = raw.put(ready.path("/runbooks/r1/draft/content"), content=b"\xff\xfe not utf-8")
        assert r.status_code in (400, 404) and set(r.json()) == {"error"}
        big = raw.put(ready.path("/runbooks/hello/draft/content"), content=b"x" * (9 * 1024 * 1024))
        arm_error(big, 413, "RequestEntityTooLarge")


def test_an_account_name_azure_would_refuse_stops_the_server_start(tmp_path):
    result = cli("server", "--account-name", "my_account!", "--data-dir", str(tmp_path / "d"), "--port", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--account-name 'my_account!'" in lines[0] and "6-50" in lines[0], result.stderr
    assert "admin token" not in result.stdout


def test_links_name_the_public_url_behind_a_proxy(make_server):
    """Behind a TLS-terminating proxy the server is called over http: its links must still be the
    https URL clients use (azure-core follows no http link with a token)."""
    public = "https://outpost.example:8443"
    server = make_server(extra=["--public-url", public])
    base = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Automation/automationAccounts/outpost"
    with server.client() as c:
        v = {"api-version": "2024-10-23"}
        assert c.put(f"{base}/runbooks/r", params=v, json={"properties": {"runbookType": "Bash"}}).status_code == 201
        assert c.put(f"{base}/runbooks/s", params=v, json={"properties": {"runbookType": "Bash"}}).status_code == 201
        upload = c.put(f"{base}/runbooks/r/draft/content", params=v, content=b"true\n")
        assert upload.status_code == 202 and upload.headers["Location"].startswith(f"{public}{base}/runbooks/r/draft")
        page = c.get(f"{base}/runbooks", params={**v, "$top": "1"}).json()
        assert page["nextLink"].startswith(f"{public}{base}/runbooks?")
