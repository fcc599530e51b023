"""Errors a user can act on: what is wrong, where (line and column of their own text), what to do."""

from __future__ import annotations

import pytest

from telemetry import kql
from tests.telemetry.kql_layer.rewriting import T, rows

LINE = T.count("\n") + 1  # the cases' own query is on the line after the shared `let T = ...;`
HAS = "(table T has: Name, N, Ts, Ok)"


def error(query: str) -> kql.QueryError:
    with pytest.raises(kql.QueryError) as info:
        rows(T + query)
    return info.value


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("T | where Foo == 1", 11),
        ("T | project Name, Foo", 19),  # DuckDB: "referenced that exists in the SELECT clause - but ..."
        ("T | summarize count() by Foo", 26),  # DuckDB: "Alias with name ... exists"
        ("T | project-away Foo", 18),  # DuckDB: "in EXCLUDE list not found"
        ("T | join (T) on Foo", 17),
    ],
)
def test_unknown_column_names_the_position_and_the_table_columns(query: str, column: int) -> None:
    e = error(query)
    assert isinstance(e, kql.UnknownColumnError)
    assert e.message == f"unknown column 'Foo' at line {LINE}, column {column} {HAS}"
    assert (e.line, e.column) == (LINE, column)
    assert e.to_dict()["error"] == "unknown_column"


def test_unknown_column_after_other_operators_lists_what_reaches_it() -> None:
    e = error("T | summarize x = max(N) by Name\n| extend z = q")
    assert isinstance(e, kql.UnknownColumnError)
    assert e.message == f"unknown column 'q' at line {LINE + 1}, column 14 (its input has: Name, x)"


def test_unsupported_construct_names_it_where_it_is_and_what_to_use() -> None:
    e = error("T | scan with (step s: N > 1;)")
    assert isinstance(e, kql.QueryUnsupportedError)
    assert e.message == (
        f"unsupported: ScanOperator at line {LINE}, column 5 (use serialize with prev()/next() or a join)"
    )
    assert (e.line, e.column) == (LINE, 5)


@pytest.mark.parametrize(
    ("query", "explained"),
    [
        ("T | extend x = N + Name", "a function is called with arguments of the wrong type: +(BIGINT, VARCHAR)"),
        ("T | where Name > 5", "the query's types do not fit together (DuckDB: Cannot compare values of type"),
    ],
)
def test_duckdb_binder_text_is_explained(query: str, explained: str) -> None:
    e = error(query)
    assert e.message.startswith(explained)
    assert "Binder Error" not in e.message


def test_rewrite_budget_refuses_a_query_needing_too_many_steps() -> None:
    # Each `where *` is one rewrite that re-parses the whole (growing) query: 70 of them are refused
    # after a bounded amount of work, not left to run into the deadline.
    e = error("T" + " | where * has 'a'" * 70)
    assert isinstance(e, kql.QueryTooComplexError)
    assert e.message.startswith("query too complex to rewrite: ")
    assert "(the budget ran out at star, after " in e.message


def test_columns_differing_only_in_case_are_refused_with_the_reason() -> None:
    e = error("T | extend n = N")
    assert "columns 'N' and 'n' differ only in case" in e.message
    assert "Rename one with project-rename" in e.message


def test_unknown_table_at_its_position() -> None:
    with pytest.raises(kql.UnknownTableError) as info:
        rows("Heartbeatz\n| take 1", tables={"Heartbeat": ["TimeGenerated"]})
    assert info.value.message == "unknown table 'Heartbeatz' at line 1, column 1 (Outpost has: Heartbeat)"
