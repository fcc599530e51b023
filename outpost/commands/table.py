"""Plain-text tables and record blocks for the CLI, sized to the terminal.

rich drew these before; importing rich.console cost `outpost job list` ~65 ms of its 0.25 s CPU
budget, so the layout rich gave is drawn here with the standard library: a heavy head
(┏━┳━┓ ┃ ┡━╇━┩), light rows (│ └─┴─┘), ids never folded, other cells folded to fit, and a table
that cannot fit readably printed as one block per row, with a line on stderr saying how to see all.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Sequence

DEFAULT_WIDTH = 80  # what a pipe with no COLUMNS gets, as rich and click give it
READABLE = 6  # a folded column narrower than this is unreadable: show records instead


def terminal_width() -> int:
    """COLUMNS if set, else the terminal of stdout, stderr or stdin (so `| less` keeps the width), else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for stream in (sys.__stdout__, sys.__stderr__, sys.__stdin__):
        try:
            return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            continue
    return DEFAULT_WIDTH


def _char_cells(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def cell_len(text: str) -> int:
    """Terminal cells `text` takes: a CJK character takes two, a combining mark none."""
    return len(text) if text.isascii() else sum(_char_cells(ch) for ch in text)


def _fold(word: str, width: int) -> list[str]:
    """A word longer than `width` cut into pieces of at most `width` cells."""
    pieces, piece, used = [], "", 0
    for ch in word:
        cells = _char_cells(ch) if not ch.isascii() else 1
        if used + cells > width and piece:
            pieces.append(piece)
            piece, used = "", 0
        piece += ch
        used += cells
    return [*pieces, piece]


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` cells: broken at spaces, a longer word folded."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if cell_len(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            pieces = _fold(word, width)
            lines.extend(pieces[:-1])
            line = pieces[-1]
        lines.append(line)
    return lines


def _pad(text: str, width: int) -> str:
    return text + " " * (width - cell_len(text))


def fit_widths(natural: Sequence[int], fixed: Sequence[bool], width: int) -> list[int] | None:
    """Column widths that fit `width` (borders included): the widest flexible columns narrowed first.

    None when that would leave a flexible column under READABLE cells (or fixed columns alone overflow).
    """
    overhead = 3 * len(natural) + 1  # "│ " before each cell, " " after, the closing "│"
    room = width - overhead - sum(w for w, f in zip(natural, fixed, strict=True) if f)
    flexible = sorted(w for w, f in zip(natural, fixed, strict=True) if not f)
    if sum(flexible) <= room:
        return list(natural)
    if room < READABLE * len(flexible):
        return None
    # The largest cap c with sum(min(w, c)) <= room; the room left over widens capped columns by one.
    cap, spent = 0, 0
    for i, w in enumerate(flexible):
        rest = len(flexible) - i
        if spent + w * rest > room:
            cap = (room - spent) // rest
            break
        spent += w
    spare = room - sum(min(w, cap) for w in flexible)
    widths = []
    for w, f in zip(natural, fixed, strict=True):
        if f or w <= cap:
            widths.append(w)
        else:
            widths.append(cap + (1 if spare > 0 else 0))
            spare -= 1
    return widths


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> list[str]:
    """The lines of a table whose columns have `widths` (cells wrapped to them)."""

    def rule(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def body(cells: Sequence[str], bar: str, bottom: bool = False) -> list[str]:
        """A row's lines; a header wrapped over several lines is bottom-aligned, as rich drew it."""
        wrapped = [wrap(c, w) for c, w in zip(cells, widths, strict=True)]
        height = max((len(w) for w in wrapped), default=1)
        filled = [[""] * (height - len(w)) + w if bottom else w + [""] * (height - len(w)) for w in wrapped]
        padded = [[_pad(ln, n) for ln in w] for w, n in zip(filled, widths, strict=True)]
        return [bar + bar.join(f" {column[i]} " for column in padded) + bar for i in range(height)]

    lines = [rule("┏", "━", "┳", "┓"), *body(header, "┃", bottom=True), rule("┡", "━", "╇", "┩")]
    for row in rows:
        lines += body(row, "│")
    lines.append(rule("└", "─", "┴", "┘"))
    return lines


def render_records(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """One block per row, `column  value`, empty cells left out."""
    pad = max((len(c) for c in columns), default=0)
    lines: list[str] = []
    for i, row in enumerate(rows, 1):
        lines.append(f"── row {i} of {len(rows)}")
        lines += [f"{c:<{pad}}  {v}" for c, v in zip(columns, row, strict=True) if v != ""]
    return lines
