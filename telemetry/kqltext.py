"""Small text tools for rewriting KQL without a second parser.

The query layer fills duckdb-kql's gaps by rewriting query *text*. To do that
safely it works on a masked copy in which string literals and comments are
blanked out (same length), so a `|` or `(` inside a string can never be taken
for syntax, and positions in the mask are positions in the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def mask(text: str) -> str:
    """Blank string literal contents and `//` comments; keep quotes and length."""
    return _blank(text, strings=True)


def strip_comments(text: str) -> str:
    """Blank `//` comments only (same length), so rewritten pieces can never end inside one."""
    return _blank(text, strings=False)


def _blank(text: str, *, strings: bool) -> str:
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            for k in range(i, j):
                out[k] = " "
            i = j
            continue
        if text.startswith("```", i):
            j = text.find("```", i + 3)
            j = n if j == -1 else j + 3
            for k in range(i + 3, max(i + 3, j - 3)):
                if strings:
                    out[k] = " " if text[k] != "\n" else "\n"
            i = j
            continue
        if ch in "'\"":
            verbatim = i > 0 and text[i - 1] in "@hH" and (i < 2 or not text[i - 2].isalnum())
            j = i + 1
            while j < n and text[j] != ch:
                if text[j] == "\\" and not verbatim:
                    j += 1
                j += 1
            if strings:
                for k in range(i + 1, min(j, n)):
                    out[k] = " "
            i = j + 1
            continue
        i += 1
    return "".join(out)


def match_paren(masked: str, open_pos: int) -> int:
    """Index of the bracket closing the one at *open_pos* (or len on unbalanced)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[masked[open_pos]]]
    for i in range(open_pos + 1, len(masked)):
        ch = masked[i]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")]}" and stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return i
    return len(masked)


def split_top(masked: str, start: int, end: int, sep: str = ",") -> list[tuple[int, int]]:
    """Spans of *masked[start:end]* split at depth-0 *sep* characters."""
    spans: list[tuple[int, int]] = []
    depth = 0
    seg = start
    for i in range(start, end):
        ch = masked[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            spans.append((seg, i))
            seg = i + 1
    spans.append((seg, end))
    return spans


def depth_at(masked: str, start: int, pos: int) -> int:
    depth = 0
    for i in range(start, pos):
        ch = masked[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth


@dataclass(frozen=True)
class Operator:
    """One pipeline operator around a position: its span and its pipeline's start."""

    pipeline_start: int  # first char of the pipeline's source expression
    start: int  # first char after the `|` introducing this operator (or pipeline_start)
    end: int  # exclusive: the next depth-0 `|`, `;`, unmatched `)` or end of text
    statement_start: int  # start of the enclosing top-level statement (for its `let`s)


def pipeline_start(masked: str, pos: int) -> int:
    """Start of the pipeline that contains *pos* (after `(`, `;` or `let x =`)."""
    depth = 0
    i = pos - 1
    while i >= 0:
        ch = masked[i]
        if ch in ")]}":
            depth += 1
        elif ch in "([{":
            if depth == 0:
                break
            depth -= 1
        elif ch == ";" and depth == 0:
            break
        i -= 1
    start = i + 1
    m = re.match(r"\s*let\s+[A-Za-z_][A-Za-z0-9_]*\s*=\s*", masked[start:pos])
    if m:
        start += m.end()
    m = re.match(r"\s*materialize\s*\(", masked[start:pos])
    if m:  # `let X = materialize(<pipeline>)`: the pipeline is inside
        start += m.end()
    while start < pos and masked[start].isspace():
        start += 1
    return start


def operator_at(masked: str, pos: int) -> Operator:
    start = pipeline_start(masked, pos)
    # the last depth-0 `|` between the pipeline start and pos
    op_start = start
    depth = 0
    for i in range(start, pos):
        ch = masked[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and depth == 0:
            op_start = i + 1
    end = operator_end(masked, pos)
    return Operator(start, op_start, end, statement_start(masked, start))


def operator_end(masked: str, pos: int) -> int:
    depth = 0
    for i in range(pos, len(masked)):
        ch = masked[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return i
            depth -= 1
        elif ch in "|;" and depth == 0:
            return i
    return len(masked)


def statement_start(masked: str, pos: int) -> int:
    """Start of the top-level (depth 0 overall) statement containing *pos*."""
    depth = 0
    last = 0
    for i in range(0, pos):
        ch = masked[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == ";" and depth == 0:
            last = i + 1
    return last


def find_calls(masked: str, name: str) -> list[tuple[int, int, int]]:
    """(name_start, open_paren, close_paren) of every call to *name* (case-sensitive, as KQL)."""
    found = []
    for m in re.finditer(rf"(?<![A-Za-z0-9_.$-]){re.escape(name)}\s*\(", masked):
        open_pos = m.end() - 1
        found.append((m.start(), open_pos, match_paren(masked, open_pos)))
    return found


def quote_ident(name: str) -> str:
    if _IDENT.fullmatch(name) and name not in _KEYWORDS:
        return name
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Words that cannot be bare column names in KQL; quoted when we emit them.
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "not",
        "by",
        "on",
        "with",
        "in",
        "has",
        "contains",
        "between",
        "let",
        "where",
        "project",
        "extend",
        "summarize",
        "join",
        "union",
        "kind",
        "from",
        "to",
        "step",
        "default",
        "true",
        "false",
        "null",
        "as",
        "asc",
        "desc",
        "range",
        "print",
        "datatable",
        "search",
        "take",
        "limit",
        "sort",
        "order",
        "top",
        "count",
        "distinct",
        "type",
        "bool",
        "int",
        "long",
        "real",
        "string",
        "datetime",
        "timespan",
        "dynamic",
        "guid",
        "decimal",
    }
)
