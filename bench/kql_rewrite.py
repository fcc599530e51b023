"""What Outpost's KQL layer adds before translation, on the dashboards' own KQL panel queries.

For each query (empty tables: the cost measured is the layer's, not the data's):
- baseline: `duckdb_kql.to_sql(query)` alone (the translation every path pays);
- Outpost's layer before it: parse (`telemetry.kql.tree`, which is also the syntax check),
  the table-name check, and the rewrites (including the sub-queries they run); the parse is
  shown on its own too.
Prints the median of 5 runs per query and the ratio layer / translation.

    .venv/bin/python bench/kql_rewrite.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb_kql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from telemetry.collector import TABLES, Collector  # noqa: E402
from telemetry.kql import budget as kb  # noqa: E402
from telemetry.kql import lexical  # noqa: E402
from telemetry.kql.engine import Session, parse  # noqa: E402
from telemetry.kql.rewrites import Rewriter  # noqa: E402
from telemetry.kql.run import check_tables  # noqa: E402
from tests.dashboards.dashboard_files import concrete_kql, kql_queries  # noqa: E402
from tests.dashboards.test_live import VARIABLES  # noqa: E402

RUNS = 5


def main() -> int:
    tables = {t: [c for c, _ in cols] for t, cols in TABLES.items()}
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[tuple[str, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        collector = Collector(Path(tmp))
        try:
            for where, raw in kql_queries():
                query = concrete_kql(raw, VARIABLES)
                step, parsing, base = [], [], []
                for _ in range(RUNS):
                    with collector.store.reader() as cur:
                        budget = kb.Budget(30.0)
                        budget.start(cur)
                        try:
                            t0 = time.perf_counter()
                            tree = parse(lexical.strip_comments(query))
                            tp = time.perf_counter()
                            check_tables(tree, tables)
                            rewriter = Rewriter()
                            session = Session(cur, tables, now, budget, rewriter)
                            rewritten = rewriter(session, tree.query, tree)
                            t1 = time.perf_counter()
                            duckdb_kql.to_sql(rewritten, schema=tables, query_now=now, allow_write=False)
                            t2 = time.perf_counter()
                        finally:
                            budget.stop()
                    step.append(t1 - t0)
                    parsing.append(tp - t0)
                    base.append(t2 - t1)
                med = [statistics.median(x) * 1000 for x in (step, parsing, base)]
                rows.append((where, med[0], med[1], med[2]))
        finally:
            collector.close()
    print(f"{'query':<44} {'layer ms':>9} {'parse ms':>9} {'to_sql ms':>10} {'ratio':>6}")
    for where, s, p, b in rows:
        print(f"{where[:44]:<44} {s:>9.1f} {p:>9.1f} {b:>10.1f} {s / b:>6.2f}")
    steps, parses, bases = ([r[i] for r in rows] for i in (1, 2, 3))
    print(
        f"{len(rows)} queries, medians: layer {statistics.median(steps):.1f} ms"
        f" (of which parsing, also the syntax check, {statistics.median(parses):.1f} ms),"
        f" translation {statistics.median(bases):.1f} ms; layer / translation"
        f" {statistics.median(steps) / statistics.median(bases):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
