"""What one KQL query may cost: a deadline over every phase, and limits on what it may build.

A 51-character query used to take 7 s and six levels of `tostring` 8 GB, because
duckdb-kql renders some functions by repeating their operand (about 8× for
`tostring`/`strcat`, 33× for `gettype`). The defences, cheapest first:

- the query's shape: bracket nesting and numeric literal length are checked on
  the text, with the position, before the (recursive) parser sees it;
- probes: every call nested 3 or more deep is translated on its own, innermost
  first, so a call whose SQL would pass `MAX_SQL_CHARS` is refused as
  `query too complex (expression nesting N)` one level after it started to grow,
  never after building megabytes; the whole translation is capped the same way;
- a `range` too long to build is refused inside DuckDB, from its evaluated bounds
  (a guard in the translated SQL), so `1e9`, `toint(...)` or arithmetic can't slip by;
- a scalar `let` that reads an earlier one is probed the same way (lets are
  substituted at each use, so `let b = tostring(a)` chains grow like nesting);
- a watchdog (one thread for all queries): at a query's deadline it interrupts
  DuckDB and stops the Python phases (parse, rewrite, translate) with an
  asynchronous exception; while Python is translating, a process RSS growth beyond
  `MAX_TRANSLATION_GROWTH` stops it too (user functions can expand without any
  deep text nesting).
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from telemetry.kql import lexical as kt
from telemetry.kql.errors import QuerySyntaxError, QueryTooComplexError

MAX_NESTING = 32  # brackets; the ANTLR parser recurses ~16 frames a level and fails near 60
MAX_NUMBER_CHARS = 50  # a long is 19 digits; a real rarely needs more than 20
MAX_SQL_CHARS = 300_000  # the largest published workbook query translates to ~140 KB
PROBE_MIN_HEIGHT = 3
MAX_PROBES = 200
MAX_RANGE_ROWS = 10_000_000
MAX_TRANSLATION_GROWTH = 256 * 2**20
MAX_RESULT_BYTES = 32 * 2**20  # about the JSON size; Kusto truncates at 64 MB
WATCH_INTERVAL_S = 0.02

RANGE_REFUSED = f"range of more than {MAX_RANGE_ROWS:,} rows is refused (it would be built in memory)"

# Words followed by `(` that are not scalar function calls (probing them is wasted work).
_NOT_CALLS = frozenset(
    {"and", "or", "in", "by", "on", "where", "join", "union", "lookup", "materialize", "toscalar", "datatable"}
    | {"externaldata", "range", "print", "let", "has_any", "has_all", "between", "with", "kind", "project"}
)


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of *pos*."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def nesting(masked: str) -> tuple[int, int]:
    """(deepest bracket nesting, position where it is first reached)."""
    depth = best = 0
    where = 0
    for m in re.finditer(r"[()\[\]{}]", masked):
        if m.group(0) in "([{":
            depth += 1
            if depth > best:
                best, where = depth, m.start()
        else:
            depth = max(0, depth - 1)
    return best, where


_NUMBER = re.compile(r"(?<![\w.$])\d[\d.]*(?:[eE][+-]?\d+)?")


def longest_number(masked: str) -> tuple[int, int]:
    """(length, position) of the longest numeric literal, (0, 0) when there is none."""
    best = (0, 0)
    for m in _NUMBER.finditer(masked):
        if len(m.group(0)) > best[0]:
            best = (len(m.group(0)), m.start())
    return best


def too_complex(query: str, depth: int, pos: int, why: str) -> QueryTooComplexError:
    line, col = line_col(query, pos)
    return QueryTooComplexError(
        f"query too complex (expression nesting {depth}) at line {line}, column {col}: {why}", line=line, column=col
    )


def check_shape(query: str) -> None:
    """Refuse, with the position, what would crash the parser: deep brackets, absurdly long numbers."""
    masked = kt.mask(query)
    depth, pos = nesting(masked)
    if depth > MAX_NESTING:
        raise too_complex(query, depth, pos, f"at most {MAX_NESTING} levels of brackets are accepted")
    length, pos = longest_number(masked)
    if length > MAX_NUMBER_CHARS:
        line, col = line_col(query, pos)
        raise QuerySyntaxError(
            f"number too long at line {line}, column {col} ({length} characters; at most {MAX_NUMBER_CHARS})",
            line=line,
            column=col,
        )


def call_heights(masked: str) -> list[tuple[int, int, int]]:
    """(height, name start, closing paren) of every call; a call with no call inside has height 1."""
    found: list[tuple[int, int, int]] = []
    stack: list[list[Any]] = []  # [is_call, name_start, tallest child]
    for m in re.finditer(r"[()\[\]{}]", masked):
        ch, i = m.group(0), m.start()
        if ch in "([{":
            name = re.search(r"([A-Za-z_]\w*)\s*$", masked[max(0, i - 64) : i]) if ch == "(" else None
            is_call = bool(name) and name.group(1) not in _NOT_CALLS
            start = i - (len(name.group(0)) if name else 0)
            stack.append([is_call, start, 0])
        elif stack:
            is_call, start, child = stack.pop()
            height = child + (1 if is_call else 0)
            if is_call:
                found.append((height, start, i))
            if stack:
                stack[-1][2] = max(stack[-1][2], height)
    return found


def probe_calls(query: str, masked: str, sql_length: Callable[[str], int | None], check: Callable[[], None]) -> None:
    """Translate each deeply nested call alone, innermost first; refuse the first whose SQL passes the cap."""
    calls = sorted(c for c in call_heights(masked) if c[0] >= PROBE_MIN_HEIGHT)
    seen: set[str] = set()
    for height, start, close in calls[:MAX_PROBES]:
        text = query[start : close + 1]
        if text in seen:
            continue
        seen.add(text)
        check()
        size = sql_length(f"print __outpost_probe = {text}")
        if size is not None and size > MAX_SQL_CHARS:
            raise too_complex(query, height, start, _sql_why(size))


_LET = re.compile(r"\s*let\s+([A-Za-z_]\w*)\s*=\s*")


def probe_lets(query: str, masked: str, sql_length: Callable[[str], int | None], check: Callable[[], None]) -> None:
    """A scalar `let` is substituted at each use, so `let b = tostring(a)` chains grow like nesting:
    translate each let that reads an earlier one, with the lets before it, and refuse the first too big."""
    names: list[str] = []
    for start, end in kt.split_top(masked, 0, len(masked), ";"):
        m = _LET.match(masked, start, end)
        if not m or masked[m.end() : end].lstrip().startswith("("):  # not a let, or a function
            continue
        body = masked[m.end() : end]
        if names and re.search(r"(?<![\w.])(" + "|".join(map(re.escape, names)) + r")(?![\w(])", body):
            check()
            size = sql_length(f"{query[:end]};\nprint __outpost_probe = {m.group(1)}")
            if size is not None and size > MAX_SQL_CHARS:
                line, col = line_col(query, m.start(1))
                raise QueryTooComplexError(
                    f"query too complex (expression nesting {len(names) + 1}) at line {line}, column {col}"
                    f" (let {m.group(1)}): " + _sql_why(size),
                    line=line,
                    column=col,
                )
        names.append(m.group(1))
        if len(names) > MAX_PROBES:
            return


def _sql_why(size: int) -> str:
    return (
        f"it translates to {size // 1000:,} KB of SQL, more than the {MAX_SQL_CHARS // 1000} KB limit;"
        " flatten nested calls (tostring, strcat, gettype, ...) or compute them in separate extend steps"
    )


def check_sql_size(sql: str, query: str) -> None:
    if len(sql) > MAX_SQL_CHARS:
        depth, pos = nesting(kt.mask(query))
        raise too_complex(query, depth, pos, _sql_why(len(sql)))


# -- range: bounded inside DuckDB, from the evaluated bounds ---------------------------

_SQL_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def _mask_sql(sql: str) -> str:
    return _SQL_QUOTED.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], sql)


def guard_ranges(sql: str) -> str:
    """Make every 3-argument `generate_series(a, b, step)` fail before building more than MAX_RANGE_ROWS.

    duckdb-kql renders `range` as `UNNEST(generate_series(...))`, one in-memory list,
    and DuckDB folds constant arguments at plan time, beyond the reach of an interrupt.
    The check goes *into the stop argument*, so it is evaluated (and fails) before the
    list is built, whatever expression the bounds were written as.
    """
    if "generate_series(" not in sql:
        return sql
    masked = _mask_sql(sql)
    edits: list[tuple[int, int, str]] = []
    for m in re.finditer(r"\bgenerate_series\(", masked):
        open_pos = m.end() - 1
        close = kt.match_paren(masked, open_pos)
        spans = kt.split_top(masked, open_pos + 1, close)
        if len(spans) != 3:
            continue
        a, b, c = (sql[x:y].strip() for x, y in spans)
        n = MAX_RANGE_ROWS
        error = f"error('{RANGE_REFUSED}')"
        if all(t.startswith("CAST(") and t.endswith(" AS BIGINT)") for t in (a, b, c)):
            guard = (
                f"CASE WHEN ({c}) > 0 AND ({b}) > ({a}) AND (({b})::HUGEINT - ({a})) // ({c}) >= {n} THEN {error}"
                f" WHEN ({c}) < 0 AND ({a}) > ({b}) AND (({a})::HUGEINT - ({b})) // (-({c})::HUGEINT) >= {n}"
                f" THEN {error} ELSE {b} END"
            )
        else:  # datetime or timespan bounds: epoch() reads both as seconds
            guard = (
                f"CASE WHEN epoch({c}) <> 0 AND (epoch({b}) - epoch({a})) / epoch({c}) >= {n} THEN {error} ELSE {b} END"
            )
        x, y = spans[1]
        edits.append((x, y, f" {guard}"))
    for x, y, text in reversed(edits):
        sql = sql[:x] + text + sql[y:]
    return sql


# -- the watchdog ---------------------------------------------------------------------------


class DeadlinePassed(BaseException):  # noqa: N818 - raised asynchronously; BaseException so no `except Exception` eats it
    """Delivered into the query thread when its deadline passes during a Python phase."""


class TranslationTooLarge(BaseException):  # noqa: N818
    """Delivered into the query thread when translating grows the process beyond MAX_TRANSLATION_GROWTH."""


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    # With None, ctypes passes NULL: that clears an exception not yet delivered.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _Watchdog:
    """One thread for every running query (a thread per query fails first when memory is short)."""

    def __init__(self) -> None:
        self._budgets: set[Budget] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, budget: Budget) -> None:
        with self._cond:
            self._budgets.add(budget)
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="kql-budget", daemon=True)
                try:
                    thread.start()
                    self._thread = thread
                except RuntimeError:  # no thread to be had: queries still check the deadline between phases
                    self._thread = None
            self._cond.notify()

    def remove(self, budget: Budget) -> None:
        with self._cond:
            self._budgets.discard(budget)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._budgets:
                    self._cond.wait()
                budgets = list(self._budgets)
            for budget in budgets:
                budget.tick()
            # Drop the references while sleeping: a daemon thread's frame that still holds the last
            # query's cursor at exit keeps DuckDB objects alive (nanobind prints "leaked" reports).
            budgets = budget = None  # type: ignore[assignment]
            time.sleep(WATCH_INTERVAL_S)


_WATCHDOG = _Watchdog()


class Budget:
    """One query's deadline, enforced on the thread that runs it and on its DuckDB cursor."""

    def __init__(self, timeout_s: float, *, deadline: float | None = None) -> None:
        self.limit_s = timeout_s
        self.deadline = deadline if deadline is not None else time.monotonic() + timeout_s
        self.translating = False  # Python is parsing / rewriting / translating (memory growth is watched)
        self._cursor: Any = None
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._armed = False
        self._fired: type[BaseException] | None = None
        self._rss0: int | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def timeout_message(self) -> str:
        return f"query timed out: it ran longer than its {self.limit_s:g} s limit"

    def start(self, cursor: Any) -> None:
        self._cursor = cursor
        self._armed = True
        _WATCHDOG.add(self)

    def begin_translation(self) -> None:
        """Python starts translating: its growth is measured from here until `end_translation`."""
        self._rss0 = _rss()
        self.translating = True

    def end_translation(self) -> None:
        self.translating = False

    def tick(self) -> None:
        """Called by the watchdog every WATCH_INTERVAL_S."""
        if time.monotonic() >= self.deadline:
            if self._cursor is not None:
                self._cursor.interrupt()
            self._fire(DeadlinePassed)
            return
        if self.translating and self._rss0 is not None:
            now = _rss()
            if now is not None and now - self._rss0 > MAX_TRANSLATION_GROWTH:
                self._fire(TranslationTooLarge)

    def _fire(self, exc: type[BaseException]) -> None:
        with self._lock:
            if self._armed and self._fired is None:
                self._fired = exc
                _async_raise(self._thread_id, exc)

    def stop(self) -> None:
        _WATCHDOG.remove(self)
        with self._lock:
            self._armed = False
            self._cursor = None
            if self._fired is not None:
                _async_raise(self._thread_id, None)
