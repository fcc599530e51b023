"""The published Azure Monitor queries in ../shared/conformance/kql: where they are, and how to load them.

Shared by the in-process conformance test (tables filled through the collector's
ingest functions) and the live one (real server, real agents, real jobs). The
folder sits beside the clone in CI; a plain clone has no ../shared, so tests skip
there, and fail in CI (env `CI` set) rather than silently pass.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "conformance" / "kql"

# Azure Workbook parameters, filled in as ../shared/conformance/README.md says.
PLACEHOLDERS = {
    "{TimeRange:query}": "> ago(1d)",
    "{TimeRangeSelect:query}": "> ago(1d)",
    "{TimeRange:start}": "ago(1d)",
    "{TimeRange:end}": "now()",
    "{TimeRange:grain}": "1h",
    "{TimeRangeSelect:grain}": "1h",
    "{UnhealthyCriteria}": "15m",
    "{Servers}": '"w1"',
    "{ComputerName}": "w1",
    "{Subscription:id}": "any-subscription",
    "{healthStatus}": "ALL",
    "{DistributionSelection}": "ALL",
    "{AgentsState}": "All agents",
}

# Queries whose right answer is an error, not rows.
SYNTAX_ERROR = "04"  # the source's typo `by JobId_g.`
UNKNOWN_TABLE = "25"  # Update Management's `Update` table


def require_queries() -> list[Path]:
    """The 38 query files; skips the calling module on a plain clone, raises in CI."""
    if not CONFORMANCE.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError(f"conformance queries missing at {CONFORMANCE}; CI must place shared/ beside the clone")
        pytest.skip(
            f"conformance queries not found at {CONFORMANCE} (a plain clone has no ../shared); CI runs them",
            allow_module_level=True,
        )
    return sorted(CONFORMANCE.glob("*.kql"))


def load(name: str, *, worker: str = "w1") -> str:
    """Query text with the workbook placeholders substituted; `worker` fills {Servers} and {ComputerName}."""
    values = {**PLACEHOLDERS, "{Servers}": f'"{worker}"', "{ComputerName}": worker}
    text = (CONFORMANCE / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(key, value)
    assert not re.search(r"\{[A-Za-z]+(:[a-z]+)?\}", text), f"unsubstituted placeholder in {name}"
    return text
