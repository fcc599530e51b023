"""Pieces every Outpost dashboard shares: data source variables, query builders, finishing."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from .kusto import ADX_TYPE, KustoQueryBuilder

GRAFANA_FLAVOUR = "11.6"
# Data sources are picked through these variables, never by uid, so the dashboards
# work with whatever Prometheus / Azure Data Explorer data source a Grafana has.
PROM_VAR = "prometheus"
KUSTO_VAR = "kusto"
PROM = model.DataSourceRef(type_val="prometheus", uid=f"${{{PROM_VAR}}}")
KUSTO = model.DataSourceRef(type_val=ADX_TYPE, uid=f"${{{KUSTO_VAR}}}")
# The Kusto database name Outpost's collector answers to; a variable so a renamed
# database needs no dashboard edit.
DATABASE_VAR = "database"
DEFAULT_DATABASE = "Outpost"


def datasource_variables() -> list[db.DatasourceVariable | db.CustomVariable]:
    return [
        db.DatasourceVariable(PROM_VAR).label("Prometheus").type("prometheus"),
        db.DatasourceVariable(KUSTO_VAR).label("Outpost Kusto").type(ADX_TYPE),
        db.CustomVariable(DATABASE_VAR)
        .label("Kusto database")
        .values(DEFAULT_DATABASE)
        .current(model.VariableOption(selected=True, text=DEFAULT_DATABASE, value=DEFAULT_DATABASE))
        .hide(model.VariableHide.HIDE_VARIABLE),
    ]


def label_variable(name: str, label: str, query: str, *, multi: bool) -> db.QueryVariable:
    """A variable filled from Prometheus label values; multi-value ones offer All (= any)."""
    var = (
        db.QueryVariable(name)
        .label(label)
        .datasource(PROM)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        var = var.all_value(".*")
    return var


def prom(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(PROM)
    if legend:
        query = query.legend_format(legend)
    if instant:
        query = query.instant().format(PromQueryFormat.TABLE)
    return query


def kql(query: str, *, ref: str = "A", fmt: str = "table") -> KustoQueryBuilder:
    return KustoQueryBuilder(query.strip(), f"${DATABASE_VAR}", KUSTO).ref_id(ref).result_format(fmt)


def kql_description(text: str, query: str) -> str:
    # Show the KQL in the panel's info tooltip so operators can copy it into `outpost query`.
    return f"{text}\n\nKQL:\n```\n{query.strip()}\n```"


def finish(dashboard: db.Dashboard) -> dict[str, Any]:
    """Give every panel (rows included) a unique id and return the JSON document."""
    built = dashboard.build()
    next_id = 1
    for panel in built.panels or []:
        panel.id_val = next_id
        next_id += 1
        for child in getattr(panel, "panels", None) or []:
            child.id_val = next_id
            next_id += 1
    return json.loads(json.dumps(built, cls=JSONEncoder))


def base(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["outpost"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )
