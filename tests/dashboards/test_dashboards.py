"""The committed dashboards are generated, valid for Grafana 11.6 and portable between Grafanas."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard, RowPanel

from tests.dashboards.dashboard_files import (
    ADX_TYPE,
    DASHBOARD_DIR,
    JSON_DIR,
    all_panels,
    dashboards,
    kql_queries,
    load_generator,
    promql_expressions,
)

DOCS = dashboards()
BUILT_IN_VARIABLES = {"__rate_interval", "__interval", "__range", "__timeFilter"}


def test_all_three_dashboards_are_committed() -> None:
    generate = load_generator()
    assert set(DOCS) == set(generate.DASHBOARDS)


def test_committed_json_is_in_sync_with_the_generator() -> None:
    generate = load_generator()
    for name, build in generate.DASHBOARDS.items():
        assert (JSON_DIR / name).read_text() == generate.render(build), (
            f"{name} is stale: run .venv/bin/python dashboards/generate.py"
        )
    assert generate.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(DOCS))
def test_valid_against_the_sdk_dashboard_model(name: str) -> None:
    # Decoding through the typed model and encoding again must give the same document:
    # a key the Grafana 11.6 schema does not know, or a mistyped value, does not survive.
    load_generator()
    from outpost_dashboards import kusto

    register_default_plugins()
    kusto.register()
    doc = DOCS[name]
    model = Dashboard.from_json(doc)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == doc
    known_panels = set(cogruntime.Runtime().panelcfg_variants)
    for panel in model.panels or []:
        if isinstance(panel, RowPanel):
            continue
        assert panel.type_val in known_panels, panel.title
        for target in panel.targets or []:
            assert not isinstance(target, cogruntime.UnknownDataquery), f"{panel.title}: untyped query"
    assert doc["uid"] and 8 <= len(doc["uid"]) <= 40
    assert doc["schemaVersion"] >= 39


@pytest.mark.parametrize("name", sorted(DOCS))
def test_unique_panel_ids_and_sane_grid(name: str) -> None:
    panels = list(all_panels(DOCS[name]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert panel.get("title"), "untitled panel"


def _variables(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in doc["templating"]["list"]}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_data_sources_only_through_variables(name: str) -> None:
    doc = DOCS[name]
    variables = _variables(doc)
    assert variables["prometheus"]["type"] == "datasource" and variables["prometheus"]["query"] == "prometheus"
    assert variables["kusto"]["type"] == "datasource" and variables["kusto"]["query"] == ADX_TYPE
    refs = [panel.get("datasource") for panel in all_panels(doc) if panel["type"] != "row"]
    refs += [t.get("datasource") for p in all_panels(doc) for t in p.get("targets", [])]
    refs += [v["datasource"] for v in variables.values() if "datasource" in v]
    for ref in refs:
        assert ref is not None
        match = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
        assert match, f"hard-coded data source uid {ref['uid']!r}"
        var = variables[match.group(1)]
        assert var["type"] == "datasource" and var["query"] == ref["type"]


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_referenced_variable_is_defined(name: str) -> None:
    doc = DOCS[name]
    defined = set(_variables(doc)) | BUILT_IN_VARIABLES
    text = json.dumps([p.get("targets", []) for p in all_panels(doc)] + doc["templating"]["list"])
    used = set(re.findall(r"\$\{?(\w+)", text))
    assert used <= defined, f"undefined variables: {used - defined}"


def test_kql_is_shown_in_table_panels() -> None:
    assert kql_queries(), "no Kusto panels"
    for doc in DOCS.values():
        for panel in all_panels(doc):
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == ADX_TYPE:
                    assert panel["type"] in {"table", "timeseries"}
                    assert target["query"] in panel["description"], panel["title"]
    table_kql = [
        p for d in DOCS.values() for p in all_panels(d) if p["type"] == "table" and "KQL" in p.get("description", "")
    ]
    assert len(table_kql) >= 5


def test_promql_uses_only_published_metric_names() -> None:
    published = {
        "outpost_worker_up", "outpost_worker_last_heartbeat_timestamp_seconds", "outpost_workers",
        "outpost_jobs_total", "outpost_job_duration_seconds_bucket", "outpost_job_queue_wait_seconds_bucket",
        "outpost_queue_depth", "outpost_queue_oldest_age_seconds", "outpost_polls_total",
        "outpost_dispatches_total", "outpost_diagnose_check_failing", "outpost_worker_clock_skew_seconds",
        "outpost_certificate_expiry_timestamp_seconds", "outpost_build_info",
        # Capacity and sandbox (issue 15; docs/sandbox.md)
        "outpost_group_slots", "outpost_jobs_lost_total", "outpost_worker_perf", "outpost_agent_request_errors_total",
    }  # fmt: skip
    used: set[str] = set()
    for where, expr in promql_expressions():
        names = set(re.findall(r"\b(outpost_\w+)", expr))
        assert names <= published, f"{where}: unknown metric {names - published}"
        used |= names
    assert used == published, f"metrics on no panel: {published - used}"


def test_provisioning_matches_the_dashboards() -> None:
    prov = DASHBOARD_DIR / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "outpost.yaml").read_text())["datasources"]
    assert {s["type"] for s in sources} == {"prometheus", ADX_TYPE}
    providers = yaml.safe_load((prov / "dashboards" / "outpost.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]
    scrape = yaml.safe_load((DASHBOARD_DIR / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["metrics_path"] == "/metrics"
