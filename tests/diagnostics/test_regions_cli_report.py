"""Azure region data, usage errors (exit 2), and posting results to the collector endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics import regions
from diagnostics.data.regenerate import JSON_PATH, parse
from diagnostics.options import Options
from diagnostics.report import post_results
from diagnostics.runner import run_checks
from outpost.http import make_client
from tests.diagnostics.conftest import CREDENTIAL, ROOT, run_cli

SOURCE = ROOT.parent / "shared" / "data" / "azure-automation-region-dns.md"


def test_shipped_region_data_matches_the_published_page():
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} is absent (a plain clone); CI places ../shared beside the project")
    assert json.loads(JSON_PATH.read_text()) == parse(SOURCE.read_text())


def test_region_lookup_by_code_name_and_arm_name():
    assert regions.find_region("we").name == "West Europe"
    assert regions.find_region("West Europe").code == "we"
    assert regions.find_region("australiasoutheast").code == "ase"
    stzn = regions.find_region("stzn")
    assert stzn.legacy == (
        "stzn-jobruntimedata-prod-su1.azure-automation.net",
        "stzn-agentservice-prod-su1.azure-automation.net",
    )
    assert stzn.account == ()
    usge = regions.find_region("usge")
    assert usge.account[1] == "{account_id}.agentsvc.usge.azure-automation.us"
    assert len(regions.regions()) == 45
    hosts = [r.host for r in regions.azure_records(regions.find_region("eus"), None)]
    assert hosts == ["eus-jobruntimedata-prod-su1.azure-automation.net", "eus-agentservice-prod-1.azure-automation.net"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--azure-region", "atlantis"], "error: unknown Azure region 'atlantis'; use a location code (ac, ae, "),
        (["--azure-region", "we", "--account-id", "nope"], "error: --account-id 'nope' is not a GUID"),
        (["--account-id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"], "error: --account-id needs --azure-region"),
        (["--check", "dns.nope"], "error: unknown check 'dns.nope'; groups: config, endpoints, dns, "),
        (["--timeout", "0"], "error: --timeout must be between 0 and 300 seconds, not 0"),
        (["--dns-server", "resolver.example"], "error: --dns-server 'resolver.example' is not IP or IP:PORT"),
        (["--url", "ftp://x"], "error: 'ftp://x' is not an http(s):// URL"),
        (
            ["--url", "https://x", "--ca-file", "/nonexistent.pem"],
            "error: --ca-file /nonexistent.pem is not a readable",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message, tmp_path):
    run = run_cli("--state-dir", str(tmp_path), *args, as_json=False)
    assert run.rc == 2
    assert run.stderr.startswith(message), run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_run_checks_and_post_results_to_the_collector(app, pki, make_state, agent_proc):
    state = make_state(app.url, ca_file=pki.ca.pem, status={"pid": agent_proc().pid})
    results = run_checks(Options(state_dir=state, check="app"))
    assert [(r.id, r.status) for r in results] == [("app.health", "pass"), ("app.post", "pass")]
    with make_client(app.url, token=CREDENTIAL, ca_file=str(pki.ca.pem)) as client:
        post_results(client, results)
    body = app.cfg.received[-1]
    assert set(body) == {"time", "results"}
    assert body["time"].endswith("+00:00")
    first = body["results"][0]
    assert {k: first[k] for k in ("id", "group", "status")} == {"id": "app.health", "group": "app", "status": "pass"}
    assert set(first) >= {"id", "group", "status", "finding", "remediation", "duration_ms", "evidence"}
    assert isinstance(first["duration_ms"], float)


def test_json_is_the_only_stdout(app, pki, tmp_path):
    run = run_cli(
        "--state-dir", str(tmp_path / "none"), "--url", app.url, "--ca-file", str(pki.ca.pem), "--check", "app"
    )
    assert run.doc is not None and run.doc["summary"] == {"pass": 2, "warn": 0, "fail": 0, "skip": 0}
    assert Path(run.doc["results"][0]["command"].split()[-1]).name == "health"
