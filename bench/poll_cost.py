"""What one re-poll of a parked fleet costs the server, against a health check in the same run.

A real `outpost server` on 127.0.0.1 and one registered worker polling with `wait=0` on an
empty queue: the figure is the server's CPU (utime + stime from /proc) per request. Three kinds
of request, interleaved over rounds so a busy machine affects them alike:
- `GET /api/v1/health` (the baseline: the HTTP stack alone);
- a poll with `settle: true` (the agent's first poll: the server compares what it holds);
- a poll with `settle: false` (an answered agent's re-poll: no store work at all);
- the same poll parked for 10 ms until it times out (a parked fleet's cycle, timer included).

    .venv/bin/python bench/poll_cost.py              # 3 rounds of 1,500 requests each
    .venv/bin/python bench/poll_cost.py --rounds 5 --requests 3000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.procs import Server  # noqa: E402  (shared process harness)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1500, help="requests of each kind per round")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="outpost-pollcost-") as tmp:
        server = Server(Path(tmp) / "server", extra=["--log-level", "warning"]).start(60)
        try:
            with httpx.Client(timeout=30) as c:
                body = {"key": server.registration_key, "group": "g", "name": "w"}
                credential = c.post(f"{server.url}/api/v1/agent/register", json=body).json()["credential"]
                headers = {"Authorization": f"Bearer {credential}"}
                poll = f"{server.url}/api/v1/agent/poll"
                calls = {
                    "health": lambda: c.get(f"{server.url}/api/v1/health"),
                    "poll settle=true": lambda: c.post(
                        poll, params={"wait": 0}, json={"held": [], "settle": True}, headers=headers
                    ),
                    "poll settle=false": lambda: c.post(
                        poll, params={"wait": 0}, json={"held": [], "settle": False}, headers=headers
                    ),
                    # Parks, then times out with 204: a parked fleet's whole cycle, timer included.
                    "parked 10 ms": lambda: c.post(
                        poll, params={"wait": 0.01}, json={"held": [], "settle": False}, headers=headers
                    ),
                }
                results.update({name: [] for name in calls})
                for call in calls.values():  # warm-up
                    for _ in range(50):
                        call()
                assert server.proc is not None
                for _ in range(args.rounds):
                    for name, call in calls.items():
                        c0 = cpu_s(server.proc.pid)
                        for _ in range(args.requests):
                            call()
                        results[name].append((cpu_s(server.proc.pid) - c0) / args.requests * 1000)
        finally:
            server.stop()
    base = statistics.median(results["health"])
    print(f"{'request':<20}{'server CPU ms':>14}{'x health':>10}   (median of {args.rounds} rounds)")
    for name, values in results.items():
        value = statistics.median(values)
        print(f"{name:<20}{value:>14.2f}{value / base:>10.2f}")


if __name__ == "__main__":
    main()
