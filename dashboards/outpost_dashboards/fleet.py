"""Fleet overview: is every group served, are jobs flowing, where does it hurt."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models.common import BigValueTextMode

from .common import base, datasource_variables, finish, label_variable, prom
from .panels import (
    bar_panel,
    kql_table_panel,
    prom_table_panel,
    row,
    stat_panel,
    timeseries_panel,
)

UID = "outpost-fleet"
G = 'group=~"$group"'


def _quantiles(metric: str) -> list:
    return [
        prom(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{G}}}[$__rate_interval])))",
            f"p{int(q * 100)}",
            ref=ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def build() -> dict[str, Any]:
    dash = base(UID, "Outpost / Fleet overview", "Workers, queues and jobs across all worker groups.")
    for var in datasource_variables():
        dash = dash.with_variable(var)
    dash = dash.with_variable(label_variable("group", "Group", "label_values(outpost_workers, group)", multi=True))

    dash = (
        dash.with_row(row("Workers"))
        .with_panel(stat_panel("Workers up", prom(f'sum(outpost_workers{{{G},state="up"}})'), steps=((None, "green"),)))
        .with_panel(
            stat_panel(
                "Workers down",
                prom(f'sum(outpost_workers{{{G},state="down"}})'),
                steps=((None, "green"), (1, "red")),
            )
        )
        .with_panel(
            stat_panel(
                "Groups with no live worker",
                # Groups are known from their queue; `unless` keeps those where no worker is up.
                prom(
                    f"count(max by (group) (outpost_queue_depth{{{G}}}) "
                    f"unless on (group) (max by (group) (outpost_worker_up{{{G}}}) > 0)) or vector(0)"
                ),
                steps=((None, "green"), (1, "red")),
                description="Groups with no worker up (or none at all): their queued jobs never start.",
            )
        )
        .with_panel(
            stat_panel(
                "Queued jobs",
                prom(f"sum(max without (instance) (outpost_queue_depth{{{G}}}))"),
                steps=((None, "green"), (50, "orange")),
            )
        )
        .with_panel(
            stat_panel(
                "Failing diagnose checks",
                prom(f"sum(outpost_diagnose_check_failing{{{G}}}) or vector(0)"),
                steps=((None, "green"), (1, "orange")),
            )
        )
        .with_panel(
            stat_panel(
                "Server version",
                prom("outpost_build_info", "{{version}}", instant=True),
                description="From outpost_build_info.",
                steps=((None, "blue"),),
            ).text_mode(BigValueTextMode.NAME)  # the version is the series name
        )
        .with_panel(
            timeseries_panel(
                "Workers up per group",
                [prom(f"sum by (group) (max without (instance) (outpost_worker_up{{{G}}}))", "{{group}}")],
                span=12,
            )
        )
        .with_panel(
            bar_panel(
                "Last heartbeat age per worker",
                prom(
                    f"time() - max without (instance) (outpost_worker_last_heartbeat_timestamp_seconds{{{G}}})",
                    "{{worker}} ({{group}})",
                    instant=True,
                ),
                unit="s",
                steps=((None, "green"), (120, "orange"), (300, "red")),
                description="Seconds since each worker's last heartbeat; red past the 5-minute stale mark.",
            )
        )
        .with_row(row("Jobs and queues"))
        .with_panel(
            timeseries_panel(
                "Jobs started, completed, failed",
                [
                    prom(
                        f"sum by (status) (increase(outpost_jobs_total{{{G},"
                        f'status=~"Running|Completed|Failed|Stopped|Suspended"}}[$__rate_interval]))',
                        "{{status}}",
                    )
                ],
                description="Status transitions per interval; Running = started.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Queue depth per group",
                [prom(f"sum by (group) (max without (instance) (outpost_queue_depth{{{G}}}))", "{{group}}")],
            )
        )
        .with_panel(
            timeseries_panel(
                "Oldest queued job per group",
                [prom(f"max by (group) (outpost_queue_oldest_age_seconds{{{G}}})", "{{group}}")],
                unit="s",
            )
        )
        .with_panel(
            timeseries_panel(
                "Polls and dispatches",
                [
                    prom(
                        f"sum by (group, outcome) (rate(outpost_polls_total{{{G}}}[$__rate_interval]))",
                        "poll {{outcome}} {{group}}",
                        ref="A",
                    ),
                    prom(
                        f"sum by (group) (rate(outpost_dispatches_total{{{G}}}[$__rate_interval]))",
                        "dispatch {{group}}",
                        ref="B",
                    ),
                ],
                unit="reqps",
            )
        )
        .with_panel(
            timeseries_panel("Queue wait (schedule to start)", _quantiles("outpost_job_queue_wait_seconds"), unit="s")
        )
        .with_panel(timeseries_panel("Job duration", _quantiles("outpost_job_duration_seconds"), unit="s"))
        .with_panel(
            bar_panel(
                "Top failing runbooks",
                prom(
                    f'topk(10, sum by (runbook) (increase(outpost_jobs_total{{{G},status="Failed"}}[$__range])))',
                    "{{runbook}}",
                    instant=True,
                ),
                steps=((None, "orange"),),
            )
        )
        .with_panel(
            bar_panel(
                "Diagnose failures per check",
                prom(f"sum by (check) (outpost_diagnose_check_failing{{{G}}})", "{{check}}", instant=True),
                steps=((None, "green"), (1, "red")),
                description="How many workers report each diagnose check as failing.",
            )
        )
        .with_row(row("Capacity and sandbox"))
        .with_panel(
            timeseries_panel(
                "Job slots per group",
                [
                    prom(
                        f"sum by (group, state) (max without (instance) (outpost_group_slots{{{G}}}))",
                        "{{group}} {{state}}",
                    )
                ],
                description="Slots (--concurrency) of each group's live workers, and those holding a job.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Jobs lost to worker loss",
                [
                    prom(
                        f"sum by (group, outcome) (increase(outpost_jobs_lost_total{{{G}}}[$__rate_interval]))",
                        "{{outcome}} {{group}}",
                    )
                ],
                description="Jobs whose worker was lost (lease expired, or its agent restarted without them), "
                "by what became of them: requeued, suspended, failed, stopped.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Worker CPU busy",
                [
                    prom(
                        # No `instance` matcher: Prometheus keeps its target label and renames Perf's.
                        f'max by (worker) (outpost_worker_perf{{{G},object="Processor",counter="% Processor Time"}})',
                        "{{worker}}",
                    )
                ],
                unit="percent",
                description="Perf: Processor % Processor Time (_Total) of each worker machine.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Worker memory used",
                [
                    prom(
                        f'max by (worker) (outpost_worker_perf{{{G},object="Memory",counter="% Used Memory"}})',
                        "{{worker}}",
                    )
                ],
                unit="percent",
                description="Perf: Memory % Used Memory of each worker machine.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Agent request errors",
                [
                    prom(
                        f"sum by (endpoint, status) "
                        f"(increase(outpost_agent_request_errors_total{{{G}}}[$__rate_interval])) or vector(0)",
                        "{{endpoint}} {{status}}",
                    )
                ],
                span=24,
                description="Agents' failed requests to the server (over OTLP), by endpoint and HTTP status "
                "(transport: no answer). 0 when none failed.",
            )
        )
        .with_row(row("Certificates"))
        .with_panel(
            prom_table_panel(
                "Certificate expiry",
                [prom("outpost_certificate_expiry_timestamp_seconds - time()", instant=True)],
                organize={"excludeByName": {"Time": True}, "renameByName": {"Value": "seconds left"}},
                span=24,
                height=6,
            )
        )
        .with_row(row("Logs (Kusto)"))
        .with_panel(
            kql_table_panel(
                "Latest heartbeat per worker",
                """
Heartbeat
| where $__timeFilter(TimeGenerated)
| summarize arg_max(TimeGenerated, *) by Computer
| project Computer, WorkerGroup_s, LastHeartbeat = TimeGenerated, ComputerIP, OSType, OSName, Version
| order by LastHeartbeat asc
""",
                text="Last heartbeat row per worker from the Heartbeat table (oldest first).",
            )
        )
        .with_panel(
            kql_table_panel(
                "Job outcomes by runbook",
                """
AzureDiagnostics
| where $__timeFilter(TimeGenerated)
| where Category == "JobLogs" and ResultType in ("Completed", "Failed", "Stopped", "Suspended")
| summarize Jobs = count(), Failed = countif(ResultType == "Failed") by RunbookName_s, RunOn_s
| order by Failed desc
""",
                text="Finished jobs per runbook and group from the Azure Automation job logs.",
            )
        )
    )
    return finish(dash)
