"""Outpost's KQL rewrites around duckdb-kql give Kusto's answers (and keep generated SQL small).

Each rewrite's own table of cases is tests/telemetry/kql_layer/test_rewrites.py; these run through the collector.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from telemetry.collector import Collector


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = Collector(tmp_path_factory.mktemp("rewrites"))
    yield c
    c.close()


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("strcat('x', case(1 > 2, strcat('a', 1), 'b'), '!')", "xb!"),
        ("strcat('x', case(1 < 2, strcat('a', 1), 'b'), '!')", "xa1!"),
        ("strcat(iff(true, strcat(1.5, true), 'n'), ',', 'z')", "1.5True,z"),
        ("strcat('t=', strcat(toint(90s / 1m), ' minutes'))", "t=1 minutes"),
    ],
)
def test_rewritten_strcat_answers_as_before(collector: Collector, expr: str, want: str) -> None:
    assert collector.query(f"print s = {expr}").rows == [[want]]


def test_time_ago_column_binds_quickly(collector: Collector) -> None:
    # The workbooks' "time ago" column: ~700 KB of SQL and ~10 s to bind before the rewrite.
    q = (
        "print TimeFromNow = 90m | extend TimeAgo = strcat(case(TimeFromNow < 2m, strcat(toint(TimeFromNow / 1s),"
        " ' seconds'), TimeFromNow < 2h, strcat(toint(TimeFromNow / 1m), ' minutes'), TimeFromNow < 2d,"
        " strcat(toint(TimeFromNow / 1h), ' hours'), strcat(toint(TimeFromNow / 1d), ' days')), ' ago')"
        " | project Time = strcat('> ', TimeAgo)"
    )
    started = time.monotonic()
    assert collector.query(q).rows == [["> 90 minutes ago"]]
    assert time.monotonic() - started < 5
