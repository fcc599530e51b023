"""Job performance: per-runbook duration, failure rate and schedule-to-start latency."""

from __future__ import annotations

from typing import Any

from .common import base, datasource_variables, finish, label_variable, prom
from .panels import bar_panel, kql_table_panel, row, timeseries_panel

UID = "outpost-jobs"
SEL = 'group=~"$group",runbook=~"$runbook"'
FINISHED = "Completed|Failed|Stopped|Suspended"


def _per_runbook_quantile(metric: str, q: float, ref: str) -> Any:
    return prom(
        f"histogram_quantile({q}, sum by (runbook, le) (rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
        f"{{{{runbook}}}} p{int(q * 100)}",
        ref=ref,
    )


def build() -> dict[str, Any]:
    dash = base(UID, "Outpost / Job performance", "Per-runbook duration, failure rate and queue latency.")
    for var in datasource_variables():
        dash = dash.with_variable(var)
    dash = dash.with_variable(
        label_variable("group", "Group", "label_values(outpost_jobs_total, group)", multi=True)
    ).with_variable(
        label_variable("runbook", "Runbook", 'label_values(outpost_jobs_total{group=~"$group"}, runbook)', multi=True)
    )

    dash = (
        dash.with_row(row("Duration and failures"))
        .with_panel(
            timeseries_panel(
                "Job duration per runbook",
                [
                    _per_runbook_quantile("outpost_job_duration_seconds", 0.5, "A"),
                    _per_runbook_quantile("outpost_job_duration_seconds", 0.95, "B"),
                ],
                unit="s",
            )
        )
        .with_panel(
            timeseries_panel(
                "Failure rate per runbook",
                [
                    prom(
                        "sum by (runbook) "
                        f'(rate(outpost_jobs_total{{{SEL},status=~"Failed|Suspended"}}[$__rate_interval]))'
                        f" / sum by (runbook) "
                        f'(rate(outpost_jobs_total{{{SEL},status=~"{FINISHED}"}}[$__rate_interval]))',
                        "{{runbook}}",
                    )
                ],
                unit="percentunit",
                description="Failed or suspended jobs / finished jobs.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Schedule-to-start latency",
                [
                    _per_runbook_quantile("outpost_job_queue_wait_seconds", 0.5, "A"),
                    _per_runbook_quantile("outpost_job_queue_wait_seconds", 0.95, "B"),
                    _per_runbook_quantile("outpost_job_queue_wait_seconds", 0.99, "C"),
                ],
                unit="s",
                description="From job creation to the worker starting it (queue wait histogram).",
            )
        )
        .with_panel(
            bar_panel(
                "Finished jobs by runbook and status",
                prom(
                    f'sum by (runbook, status) (increase(outpost_jobs_total{{{SEL},status=~"{FINISHED}"}}[$__range]))',
                    "{{runbook}} {{status}}",
                    instant=True,
                ),
            )
        )
        .with_row(row("Job logs (Kusto)"))
        .with_panel(
            kql_table_panel(
                "Recent failed jobs",
                """
AzureDiagnostics
| where $__timeFilter(TimeGenerated)
| where Category == "JobLogs" and ResultType in ("Failed", "Suspended")
| project TimeGenerated, RunbookName_s, JobId_g, RunOn_s, ResultType, ResultDescription
| order by TimeGenerated desc
| take 50
""",
            )
        )
        .with_panel(
            kql_table_panel(
                "Error stream",
                """
AzureDiagnostics
| where $__timeFilter(TimeGenerated)
| where Category == "JobStreams" and StreamType_s == "Error"
| project TimeGenerated, RunbookName_s, JobId_g, ResultDescription
| order by TimeGenerated desc
| take 50
""",
                text="Lines runbooks wrote to the Error stream (stderr or ERROR: prefix).",
            )
        )
    )
    return finish(dash)
