"""KQL alert rules (YAML), shaped like Azure Monitor log-search alerts.

A rule runs `query` every `frequency`, reads `metric_column` (or counts rows) per
combination of `dimensions`, and breaches when `value <operator> threshold`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEVERITIES = ("critical", "warning", "info")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThan": operator.gt,
    "GreaterThanOrEqual": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqual": operator.le,
    "Equal": operator.eq,
    "NotEqual": operator.ne,
}
_ALIASES = {">": "GreaterThan", ">=": "GreaterThanOrEqual", "<": "LessThan", "<=": "LessThanOrEqual",
            "==": "Equal", "!=": "NotEqual"}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KNOWN_KEYS = {
    "name", "query", "frequency", "operator", "threshold", "metric_column", "dimensions", "severity",
    "summary", "description", "runbook_url", "labels", "suppress_by_maintenance", "enabled",
}  # fmt: skip


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the file and the field."""


def parse_duration(value: Any, what: str = "duration") -> float:
    """'30s', '5m', '1h', '1d' or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise RuleError(f"{what}: {value!r} is not a duration like 30s, 5m, 1h")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise RuleError(f"{what}: must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class KqlAlertRule:
    name: str
    query: str
    threshold: float
    operator: str = "GreaterThan"
    frequency_s: float = 60.0
    metric_column: str | None = None  # None: the number of result rows per dimension set
    dimensions: dict[str, str] = field(default_factory=dict)  # alert label -> result column
    severity: str = "warning"
    summary: str = ""
    description: str = ""
    runbook_url: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    suppress_by_maintenance: bool = True
    source: str = ""

    def breaches(self, value: float) -> bool:
        return OPERATORS[self.operator](value, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "query": self.query, "frequency_seconds": self.frequency_s,
            "metric_column": self.metric_column, "operator": self.operator, "threshold": self.threshold,
            "dimensions": dict(self.dimensions), "severity": self.severity, "source": self.source,
            "suppress_by_maintenance": self.suppress_by_maintenance,
        }  # fmt: skip


def rule_from_dict(data: Any, source: str = "<rule>") -> KqlAlertRule:
    if not isinstance(data, dict):
        raise RuleError(f"{source}: a rule must be a mapping")
    where = f"{source}: rule {data.get('name', '?')!r}"
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {sorted(unknown)}")
    for key in ("name", "query", "threshold"):
        if data.get(key) in (None, ""):
            raise RuleError(f"{where}: `{key}` is required")
    if not _LABEL.match(str(data["name"])):
        raise RuleError(f"{where}: name must be letters, digits and _ (it becomes the alertname)")
    op = _ALIASES.get(str(data.get("operator", "GreaterThan")), str(data.get("operator", "GreaterThan")))
    if op not in OPERATORS:
        raise RuleError(f"{where}: operator must be one of {sorted(OPERATORS)}")
    try:
        threshold = float(data["threshold"])
    except (TypeError, ValueError):
        raise RuleError(f"{where}: threshold must be a number") from None
    severity = str(data.get("severity", "warning"))
    if severity not in SEVERITIES:
        raise RuleError(f"{where}: severity must be one of {SEVERITIES}")
    dims = data.get("dimensions") or {}
    if isinstance(dims, list):  # a list of columns: each column is its own label
        dims = {str(c): str(c) for c in dims}
    if not isinstance(dims, dict) or not all(_LABEL.match(str(k)) for k in dims):
        raise RuleError(f"{where}: dimensions must map label names to result columns")
    labels = data.get("labels") or {}
    if not isinstance(labels, dict):
        raise RuleError(f"{where}: labels must be a mapping")
    return KqlAlertRule(
        name=str(data["name"]),
        query=str(data["query"]).strip(),
        threshold=threshold,
        operator=op,
        frequency_s=parse_duration(data.get("frequency", "1m"), f"{where}: frequency"),
        metric_column=data.get("metric_column") or None,
        dimensions={str(k): str(v) for k, v in dims.items()},
        severity=severity,
        summary=str(data.get("summary", "")),
        description=str(data.get("description", "")),
        runbook_url=str(data.get("runbook_url", "")),
        labels={str(k): str(v) for k, v in labels.items()},
        suppress_by_maintenance=bool(data.get("suppress_by_maintenance", True)),
        source=source,
    )


def load_rules(paths: Iterable[Path | str]) -> list[KqlAlertRule]:
    """Rules from YAML files or directories of *.yaml / *.yml (one rule, or `rules: [...]`, per file)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            files.append(path)
        else:
            raise RuleError(f"{path}: no such rule file or directory")
    rules: list[KqlAlertRule] = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise RuleError(f"{path}: not valid YAML: {exc}") from None
        items = doc.get("rules") if isinstance(doc, dict) and "rules" in doc else [doc]
        rules += [rule_from_dict(item, str(path)) for item in items or [] if item.get("enabled", True) is not False]
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleError(f"duplicate rule name(s): {duplicates}")
    return rules


def shipped_rules() -> list[Path]:
    """The repository's alerts/kql, present in a source checkout (the supported install)."""
    shipped = Path(__file__).resolve().parents[1] / "alerts" / "kql"
    return [shipped] if shipped.is_dir() else []
