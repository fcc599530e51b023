"""The kusto-docs conformance corpus (../shared/conformance/kusto-docs): 343 examples from
Microsoft's Kusto documentation, each with the table the documentation prints.

Shared by tests/telemetry/kql_layer/test_docs_corpus.py (CI floor) and bench/kql_docs.py (the report).
Both engines run in the same process, judged by the corpus's own `compare.py`, unchanged:

- **Outpost**: the collector's query path (`Collector.query`), whose answer is read the way the
  Kusto SDK (azure-kusto-data) reads a v1 answer: cells of `datetime` and `timespan` columns
  become Python datetimes and timedeltas, `dynamic` cells stay parsed JSON;
- **duckdb-kql alone**: `duckdb_kql.kql()` on a fresh connection, its Python values as DuckDB
  returns them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import duckdb_kql

from telemetry import kql
from telemetry.collector import Collector

CORPUS = Path(__file__).resolve().parents[3] / "../shared/conformance/kusto-docs"
CASE_TIMEOUT_S = 5.0
GEO = re.compile(r"\bgeo_\w+\s*\(")


def available() -> bool:
    return (CORPUS / "cases.jsonl").is_file() and (CORPUS / "compare.py").is_file()


def comparator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kusto_docs_compare", CORPUS / "compare.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases() -> list[dict[str, Any]]:
    with open(CORPUS / "cases.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def is_geo(case: dict[str, Any]) -> bool:
    return bool(GEO.search(case["query"]))


_KINDS = {"datetime": "timestamp", "timespan": "interval", "dynamic": "json", "bool": "bool", "guid": "guid"}
_KINDS |= {"long": "number", "int": "number", "real": "number", "decimal": "number", "string": "string"}


def _sdk_value(value: Any, ktype: str) -> Any:
    """A v1 JSON cell as azure-kusto-data hands it to Python."""
    if value is None:
        return None
    if ktype == "datetime" and isinstance(value, str):
        m = re.fullmatch(r"([^.Z]+)(?:\.(\d+))?Z?", value)
        if m:
            return datetime.fromisoformat(m.group(1)) + timedelta(
                microseconds=int((m.group(2) or "")[:6].ljust(6, "0"))
            )
    if ktype == "real" and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    if ktype == "timespan" and isinstance(value, str):
        m = re.fullmatch(r"(-)?(?:(\d+)\.)?(\d+):(\d+):(\d+)(?:\.(\d+))?", value)
        if m:
            sign, d, h, mi, s, frac = m.groups()
            ticks = ((((int(d or 0) * 24 + int(h)) * 60 + int(mi)) * 60 + int(s)) * 10_000_000) + int(
                (frac or "")[:7].ljust(7, "0")
            )
            td = timedelta(microseconds=ticks // 10)
            return -td if sign else td
    return value


def run_outpost(collector: Collector, query: str) -> tuple[list[str], list[list[Any]], list[str]]:
    result = collector.query(query, timeout_s=CASE_TIMEOUT_S)
    names = [n for n, _ in result.columns]
    types = [t for _, t in result.columns]
    rows = [[_sdk_value(v, types[i]) for i, v in enumerate(r)] for r in result.rows]
    return names, rows, [_KINDS.get(t, "string") for t in types]


class _Database:
    """One in-memory DuckDB database for the duckdb-kql cases, each case on a connection of its own.

    A new database per case cost ~0.1 s (a third of the library's time over the corpus); a cursor is
    a new connection to the same database (its TEMP objects and session settings die with it). A case
    that leaves anything lasting (a table, view, macro, sequence, type or global setting) gets the
    database replaced, so every case still starts in a pristine one.
    """

    _STATE = (
        "SELECT 't', database_name, schema_name, table_name FROM duckdb_tables() WHERE NOT temporary"
        " UNION ALL SELECT 'v', database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal"
        " AND NOT temporary"
        " UNION ALL SELECT 'f', database_name, schema_name, function_name FROM duckdb_functions() WHERE NOT internal"
        " UNION ALL SELECT 's', database_name, schema_name, sequence_name FROM duckdb_sequences()"
        " UNION ALL SELECT 'y', database_name, schema_name, type_name FROM duckdb_types() WHERE NOT internal"
        " UNION ALL SELECT 'o', name, value, '' FROM duckdb_settings() ORDER BY ALL"
    )

    def __init__(self) -> None:
        self._db: duckdb.DuckDBPyConnection | None = None
        self._pristine: list[tuple[Any, ...]] = []

    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._db is None:
            self._db = duckdb_kql.connect()
            self._pristine = self._state()
        con = self._db.cursor()
        con.execute("SET TimeZone='UTC'")  # as duckdb_kql.connect() sets it
        return con

    def _state(self) -> list[tuple[Any, ...]]:
        assert self._db is not None
        with self._db.cursor() as con:
            return con.execute(self._STATE).fetchall()

    def after_case(self) -> None:
        if self._db is not None and self._state() != self._pristine:
            self._db.close()
            self._db = None


_LIBRARY = _Database()


def run_library(query: str) -> tuple[list[str], list[list[Any]], list[str] | None]:
    """duckdb-kql has no deadline of its own: its connection is interrupted from SIGALRM (main thread)."""
    con = _LIBRARY.connection()
    fired = False

    def interrupt(*_: Any) -> None:
        nonlocal fired
        fired = True
        con.interrupt()

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        cur = duckdb_kql.kql(con, query)
        names = [d[0] for d in cur.description or []]
        rows = [list(r) for r in cur.fetchall()]
        kinds = ["json" if str(d[1]).upper() == "JSON" else None for d in cur.description or []]
        return names, rows, kinds  # type: ignore[return-value]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        con.close()
        _LIBRARY.after_case()


@dataclass
class Score:
    passed: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)

    def rate(self, ids: set[str]) -> int:
        return len(self.passed & ids)


def judge(
    all_cases: list[dict[str, Any]],
    run: Callable[[str], tuple[list[str], list[list[Any]], list[str] | None]],
    compare: ModuleType,
    progress: Callable[[int], None] | None = None,
) -> Score:
    score = Score()
    for i, case in enumerate(all_cases):
        try:
            names, rows, kinds = run(case["query"])
            ok, detail = compare.compare_case(case, names, rows, kinds)
        except (kql.QueryError, duckdb_kql.KqlError, duckdb.Error) as exc:
            ok, detail = False, f"{type(exc).__name__}: {str(exc)[:300]}"
        except Exception as exc:  # noqa: BLE001 - a crash is a failed case, and is reported as one
            ok, detail = False, f"crash {type(exc).__name__}: {str(exc)[:300]}"
        if ok:
            score.passed.add(case["id"])
        else:
            score.failures[case["id"]] = detail
        if progress:
            progress(i + 1)
    return score
