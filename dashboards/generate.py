"""Write Outpost's Grafana dashboards to dashboards/json/ (or check they are up to date).

python dashboards/generate.py          # regenerate
python dashboards/generate.py --check  # exit 1 if the committed JSON differs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "json"
sys.path.insert(0, str(HERE))

from outpost_dashboards import fleet, jobs, worker  # noqa: E402

DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "outpost-fleet.json": fleet.build,
    "outpost-worker.json": worker.build,
    "outpost-jobs.json": jobs.build,
}


def render(build: Callable[[], dict[str, Any]]) -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = OUT / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
