"""Worker detail, templated by group and worker: is it alive, what did it run, what does diagnose say."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.models import dashboard as model

from .common import PROM, base, datasource_variables, finish, label_variable, prom
from .panels import (
    kql_table_panel,
    kql_timeseries_panel,
    prom_table_panel,
    row,
    stat_panel,
    thresholds,
    timeseries_panel,
)

UID = "outpost-worker"
SEL = 'group="$group",worker="$worker"'

UP_MAPPINGS: list[model.ValueMapping] = [
    model.ValueMap(
        options={
            "0": model.ValueMappingResult(text="DOWN", color="red", index=0),
            "1": model.ValueMappingResult(text="UP", color="green", index=1),
        }
    )
]


def build() -> dict[str, Any]:
    dash = base(UID, "Outpost / Worker detail", "One hybrid worker: heartbeats, jobs and diagnose results.")
    for var in datasource_variables():
        dash = dash.with_variable(var)
    dash = dash.with_variable(
        label_variable("group", "Group", "label_values(outpost_worker_up, group)", multi=False)
    ).with_variable(
        label_variable("worker", "Worker", 'label_values(outpost_worker_up{group="$group"}, worker)', multi=False)
    )

    dash = (
        dash.with_row(row("Health"))
        .with_panel(
            stat_panel(
                "Status",
                prom(f"max(outpost_worker_up{{{SEL}}})"),
                steps=((None, "red"), (1, "green")),
                mappings=UP_MAPPINGS,
                span=6,
            )
        )
        .with_panel(
            stat_panel(
                "Last heartbeat",
                prom(f"time() - max(outpost_worker_last_heartbeat_timestamp_seconds{{{SEL}}})"),
                unit="s",
                steps=((None, "green"), (120, "orange"), (300, "red")),
                span=6,
            )
        )
        .with_panel(
            stat_panel(
                "Clock skew",
                prom(f"max(outpost_worker_clock_skew_seconds{{{SEL}}})"),
                unit="s",
                steps=((None, "red"), (-30, "green"), (30, "red")),
                span=6,
                description="Worker clock minus server clock, as measured by the last diagnose/heartbeat.",
            )
        )
        .with_panel(
            stat_panel(
                "Failing checks",
                prom(f"sum(outpost_diagnose_check_failing{{{SEL}}}) or vector(0)"),
                steps=((None, "green"), (1, "red")),
                span=6,
            )
        )
        .with_panel(
            statetimeline.Panel()
            .title("Heartbeat timeline")
            .datasource(PROM)
            .with_target(prom(f"max(outpost_worker_up{{{SEL}}})", "up"))
            .mappings(UP_MAPPINGS)
            .thresholds(thresholds((None, "red"), (1, "green")))
            .fill_opacity(70)
            .line_width(0)
            .span(24)
            .height(5)
        )
        .with_panel(
            timeseries_panel(
                "Heartbeat age",
                [prom(f"time() - outpost_worker_last_heartbeat_timestamp_seconds{{{SEL}}}", "age")],
                unit="s",
            )
        )
        .with_panel(
            kql_timeseries_panel(
                "Heartbeats per minute",
                """
Heartbeat
| where $__timeFilter(TimeGenerated)
| where Computer == "$worker"
| summarize Heartbeats = count() by bin(TimeGenerated, 1m)
| order by TimeGenerated asc
""",
                text="Gaps are minutes without a heartbeat row.",
            )
        )
        .with_row(row("Jobs"))
        .with_panel(
            kql_table_panel(
                "Jobs on this worker",
                """
AzureDiagnostics
| where $__timeFilter(TimeGenerated)
| where Category == "JobLogs" and HybridWorker_s == "$worker"
| summarize arg_max(TimeGenerated, ResultType, ResultDescription) by JobId_g, RunbookName_s
| project TimeGenerated, JobId_g, RunbookName_s, Status = ResultType, ResultDescription
| order by TimeGenerated desc
| take 100
""",
                span=24,
                text="Latest status of each job this worker ran (Azure Automation job logs).",
            )
        )
        .with_row(row("Diagnose"))
        .with_panel(
            prom_table_panel(
                "Diagnose checks (metrics)",
                [prom(f"outpost_diagnose_check_failing{{{SEL}}}", instant=True)],
                organize={
                    "excludeByName": {"Time": True, "__name__": True, "group": True, "worker": True},
                    "renameByName": {"Value": "failing"},
                },
            )
        )
        .with_panel(
            kql_table_panel(
                "Diagnose results",
                """
DiagnosticResults
| where $__timeFilter(TimeGenerated)
| where Computer == "$worker"
| summarize arg_max(TimeGenerated, Status, Finding, Remediation) by CheckId
| project TimeGenerated, CheckId, Status, Finding, Remediation
| order by Status asc, CheckId asc
""",
                text="The latest diagnose result of each check this worker reported.",
            )
        )
        .with_panel(
            kql_table_panel(
                "Recent heartbeats",
                """
Heartbeat
| where $__timeFilter(TimeGenerated)
| where Computer == "$worker"
| project TimeGenerated, Computer, WorkerGroup_s, ComputerIP, OSType, OSName, Version
| order by TimeGenerated desc
| take 50
""",
                span=24,
            )
        )
    )
    return finish(dash)
