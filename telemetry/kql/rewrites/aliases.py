"""Spellings Kusto accepts that duckdb-kql does not: deprecated aliases, `ingestion_time()`, hints.

- `makelist`/`makeset`/`notempty`/`notnull` are the old names of `make_list`/`make_set`/
  `isnotempty`/`isnotnull`;
- `ingestion_time()` reads the server receive time every Outpost table carries (`_TimeReceived`);
- `hint.strategy=partitioned` (on summarize) is a performance hint: the answer is the same without it.
"""

from __future__ import annotations

from telemetry.kql.tree import Edit, Tree, call_name, children, end, rule_children, start, tokens

RENAMES = {"makelist": "make_list", "makeset": "make_set", "notempty": "isnotempty", "notnull": "isnotnull"}


def edits(tree: Tree) -> list[Edit]:
    out: list[Edit] = []
    for call in tree.calls(*RENAMES):
        name = children(call)[0]
        out.append(Edit(start(name), end(name), RENAMES[call_name(call)]))
    for call in tree.calls("ingestion_time"):
        if not tree.args(call):
            out.append(Edit(start(call), end(call), "_TimeReceived"))
    for op in tree.nodes("SummarizeOperator"):
        for param in rule_children(op):
            if "hint.strategy" in tokens(param):
                out.append(Edit(start(param), end(param), ""))
    return out
