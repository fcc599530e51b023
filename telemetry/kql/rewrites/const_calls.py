"""Calls of `telemetry.kql.row_functions` whose arguments are all literals, folded to their value.

`print s = unicode_codepoints_to_string(75, 117)` becomes `print s = 'Ku'`: the function runs once,
here, and its value is written back as a KQL literal of the function's type.
"""

from __future__ import annotations

import json
import math
from typing import Any

from telemetry.kql.rewrites.row_calls import call_args
from telemetry.kql.row_functions import FUNCTIONS
from telemetry.kql.tree import Edit, Tree, call_name, end, start

MAX_LITERAL = 100_000  # characters of a folded value written into the query


def kql_literal(value: Any, kind: str) -> str:
    if kind == "dynamic":
        return f"dynamic({json.dumps(value)})"
    if kind == "string":
        text = "" if value is None else str(value)
        for raw, escaped in (("\\", "\\\\"), ("'", "\\'"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            text = text.replace(raw, escaped)
        return f"'{text}'"
    if value is None:
        return f"{kind}(null)"
    if kind == "bool":
        return "true" if value else "false"
    if kind == "real" and not math.isfinite(value):
        return "real(nan)" if math.isnan(value) else f"real({'-' if value < 0 else '+'}inf)"
    return f"{kind}({value!r})"


def edits(tree: Tree) -> list[Edit]:
    out = []
    for call in tree.calls(*FUNCTIONS):
        fn, kind, arity = FUNCTIONS[call_name(call)]
        args = call_args(tree, call)
        if args is None or any(how == "column" for how, _ in args) or (arity and len(args) not in arity):
            continue
        text = kql_literal(fn([v for _, v in args]), kind)
        if len(text) <= MAX_LITERAL:
            out.append(Edit(start(call), end(call), text))
    return out
