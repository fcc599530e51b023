"""The query fuzz set (issue 12): queries that used to hang, crash or exhaust a server.

Shared by tests/telemetry/test_query_budget.py (CI) and bench/query_budget.py (measured
health latency while the worst of them run). Each is (id, KQL); none may be answered
with a 5xx or later than the deadline plus 2 s.
"""

from __future__ import annotations


def _nest(fn: str, n: int, inner: str = "1") -> str:
    return f"{fn}(" * n + inner + ")" * n


NINES = "9" * 400

CASES: list[tuple[str, str]] = [
    # nesting: duckdb-kql repeats the operand ~8x (tostring, strcat, hashes) or 33x (gettype)
    *[(f"tostring-{n}", f"print x = {_nest('tostring', n)}") for n in range(1, 8)],
    *[(f"gettype-{n}", f"print x = {_nest('gettype', n)}") for n in (2, 3, 4, 5)],
    ("hash-5", "print x = " + _nest("hash_sha256", 5, "'a'")),
    ("strcat-deep", "print x = " + "strcat('a', " * 12 + "'b'" + ")" * 12),
    ("mixed-nesting", "print x = tostring(gettype(tostring(gettype(tostring(1)))))"),
    ("let-chain", "let a0 = 1; " + " ".join(f"let a{i} = tostring(a{i - 1});" for i in range(1, 8)) + " print x = a7"),
    (
        "function-doubling",
        "let f0 = (s:string) { strcat(s, s) }; "
        + " ".join(f"let f{i} = (s:string) {{ f{i - 1}(f{i - 1}(s)) }};" for i in range(1, 5))
        + ' print x = f4("a")',
    ),
    ("extend-chain", "print a0 = 1 " + " ".join(f"| extend a{i} = tostring(a{i - 1})" for i in range(1, 40))),
    # joins
    (
        "self-join-4",
        "Heartbeat | join kind=inner Heartbeat on Computer | join kind=inner Heartbeat on Computer"
        " | join kind=inner Heartbeat on Computer",
    ),
    (
        "self-join-4-count",
        "Heartbeat | join kind=inner Heartbeat on Computer | join kind=inner Heartbeat on Computer"
        " | join kind=inner Heartbeat on Computer | summarize count()",
    ),
    (
        "self-join-4-sorted",
        "Heartbeat | join kind=inner Heartbeat on Computer | join kind=inner Heartbeat on Computer"
        " | join kind=inner Heartbeat on Computer | order by TimeGenerated desc",
    ),
    (
        "cross-join-ranges",
        "range x from 1 to 100000 step 1 | extend k = 1 | join kind=inner (range y from 1 to 100000 step 1"
        " | extend k = 1) on k | summarize count()",
    ),
    ("make-set-everything", "Heartbeat | join kind=inner Heartbeat on Computer | summarize make_set(HeartbeatId1)"),
    # ranges: the guard must see the evaluated bounds, not the text
    ("range-1e9", "range x from 1 to 1e9 step 1 | count"),
    ("range-toint", "range x from 1 to toint(1e9) step 1 | count"),
    ("range-arith", "range x from 1 to 1000 * 1000 * 1000 step 1 | count"),
    ("range-let", "let n = 2000000000; range x from 1 to n step 1 | count"),
    ("range-toscalar", "range x from 1 to toscalar(print v = 1e10) step 1 | count"),
    ("range-negative", "range x from 1e9 to 1 step -1 | count"),
    ("range-step-0", "range x from 1 to 10 step 0 | count"),
    ("range-long-max", "range x from 0 to 9223372036854775807 step 1 | count"),
    ("range-datetime", "range t from datetime(2000-01-01) to datetime(2030-01-01) step 1s | count"),
    ("range-timespan", "range t from 0s to 3650d step 1ms | count"),
    ("range-mv-expand", "range x from 1 to 5000000 step 1 | summarize l = make_list(x) | mv-expand l | count"),
    ("range-ok", "range x from 1 to 1000 step 1 | count"),
    # huge literals
    ("number-400", f"print x = {NINES}"),
    ("timespan-400", f"print x = {NINES}s"),
    ("real-400", f"print x = 1.{NINES}"),
    ("exponent-400", f"print x = 1e{NINES}"),
    ("timespan-30", "print x = " + "9" * 30 + "d"),
    ("string-90k", "print x = strlen('" + "a" * 90_000 + "')"),
    ("strrep", "print x = strlen(strrep('abc', 100000000))"),
    ("datatable-wide", "datatable(a:int)[" + ", ".join(str(i) for i in range(5000)) + "] | count"),
    # deep parentheses and long operator chains
    ("parens-60", "print x = " + "(" * 60 + "1" + ")" * 60),
    ("parens-30", "print x = " + "(" * 30 + "1" + ")" * 30),
    ("brackets-200", "print x = dynamic(" + "[" * 200 + "]" * 200 + ")"),
    ("not-50", "print x = " + "not(" * 50 + "true" + ")" * 50),
    ("plus-3000", "print x = " + " + ".join(["1"] * 3000)),
    ("minus-500", "print x = " + "-" * 500 + "1"),
    ("and-2000", "print x = " + " and ".join(["true"] * 2000)),
    ("pipes-2000", "print x = 1" + " | take 1" * 2000),
    ("unbalanced", "print x = " + "(" * 500),
    # odd characters and shapes
    ("nul", "print x = 1\x00"),
    ("rtl", "print x = '\u202eevil'"),
    ("emoji-name", "print ['😀'] = 1"),
    ("control-chars", "print x = '\x01\x02\x1b[31m'"),
    ("unterminated", "print x = 'abc"),
    ("only-pipes", "| | | |"),
    ("semicolons", ";" * 1000),
    ("backticks", "print x = ```" + "a" * 1000),
    ("control-command", ".drop table Heartbeat"),
    ("unknown-table", "Syslog | take 1"),
]

# The worst of the set: what the health-latency check and the benchmark run concurrently.
WORST = ["self-join-4-count", "self-join-4-sorted", "function-doubling", "tostring-3", "cross-join-ranges"]
