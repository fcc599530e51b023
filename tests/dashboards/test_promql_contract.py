"""Every dashboard and rule query parses and finds series in a real Prometheus fed the metric contract.

The metric names and labels below are the collector's published contract (issue 4). This
runs without the Outpost server; tests/dashboards/test_live.py repeats it against the real one.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.alerts.realtools import free_port
from tests.dashboards.dashboard_files import concrete_promql, dashboards, promql_expressions
from tests.dashboards.test_live import RULES, VARIABLES, _wait_scraped, instant, running_prometheus


def _contract_registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    wg = ["worker", "group"]
    Gauge("outpost_worker_up", "", wg, registry=reg).labels("w1", "g1").set(1)
    Gauge("outpost_worker_last_heartbeat_timestamp_seconds", "", wg, registry=reg).labels(
        "w1", "g1"
    ).set_to_current_time()
    workers = Gauge("outpost_workers", "", ["group", "state"], registry=reg)
    workers.labels("g1", "up").set(1)
    workers.labels("g1", "down").set(0)
    jobs = Counter("outpost_jobs", "", ["runbook", "group", "status"], registry=reg)
    for status in ("New", "Activating", "Running", "Completed", "Failed"):
        jobs.labels("ok", "g1", status).inc()
    for name in ("outpost_job_duration_seconds", "outpost_job_queue_wait_seconds"):
        Histogram(name, "", ["runbook", "group"], registry=reg).labels("ok", "g1").observe(1.5)
    Gauge("outpost_queue_depth", "", ["group"], registry=reg).labels("g1").set(0)
    Gauge("outpost_queue_oldest_age_seconds", "", ["group"], registry=reg).labels("g1").set(0)
    Counter("outpost_polls", "", ["group", "outcome"], registry=reg).labels("g1", "job").inc()
    Counter("outpost_dispatches", "", ["group"], registry=reg).labels("g1").inc()
    Gauge("outpost_diagnose_check_failing", "", ["worker", "group", "check"], registry=reg).labels(
        "w1", "g1", "dns"
    ).set(0)
    Gauge("outpost_worker_clock_skew_seconds", "", wg, registry=reg).labels("w1", "g1").set(0.2)
    Gauge("outpost_certificate_expiry_timestamp_seconds", "", ["kind", "subject"], registry=reg).labels(
        "server", "CN=outpost"
    ).set(4e9)
    Gauge("outpost_build_info", "", ["version"], registry=reg).labels("0.1.0").set(1)
    slots = Gauge("outpost_group_slots", "", ["group", "state"], registry=reg)
    slots.labels("g1", "total").set(2)
    slots.labels("g1", "busy").set(1)
    Counter("outpost_jobs_lost", "", ["group", "outcome"], registry=reg).labels("g1", "requeued").inc()
    perf = Gauge("outpost_worker_perf", "", ["worker", "group", "object", "counter", "instance"], registry=reg)
    perf.labels("w1", "g1", "Processor", "% Processor Time", "_Total").set(12.5)
    perf.labels("w1", "g1", "Memory", "% Used Memory", "").set(40)
    # Re-exposed from the agents' OTLP metrics (telemetry/otlp_prom.py): service and worker, then its attributes.
    Counter(
        "outpost_agent_request_errors", "", ["service", "worker", "endpoint", "status", "group"], registry=reg
    ).labels("outpost-agent", "w1", "agent/poll", "503", "g1").inc()
    return reg


def test_every_query_finds_series_for_the_metric_contract(tmp_path: Path) -> None:
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=_contract_registry())
    try:
        with running_prometheus(tmp_path, f"127.0.0.1:{port}", None) as prom:
            _wait_scraped(prom)
            time.sleep(2.5)  # two scrapes at least, so range functions have points
            missing = [
                f"{where}: {expr}"
                for where, expr in promql_expressions()
                if not instant(prom, concrete_promql(expr, VARIABLES))
            ]
            assert not missing, "queries without series:\n" + "\n".join(missing)
            for doc in dashboards().values():
                for var in doc["templating"]["list"]:
                    if var["type"] == "query":
                        metric = var["query"].removeprefix("label_values(").rsplit(",", 1)[0]
                        assert instant(prom, concrete_promql(metric, VARIABLES)), var["query"]
            # Rules parse and evaluate in a real Prometheus (promtool covers their logic).
            rules_doc = yaml.safe_load(RULES.read_text())
            for group in rules_doc["groups"]:
                for rule in group["rules"]:
                    instant(prom, rule["expr"])  # raises on a query error
    finally:
        server.shutdown()
        thread.join(5)
