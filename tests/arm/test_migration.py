"""A migration script, written as an Azure Automation user writes it with `azure-mgmt-automation`,
run unchanged against Outpost: only the endpoint and the credential differ.

Everything it does is then read back through Outpost's own doors (/api/v1, the CLI): one store.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.mgmt.automation.models import (
    CredentialCreateOrUpdateParameters,
    CredentialCreateOrUpdateProperties,
    HybridRunbookWorkerGroupCreateOrUpdateParameters,
    JobCreateParameters,
    RunbookAssociationProperty,
    RunbookCreateOrUpdateParameters,
    RunbookCreateOrUpdateProperties,
    VariableCreateOrUpdateParameters,
    VariableCreateOrUpdateProperties,
)

from tests.arm.conftest import ACCOUNT, RG, Arm
from tests.helpers.procs import cli, wait_until

FINAL = ("Completed", "Failed", "Stopped", "Suspended")
HELLO = 'import sys\nprint("hello", *sys.argv[1:])\nprint("WARNING: this goes to the Warning stream")\n'


def wait_status(client, job_name: str, statuses: tuple[str, ...], timeout: float = 60):
    """The loop every Azure script has: poll the job until it gets there (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.job.get(RG, ACCOUNT, job_name)
        if job.properties.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_name} still {job.properties.status} after {timeout} s"
        time.sleep(0.3)


