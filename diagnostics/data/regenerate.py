"""Rebuild azure_regions.json from the published Azure Automation DNS records page.

Run by a developer, never at runtime:
    python -m diagnostics.data.regenerate ../shared/data/azure-automation-region-dns.md

The page (MicrosoftDocs/azure-docs, automation-region-dns-records.md) has two tables: legacy
region-scoped records and account-scoped Private Link records (``<accountId>`` placeholder).
The tests re-parse the page and compare, so a stale JSON is caught in CI.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

JSON_PATH = Path(__file__).with_name("azure_regions.json")
_ROW = re.compile(r"^\|\s*([^|*][^|]*?)\s*\|\s*(.+?)\s*\|\s*([a-z0-9]+)\s*\|\s*$")
# Records found only in older copies of Microsoft's docs and troubleshooters (see the source page's
# "Historical variants"): still resolvable for old workers, so checked but never required.
HISTORICAL: dict[str, list[str]] = {
    "eus": ["eus-jobruntimedata-prod-su1.azure-automation.net", "eus-agentservice-prod-1.azure-automation.net"],
    "ncus": ["ncus-jobruntimedata-prod-su1.azure-automation.net", "ncus-agentservice-prod-1.azure-automation.net"],
}


def _records(cell: str) -> list[str]:
    return [part.strip().strip("`") for part in cell.split("<br>") if part.strip()]


def parse(markdown: str) -> dict[str, Any]:
    section = ""
    regions: dict[str, dict[str, Any]] = {}
    for line in markdown.splitlines():
        if line.startswith("## "):
            section = "legacy" if "legacy" in line.lower() else "private_link" if "Private Link" in line else ""
            continue
        match = _ROW.match(line)
        if not section or not match or match.group(1).startswith("-"):
            continue
        name, cell, code = match.groups()
        entry = regions.setdefault(code, {"code": code, "name": name, "legacy": [], "account": []})
        if section == "legacy":
            entry["legacy"] = _records(cell)
        else:
            # "https://<accountId>.agentsvc.we.azure-automation.net" -> "{account_id}.agentsvc.we...."
            entry["account"] = [
                r.removeprefix("https://").replace("<accountId>", "{account_id}") for r in _records(cell)
            ]
    for code, records in HISTORICAL.items():
        regions.setdefault(code, {"code": code, "name": "", "legacy": [], "account": []})
        regions[code]["historical"] = records
    return {
        "source": "MicrosoftDocs/azure-docs articles/automation/how-to/automation-region-dns-records.md "
        "(commit 02652bc96078a37df6c26f5617c5d82b2176c2fd, ms.date 07/29/2024)",
        "port": 443,
        "regions": [regions[c] for c in sorted(regions)],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m diagnostics.data.regenerate PATH/azure-automation-region-dns.md", file=sys.stderr)
        return 2
    data = parse(Path(argv[0]).read_text(encoding="utf-8"))
    JSON_PATH.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(data['regions'])} regions to {JSON_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
