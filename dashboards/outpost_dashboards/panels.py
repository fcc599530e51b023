"""Thin panel constructors with Outpost's defaults, so dashboard modules read as a list of panels."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from .common import KUSTO, PROM, kql, kql_description

Target = cogbuilder.Builder[cogvariants.Dataquery]


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def timeseries_panel(
    title: str,
    targets: Sequence[Target],
    *,
    unit: str = "short",
    span: int = 12,
    height: int = 8,
    description: str = "",
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(PROM)
        .targets(list(targets))
        .unit(unit)
        .span(span)
        .height(height)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    return panel.description(description) if description else panel


def stat_panel(
    title: str,
    target: Target,
    *,
    unit: str = "short",
    span: int = 4,
    height: int = 4,
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    description: str = "",
    mappings: Sequence[model.ValueMapping] = (),
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .datasource(PROM)
        .with_target(target)
        .unit(unit)
        .span(span)
        .height(height)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds(*steps))
    )
    if mappings:
        panel = panel.mappings(list(mappings))
    return panel.description(description) if description else panel


def bar_panel(
    title: str,
    target: Target,
    *,
    unit: str = "short",
    span: int = 12,
    height: int = 8,
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    description: str = "",
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .datasource(PROM)
        .with_target(target)
        .unit(unit)
        .span(span)
        .height(height)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds(*steps))
    )
    return panel.description(description) if description else panel


def prom_table_panel(
    title: str,
    targets: Sequence[Target],
    *,
    span: int = 12,
    height: int = 8,
    description: str = "",
    organize: dict[str, object] | None = None,
) -> table.Panel:
    panel = table.Panel().title(title).datasource(PROM).targets(list(targets)).span(span).height(height)
    if organize:
        panel = panel.with_transformation(model.DataTransformerConfig(id_val="organize", options=organize))
    return panel.description(description) if description else panel


def kql_table_panel(title: str, query: str, *, span: int = 12, height: int = 8, text: str = "") -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .datasource(KUSTO)
        .with_target(kql(query))
        .description(kql_description(text or title, query))
        .span(span)
        .height(height)
        .filterable(True)
    )


def kql_timeseries_panel(
    title: str, query: str, *, span: int = 12, height: int = 8, text: str = ""
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .datasource(KUSTO)
        .with_target(kql(query, fmt="time_series"))
        .description(kql_description(text or title, query))
        .span(span)
        .height(height)
    )


def row(title: str) -> db.Row:
    return db.Row(title)
