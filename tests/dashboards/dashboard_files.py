"""Reading the committed dashboards: shared by the static and the live dashboard tests."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
JSON_DIR = DASHBOARD_DIR / "json"
ADX_TYPE = "grafana-azure-data-explorer-datasource"


def load_generator() -> Any:
    """Import dashboards/generate.py (not an installed package) as a module."""
    if str(DASHBOARD_DIR) not in sys.path:
        sys.path.insert(0, str(DASHBOARD_DIR))
    import generate  # type: ignore[import-not-found]

    return generate


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(JSON_DIR.glob("*.json"))}


def all_panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(doc: dict[str, Any], ds_type: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) pairs whose data source is of ds_type."""
    for panel in all_panels(doc):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("type") == ds_type:
                yield panel, target


def promql_expressions() -> list[tuple[str, str]]:
    """(where, expr) for every Prometheus query in every committed dashboard."""
    return [
        (f"{name}: {panel['title']} [{target['refId']}]", target["expr"])
        for name, doc in dashboards().items()
        for panel, target in targets(doc, "prometheus")
    ]


def kql_queries() -> list[tuple[str, str]]:
    return [
        (f"{name}: {panel['title']}", target["query"])
        for name, doc in dashboards().items()
        for panel, target in targets(doc, ADX_TYPE)
    ]


# What Grafana substitutes before a query leaves it, for running queries outside Grafana.
PROM_SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def concrete_promql(expr: str, variables: dict[str, str]) -> str:
    for macro, value in PROM_SUBSTITUTIONS.items():
        expr = expr.replace(macro, value)
    return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), expr)


def concrete_kql(query: str, variables: dict[str, str], lookback: str = "1h") -> str:
    query = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m.group(1)} >= ago({lookback}) and {m.group(1)} <= now()",
        query,
    )
    return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), query)


def metric_names(expr: str) -> set[str]:
    """The outpost_* metric names an expression reads (histogram series reduced to their base name)."""
    return set(re.findall(r"\b(outpost_[a-z_]+)", expr))