@pytest.mark.slow
def test_a_migration_script_runs_unchanged(arm: Arm):
    client = arm.sdk()

    # 1. The runbook: create, upload the draft (a long-running operation), publish (another one).
    created = client.runbook.create_or_update(
        RG,
        ACCOUNT,
        "hello",
        RunbookCreateOrUpdateParameters(
            location="westeurope",
            properties=RunbookCreateOrUpdateProperties(runbook_type="Python3", description="says hello"),
        ),
    )
    assert created.name == "hello" and created.properties.state == "New"
    assert created.id == arm.path("/runbooks/hello")
    client.runbook_draft.begin_replace_content(RG, ACCOUNT, "hello", HELLO).result(timeout=30)
    assert client.runbook_draft.get_content(RG, ACCOUNT, "hello") == HELLO
    client.runbook.begin_publish(RG, ACCOUNT, "hello").result(timeout=30)
    runbook = client.runbook.get(RG, ACCOUNT, "hello")
    assert runbook.properties.state == "Published" and runbook.properties.runbook_type == "Python3"
    assert client.runbook.get_content(RG, ACCOUNT, "hello") == HELLO
    assert "hello" in [r.name for r in client.runbook.list_by_automation_account(RG, ACCOUNT)]

    # 2. A job on the hybrid worker group, with Python's positional parameters as Azure names them.
    job_name = str(uuid.uuid4())
    started = client.job.create(
        RG,
        ACCOUNT,
        job_name,
        JobCreateParameters(
            properties={
                "runbook": RunbookAssociationProperty(name="hello"),
                "runOn": "linux",
                "parameters": {"[PARAMETER 1]": "world", "[PARAMETER 2]": "again"},
            }
        ),
    )
    assert started.name == job_name and started.properties.status in ("New", "Activating", "Running", "Completed")
    job = wait_status(client, job_name, FINAL)
    assert job.properties.status == "Completed", job.properties.status_details
    assert job.properties.run_on == "linux" and job.properties.runbook.name == "hello"
    assert job.properties.start_time and job.properties.end_time >= job.properties.start_time
    assert job.properties.parameters == {"[PARAMETER 1]": "world", "[PARAMETER 2]": "again"}

    # 3. Its output and its streams, filtered by type.
    assert client.job.get_output(RG, ACCOUNT, job_name).strip() == "hello world again"
    warnings = list(client.job_stream.list_by_job(RG, ACCOUNT, job_name, filter="properties/streamType eq 'Warning'"))
    assert [s.properties.stream_text for s in warnings] == ["this goes to the Warning stream"]
    every = list(client.job_stream.list_by_job(RG, ACCOUNT, job_name))
    assert {s.properties.stream_type for s in every} >= {"Output", "Warning"}
    later = (job.properties.end_time + timedelta(minutes=1)).isoformat()
    assert list(client.job_stream.list_by_job(RG, ACCOUNT, job_name, filter=f"properties/time ge {later}")) == []
    earlier = f"properties/streamType eq 'Output' and properties/time ge {job.properties.creation_time.isoformat()}"
    assert len(list(client.job_stream.list_by_job(RG, ACCOUNT, job_name, filter=earlier))) == 1
    one = client.job_stream.get(RG, ACCOUNT, job_name, warnings[0].properties.job_stream_id)
    assert one.properties.stream_text == "this goes to the Warning stream"

    # The listing filters the portal uses find it; another status does not.
    mine = "properties/runbook/name eq 'hello' and properties/status eq 'Completed'"
    assert job_name in [j.name for j in client.job.list_by_automation_account(RG, ACCOUNT, filter=mine)]
    failed = "properties/runbook/name eq 'hello' and properties/status eq 'Failed'"
    assert job_name not in [j.name for j in client.job.list_by_automation_account(RG, ACCOUNT, filter=failed)]

    # 4. Stop a long job.
    client.runbook.create_or_update(
        RG, ACCOUNT, "long", RunbookCreateOrUpdateParameters(properties={"runbookType": "Bash"})
    )
    client.runbook_draft.begin_replace_content(RG, ACCOUNT, "long", "echo started\nsleep 120\n").result(timeout=30)
    client.runbook.begin_publish(RG, ACCOUNT, "long").result(timeout=30)
    long_name = str(uuid.uuid4())
    client.job.create(
        RG, ACCOUNT, long_name, JobCreateParameters(properties={"runbook": {"name": "long"}, "runOn": "linux"})
    )
    wait_status(client, long_name, ("Running",))
    client.job.stop(RG, ACCOUNT, long_name)
    assert wait_status(client, long_name, FINAL).properties.status == "Stopped"

    # 5. Assets: a variable as Azure stores it (JSON text), a credential whose password never comes back.
    client.variable.create_or_update(
        RG,
        ACCOUNT,
        "region",
        VariableCreateOrUpdateParameters(name="region", properties=VariableCreateOrUpdateProperties(value='"eu-west"')),
    )
    variable = client.variable.get(RG, ACCOUNT, "region")
    assert variable.properties.value == '"eu-west"' and variable.properties.is_encrypted is False
    client.credential.create_or_update(
        RG,
        ACCOUNT,
        "deploy",
        CredentialCreateOrUpdateParameters(
            name="deploy", properties=CredentialCreateOrUpdateProperties(user_name="svc", password="s3cret-pw")
        ),
    )
    assert client.credential.get(RG, ACCOUNT, "deploy").properties.user_name == "svc"
    with arm.raw() as raw:
        for path in ("/credentials/deploy", "/credentials"):
            r = raw.get(arm.path(path))
            assert r.status_code == 200 and "s3cret-pw" not in r.text

    # 6. Worker groups and their workers, and RunAs through the group's credential.
    groups = {g.name: g for g in client.hybrid_runbook_worker_group.list_by_automation_account(RG, ACCOUNT)}
    assert "linux" in groups and groups["linux"].properties.group_type == "User"
    workers = list(client.hybrid_runbook_workers.list_by_hybrid_runbook_worker_group(RG, ACCOUNT, "linux"))
    assert [w.properties.worker_name for w in workers] == ["w1"]
    assert client.hybrid_runbook_workers.get(RG, ACCOUNT, "linux", workers[0].name).properties.worker_type == "HybridV2"
    group = client.hybrid_runbook_worker_group.create(
        RG,
        ACCOUNT,
        "linux",
        HybridRunbookWorkerGroupCreateOrUpdateParameters(properties={"credential": {"name": "deploy"}}),
    )
    assert group.properties.credential.name == "deploy"
    client.hybrid_runbook_worker_group.create(
        RG, ACCOUNT, "linux", HybridRunbookWorkerGroupCreateOrUpdateParameters(properties={})
    )

    # 7. A webhook: generateUri, create with it, invoke it with a POST: the job runs.
    uri = client.webhook.generate_uri(RG, ACCOUNT)
    assert uri.startswith(f"{arm.server.url}/webhooks?token=")
    hook = client.webhook.create_or_update(
        RG,
        ACCOUNT,
        "deploy-hook",
        {
            "name": "deploy-hook",
            "properties": {"uri": uri, "isEnabled": True, "runbook": {"name": "hello"}, "runOn": "linux"},
        },
    )
    assert hook.properties.uri == uri and hook.properties.is_enabled
    assert client.webhook.get(RG, ACCOUNT, "deploy-hook").properties.uri is None  # the token is not kept
    fired = httpx.post(uri, json={"release": "1.2"}, verify=arm.server.verify(), timeout=30)
    assert fired.status_code == 202, fired.text
    hook_job = fired.json()["JobIds"][0]
    assert wait_status(client, hook_job, FINAL).properties.status == "Completed"
    data = json.loads(client.job.get_output(RG, ACCOUNT, hook_job).removeprefix("hello "))  # WebhookData: argv[1]
    assert data["WebhookName"] == "deploy-hook" and json.loads(data["RequestBody"]) == {"release": "1.2"}
    client.webhook.update(RG, ACCOUNT, "deploy-hook", {"properties": {"isEnabled": False}})
    assert httpx.post(uri, verify=arm.server.verify(), timeout=30).status_code == 404

    # 8. A schedule, linked to the runbook by a job schedule, fires.
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    schedule = {"name": "soon", "properties": {"startTime": soon, "frequency": "OneTime", "timeZone": "UTC"}}
    assert client.schedule.create_or_update(RG, ACCOUNT, "soon", schedule).properties.frequency == "OneTime"
    link_id = str(uuid.uuid4())
    link = {"properties": {"schedule": {"name": "soon"}, "runbook": {"name": "hello"}, "runOn": "linux",
                           "parameters": {"[PARAMETER 1]": "scheduled"}}}  # fmt: skip
    assert client.job_schedule.create(RG, ACCOUNT, link_id, link).properties.job_schedule_id == link_id
    assert link_id in [j.name for j in client.job_schedule.list_by_automation_account(RG, ACCOUNT)]
    since = f"properties/runbook/name eq 'hello' and properties/creationTime ge {soon}"

    def scheduled_job() -> str | None:
        found = list(client.job.list_by_automation_account(RG, ACCOUNT, filter=since))
        return found[0].name if found else None

    fired_name = wait_until(scheduled_job, 30, 0.5, "the schedule's job")
    assert wait_status(client, fired_name, FINAL).properties.status == "Completed"
    assert client.job.get_output(RG, ACCOUNT, fired_name).strip() == "hello scheduled"
    assert client.schedule.get(RG, ACCOUNT, "soon").properties.next_run is None  # one time: done

    assert client.job.get_runbook_content(RG, ACCOUNT, job_name) == HELLO
    assert [a.name for a in client.automation_account.list()] == [ACCOUNT]
    assert [a.name for a in client.automation_account.list_by_resource_group(RG)] == [ACCOUNT]
    account = client.automation_account.get(RG, ACCOUNT)
    assert account.properties.automation_hybrid_service_url == arm.server.url

    # One store, two doors: what the script did is what Outpost's CLI and /api/v1 show.
    env = {**arm.server.env(), "OUTPOST_CA_FILE": arm.ca}
    shown = cli("job", "show", job.properties.job_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "Completed"
    with arm.server.client() as c:
        assert c.get("/api/v1/assets/variables/region").json()["value"] == "eu-west"
        logs = (
            f"AzureDiagnostics | where Category == 'JobLogs' and JobId_g == '{job.properties.job_id}' "
            "| where ResultType == 'Completed' | project RunbookName_s, RunOn_s"
        )

        def job_logs() -> list | None:
            answer = c.post("/api/v1/query", json={"query": logs}).json()
            rows = answer["tables"][0]["rows"] if answer.get("tables") else answer.get("rows", [])
            return rows or None

        assert wait_until(job_logs, 30, 0.5, "the job's JobLogs row") == [["hello", "linux"]]
        assert c.get("/api/v1/groups").json()[0]["run_as_credential"] is None
        # ... and a job started through /api/v1 is readable through ARM by its id.
        other = c.post("/api/v1/jobs", json={"runbook": "hello", "run_on": "linux", "params": [{"value": "cli"}]})
        assert other.status_code == 201, other.text
    assert wait_status(client, other.json()["id"], FINAL).properties.status == "Completed"
    assert client.job.get_output(RG, ACCOUNT, other.json()["id"]).strip() == "hello cli"

    # The name the script gave its job is in the store: it outlives a restart.
    arm.server.stop()
    arm.server.start()
    assert arm.sdk().job.get(RG, ACCOUNT, job_name).properties.job_id == job.properties.job_id
