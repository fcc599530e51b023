"""The 38 published Azure Monitor queries (../shared/conformance/kql) run unchanged against Outpost.

Tables are filled through the collector's own ingest path (`fleet.fill`): three
workers, one stale, and jobs ending in each final status. Values are checked
where this fleet makes them knowable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telemetry import kql
from telemetry.collector import Collector
from tests.telemetry import conformance, fleet

FILES = conformance.require_queries()
load = conformance.load


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = Collector(tmp_path_factory.mktemp("conformance"))
    fleet.fill(c)
    yield c
    c.close()


def col(result: kql.QueryResult, name: str) -> list:
    names = [n for n, _ in result.columns]
    i = names.index(name)
    return [r[i] for r in result.rows]


def records(result: kql.QueryResult) -> list[dict]:
    names = [n for n, _ in result.columns]
    return [dict(zip(names, r, strict=True)) for r in result.rows]


Check = Callable[[kql.QueryResult], None]


def _01(r: kql.QueryResult) -> None:
    assert col(r, "Computer") == ["w3"]
    now = datetime.now(UTC)
    assert col(r, "LastHeartbeat_Hours")[0] in {
        fleet.hours_since_w3_stopped(now - timedelta(seconds=60)),
        fleet.hours_since_w3_stopped(now),
    }


def _02(r: kql.QueryResult) -> None:
    assert col(r, "PercentAvailable") == ["3.00"]
    assert col(r, "Share") == ["share1"]


def _05(r: kql.QueryResult) -> None:
    by_type: dict[str, int] = {}
    for rec in records(r):
        by_type[rec["ResultType"]] = by_type.get(rec["ResultType"], 0) + rec["AggregatedValue"]
    # != is case-sensitive: "Started" rows stay in
    assert by_type == {
        "New": 6,
        "Activating": 6,
        "Started": 6,
        "Completed": 3,
        "Failed": 1,
        "Stopped": 1,
        "Suspended": 1,
    }


def _06(r: kql.QueryResult) -> None:
    assert sorted(map(tuple, r.rows)) == [("Broken", 1), ("Flaky", 1)]


def _07(r: kql.QueryResult) -> None:
    assert sum(col(r, "AggregatedValue")) == 1


def _08(r: kql.QueryResult) -> None:
    assert sorted(col(r, "Computer")) == ["w1", "w2", "w3"]


def _09(r: kql.QueryResult) -> None:
    assert col(r, "ResultDescription") == ["boom: disk full", "giving up"] or sorted(col(r, "ResultDescription")) == [
        "boom: disk full",
        "giving up",
    ]
    assert set(col(r, "JobId_g")) == {"job-broken"}


def _11(r: kql.QueryResult) -> None:
    recs = {rec["JobId_g"]: rec for rec in records(r)}
    assert set(recs) == {"job-hello", "job-broken", "job-stop", "job-flaky", "job-avd", "job-sched"}
    assert recs["job-broken"]["Status"] == "Failed" and recs["job-broken"]["HasErrors"] is True
    assert recs["job-broken"]["TotalErrors"] == 1
    assert recs["job-hello"]["Status"] == "Completed" and recs["job-hello"]["DurationSec"] == 30
    assert recs["job-hello"]["HasErrors"] is False


def _12(r: kql.QueryResult) -> None:
    # No "Azure Monitor Agent" rows: both states count zero, Unhealthy ranks last.
    assert [(x["State"], x["Count"]) for x in records(r)] == [("Healthy", 0), ("Unhealthy", 0)]
    assert [n for n, _ in r.columns][:2] == ["State", "Count"]


def _15(r: kql.QueryResult) -> None:
    assert r.rows == [[1]]


def _16(r: kql.QueryResult) -> None:
    recs = {x["_ComputerName_"]: x for x in records(r)}
    assert set(recs) == {"w1", "w2"}  # w3 has no heartbeat in the last day
    assert recs["w1"]["State"] == "Healthy"
    assert isinstance(recs["w1"]["Heartbeat Trend"], list) and len(recs["w1"]["Heartbeat Trend"]) == 30
    assert recs["w1"]["Details"]["Computer"] == "w1"


def _17(r: kql.QueryResult) -> None:
    assert [(x["State"], x["Count"]) for x in records(r)] == [("Healthy", 2), ("Unhealthy", 0)]


def _18(r: kql.QueryResult) -> None:
    (rec,) = records(r)
    assert rec["Computer"] == "w1"
    assert len(rec["Trend"]) == 96 and len(rec["TimeGenerated"]) == 96  # 1 day in 15 min steps
    assert sum(rec["Trend"]) in (288, 289)  # one heartbeat per 5 minutes


def _20(r: kql.QueryResult) -> None:
    recs = {x["Computer"]: x for x in records(r)}
    assert set(recs) == {"w1", "w2"}
    assert recs["w1"]["Agent state"] == "Healthy" and recs["w1"]["OS"] == "Linux (Ubuntu)"
    assert len(recs["w1"]["Heartbeats trend"]) == 24 and recs["w1"]["Heartbeats trend"][5] == 12


def _21(r: kql.QueryResult) -> None:
    assert r.rows == [["#### No inactive agents found"]]


def _23(r: kql.QueryResult) -> None:
    assert sorted(zip(col(r, "RunbookName_s"), col(r, "ResultType"), strict=True)) == [
        ("Broken", "Failed"),
        ("Flaky", "Suspended"),
        ("Stopper", "Stopped"),
    ]


def _24(r: kql.QueryResult) -> None:
    assert sorted(col(r, "ResultDescription")) == ["boom: disk full", "giving up"]


def _26(r: kql.QueryResult) -> None:
    assert len(r.rows) == 3


def _29(r: kql.QueryResult) -> None:
    (rec,) = records(r)
    assert rec["MMACount"] == 3 and rec["AMACount"] == 0 and rec["migstatus"] == "Not Started"


def _34(r: kql.QueryResult) -> None:
    states = dict(zip(col(r, "Computer"), col(r, "State"), strict=True))
    assert states == {"w2": "COMMUNICATING", "w3": "NOT COMMUNICATING"}


def _36(r: kql.QueryResult) -> None:
    assert sorted(col(r, "Computer")) == ["w1", "w2", "w3"]
    assert set(col(r, "WorkerGroup_s")) == {"linux", "edge"}


def _37(r: kql.QueryResult) -> None:
    assert col(r, "Computer") == ["w3"]


def _38(r: kql.QueryResult) -> None:
    assert len(r.rows) == 1 and r.rows[0][0] in ("Spike detected", "No spike")


def _rows(n: int) -> Check:
    def check(r: kql.QueryResult) -> None:
        assert len(r.rows) == n, r.rows

    return check


CHECKS: dict[str, Check] = {
    "01": _01,
    "02": _02,
    "03": _rows(1),
    "05": _05,
    "06": _06,
    "07": _07,
    "08": _08,
    "09": _09,
    "10": _rows(0),
    "11": _11,
    "12": _12,
    "13": _rows(0),
    "14": _rows(0),
    "15": _15,
    "16": _16,
    "17": _17,
    "18": _18,
    "19": lambda r: r.rows == [[0]] or pytest.fail(str(r.rows)),
    "20": _20,
    "21": _21,
    "22": _rows(0),
    "23": _23,
    "24": _24,
    "26": _26,
    "27": _rows(3),
    "28": lambda r: r.rows == [[0, 0, True]] or pytest.fail(str(r.rows)),
    "29": _29,
    "30": _rows(0),
    "31": _rows(0),
    "32": _rows(0),
    "33": _rows(0),
    "34": _34,
    "35": _rows(3),
    "36": _36,
    "37": _37,
    "38": _38,
}


def test_all_38_present() -> None:
    assert len(FILES) == 38


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_conformance_query(collector: Collector, path: Path) -> None:
    query = load(path.name)
    stem = path.stem
    if stem == "04":
        # The source's typo (`by JobId_g.`) is a syntax error, reported with its position.
        with pytest.raises(kql.QuerySyntaxError) as err:
            collector.query(query)
        assert err.value.line == 5 and err.value.column is not None
        assert "line 5" in err.value.message
        return
    if stem == "25":
        # Update Management data is not something Outpost collects: a clear unknown-table error.
        with pytest.raises(kql.UnknownTableError) as err:
            collector.query(query)
        assert "'Update'" in err.value.message
        return
    result = collector.query(query)
    assert result.columns, "a result always has columns"
    for row in result.rows:
        assert len(row) == len(result.columns)
    CHECKS[stem](result)
