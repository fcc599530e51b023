"""Lexical tools that work where no parse tree can: before parsing, and on generated SQL.

The budget checks a query's shape (bracket nesting, number length) *before* the recursive
parser sees it, and guards `generate_series` in the translated SQL; both read a masked copy
in which string literals and comments are blanked out (same length), so a `(` inside a string
is never taken for syntax. Rewrites of KQL never use these: they work on the parse tree
(`tree.py`). `quote_ident` / `string_literal` spell names and strings that rewrites emit.
"""

from __future__ import annotations

import re

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
