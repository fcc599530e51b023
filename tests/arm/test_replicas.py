"""The ARM door's own state lives in the shared store: a job named on one replica is found by that
name on another (PostgreSQL, the scale path), and its schedule definitions too."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azure.mgmt.automation import AutomationClient

from tests.arm.conftest import ACCOUNT, RG, SUB, StaticToken
from tests.helpers.pki import make_ca_and_cert


@pytest.mark.postgres
@pytest.mark.slow  # > 20 s: two servers on PostgreSQL
def test_a_job_named_on_one_replica_is_found_on_another(make_server, pg_url, tmp_path: Path):
    pki = make_ca_and_cert(tmp_path)
    tls = ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    a = make_server("a", database_url=pg_url, extra=tls, ca_file=str(pki["ca"]))
    b = make_server("b", database_url=pg_url, extra=tls, ca_file=str(pki["ca"]))

    def sdk(url: str) -> AutomationClient:  # b joined a's database: a's token is the account's
        ca = str(pki["ca"])
        return AutomationClient(StaticToken(a.token), SUB, base_url=url, connection_verify=ca, retry_total=0)

    on_a, on_b = sdk(a.url), sdk(b.url)
    on_a.hybrid_runbook_worker_group.create(RG, ACCOUNT, "queued", {"properties": {}})  # no worker: jobs wait
    on_a.runbook.create_or_update(RG, ACCOUNT, "wait", {"properties": {"runbookType": "Bash"}})
    on_a.runbook_draft.begin_replace_content(RG, ACCOUNT, "wait", "true\n").result(timeout=30)
    on_a.runbook.begin_publish(RG, ACCOUNT, "wait").result(timeout=30)
    name = f"nightly-{uuid.uuid4()}"
    body = {"properties": {"runbook": {"name": "wait"}, "runOn": "queued"}}
    started = on_a.job.create(RG, ACCOUNT, name, body)

    found = on_b.job.get(RG, ACCOUNT, name)
    assert found.properties.job_id == started.properties.job_id and found.properties.status == "New"
    assert on_b.job.create(RG, ACCOUNT, name, body).properties.job_id == started.properties.job_id  # a retry, on b
    on_b.job.stop(RG, ACCOUNT, name)
    assert on_a.job.get(RG, ACCOUNT, name).properties.status == "Stopped"
    assert name in [j.name for j in on_b.job.list_by_automation_account(RG, ACCOUNT)]

    schedule = {"properties": {"startTime": "2099-01-01T00:00:00Z", "frequency": "Day", "interval": 1}}
    on_a.schedule.create_or_update(RG, ACCOUNT, "daily", schedule)
    link = str(uuid.uuid4())
    link_body = {"properties": {"schedule": {"name": "daily"}, "runbook": {"name": "wait"}, "runOn": "queued"}}
    on_b.job_schedule.create(RG, ACCOUNT, link, link_body)
    assert on_a.job_schedule.get(RG, ACCOUNT, link).properties.schedule.name == "daily"
    assert on_a.schedule.get(RG, ACCOUNT, "daily").properties.next_run.year == 2099
