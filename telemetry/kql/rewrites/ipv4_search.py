"""`has_ipv4`, `has_ipv4_prefix`, `has_any_ipv4`, `has_any_ipv4_prefix` as one regex match.

Kusto finds an address in free text when it is a valid IPv4 address bounded by characters that
are neither alphanumeric nor a dot. A prefix is valid when it is a whole address or ends with a
dot (`192.168.`); an invalid one matches nothing. The addresses and prefixes must be literals
(strings, or one `dynamic([...])` of strings): the regex is built here, from their values.
"""

from __future__ import annotations

import json
import re

from telemetry.kql.tree import Edit, Node, Tree, call_name, core, end, rule, start

OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
EDGE = "[^0-9A-Za-z.]"
NAMES = ("has_ipv4", "has_ipv4_prefix", "has_any_ipv4", "has_any_ipv4_prefix")
_VALID_OCTET = re.compile(OCTET)


def _literal_strings(tree: Tree, arg: Node) -> list[str] | None:
    """The string values of a literal argument, or None when it is not one."""
    inner = core(arg)
    text = tree.text(inner).strip()
    try:
        if rule(inner) == "StringLiteralExpression" and text[:1] in "'\"" and "\\" not in text:
            return [text[1:-1]]
        if rule(inner) == "DynamicLiteralExpression":
            body = text[text.index("(") + 1 : text.rindex(")")].replace("'", '"')
            values = json.loads(body)
            if isinstance(values, list) and all(isinstance(v, str) for v in values):
                return values
    except ValueError:
        return None
    return None


def _pattern(value: str, prefix: bool) -> str | None:
    """The regex for one address (or prefix) bounded as Kusto bounds it; None when it is invalid."""
    parts = value.split(".")
    open_end = prefix and value.endswith(".") and len(parts) <= 4
    given = parts[:-1] if open_end else parts
    if not (1 <= len(given) <= 4) or (not open_end and len(given) != 4):
        return None
    if not all(_VALID_OCTET.fullmatch(p) for p in given):
        return None
    rest = "".join(rf"\.{OCTET}" for _ in range(4 - len(given)))
    return "\\.".join(given) + rest


def _expand(tree: Tree, call: Node) -> str | None:
    fn, args = call_name(call), tree.args(call)
    if len(args) < 2 or (not fn.startswith("has_any") and len(args) != 2):
        return None
    values: list[str] = []
    for arg in args[1:]:
        found = _literal_strings(tree, arg)
        if found is None:
            return None
        values += found
    alternatives = [p for v in values if (p := _pattern(v.strip(), fn.endswith("prefix"))) is not None]
    if not alternatives:
        return "false"
    source = tree.text(args[0]).strip()
    regex = f"(^|{EDGE})({'|'.join(alternatives)})($|{EDGE})"
    return f'(tostring({source}) matches regex @"{regex}")'


def edits(tree: Tree) -> list[Edit]:
    out = []
    for call in tree.calls(*NAMES):
        text = _expand(tree, call)
        if text is not None:
            out.append(Edit(start(call), end(call), text))
    return out
