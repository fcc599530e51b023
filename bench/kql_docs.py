"""Pass rate on the kusto-docs conformance corpus: Outpost vs duckdb-kql alone, in the same run.

343 examples from Microsoft's Kusto documentation (../shared/conformance/kusto-docs), each judged
by the corpus's own compare.py. Outpost answers through the collector's query path, read as the
Kusto SDK reads an answer; duckdb-kql runs the same text on a fresh connection. See
tests/telemetry/kql_layer/docs_corpus.py for the details. About a minute.

    .venv/bin/python bench/kql_docs.py            # the two pass rates
    .venv/bin/python bench/kql_docs.py --failures # and why each Outpost failure failed
    .venv/bin/python bench/kql_docs.py --json     # for scripts
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from telemetry.collector import Collector  # noqa: E402
from tests.telemetry.kql_layer import docs_corpus as dc  # noqa: E402


def failure_class(detail: str) -> str:
    m = re.search(r"unsupported: ([^ (]+)", detail)
    if m:
        return f"unsupported {m.group(1)}"
    return re.sub(r"'[^']*'|\[.*", "…", detail.split(":")[0] if "Error" in detail[:30] else detail)[:60]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="list every Outpost failure and its reason")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not dc.available():
        print(f"corpus not found at {dc.CORPUS}", file=sys.stderr)
        return 2
    compare, cases = dc.comparator(), dc.cases()
    everything = {c["id"] for c in cases}
    non_geo = {c["id"] for c in cases if not dc.is_geo(c)}

    def progress(label: str):  # noqa: ANN202
        def show(n: int) -> None:
            if not args.json and (n % 50 == 0 or n == len(cases)):
                print(f"  {label}: {n}/{len(cases)}", file=sys.stderr)

        return show

    with tempfile.TemporaryDirectory() as tmp:
        collector = Collector(Path(tmp))
        try:
            t0 = time.monotonic()
            outpost = dc.judge(cases, lambda q: dc.run_outpost(collector, q), compare, progress("outpost"))
            t1 = time.monotonic()
            library = dc.judge(cases, dc.run_library, compare, progress("duckdb-kql"))
            t2 = time.monotonic()
        finally:
            collector.close()
    result = {
        "cases": len(everything),
        "non_geo": len(non_geo),
        "outpost": {"all": outpost.rate(everything), "non_geo": outpost.rate(non_geo), "seconds": round(t1 - t0, 1)},
        "duckdb_kql": {"all": library.rate(everything), "non_geo": library.rate(non_geo), "seconds": round(t2 - t1, 1)},
        "library_only": sorted(library.passed - outpost.passed),
        "outpost_only": sorted(outpost.passed - library.passed),
    }
    if args.json:
        result["outpost_failures"] = outpost.failures
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'engine':<12} {'all':>10} {'non-geo':>10} {'time':>8}")
    for label, key in (("Outpost", "outpost"), ("duckdb-kql", "duckdb_kql")):
        r = result[key]
        all_pct, ng_pct = 100 * r["all"] / len(everything), 100 * r["non_geo"] / len(non_geo)
        print(
            f"{label:<12} {r['all']:>4}/{len(everything)} {r['non_geo']:>4}/{len(non_geo)}"
            f" {r['seconds']:>7}s   ({all_pct:.1f}% / {ng_pct:.1f}%)"
        )
    print(f"passed by duckdb-kql only: {', '.join(result['library_only']) or '-'}")
    print(f"passed by Outpost only: {len(result['outpost_only'])}")
    classes = Counter(failure_class(d) for i, d in outpost.failures.items() if i in non_geo)
    print("Outpost's non-geo failures by class (top 12):")
    for cls, n in classes.most_common(12):
        print(f"  {n:>4}  {cls}")
    if args.failures:
        for case_id, detail in sorted(outpost.failures.items()):
            print(f"{case_id}: {detail[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
