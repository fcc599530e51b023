"""`render` is a visualization hint: accepted, dropped from the query, returned beside the table."""

from __future__ import annotations

import duckdb
import pytest

from telemetry import kql
from tests.telemetry.kql_layer.rewriting import NOW, T


def run(query: str) -> kql.QueryResult:
    con = duckdb.connect()
    try:
        return kql.run_query(con.cursor(), T + query, tables={}, now=NOW)
    finally:
        con.close()


def test_render_is_returned_as_the_visualization_and_the_rows_are_unchanged() -> None:
    result = run('T | summarize n = count() by Name | render columnchart with (title="Per name", ycolumns=n)')
    assert result.visualization == {"Visualization": "columnchart", "Title": "Per name", "YColumns": ["n"]}
    assert sorted(result.rows) == [["a", 2], ["b", 1]]


def test_a_query_without_render_has_no_visualization() -> None:
    assert run("T | count").visualization is None


def test_render_must_be_last() -> None:
    with pytest.raises(kql.QueryUnsupportedError, match="render must be the last operator"):
        run("T | render table | take 1")
