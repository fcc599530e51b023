"""Fleet benchmark: does dispatch cost grow with the number of parked polls?

Simulated workers speak the real agent API to real `outpost server` processes on
127.0.0.1: they register, hold long-polls, and answer each job with one events post
(Running + an Output line + Completed) before polling again. They run in several
client processes so one Python process need not hold thousands of connections.

Scenarios, in one run (each prints its own figures; the ratios compare them):
- SQLite, a small group (--small, default 10 workers): the baseline;
- SQLite, a big group (--workers, default 4,000);
- PostgreSQL, 2 replicas sharing the small group, then half the big group each (skipped
  if no PostgreSQL): the replicas' own baseline and their big fleet;
- the big group polling every 30 s without holding, as Azure's workers do: polls/s, mean wait.

Per scenario: server CPU per job (all server processes, during the load), created ->
claimed p50/p99 at --rate jobs/s, idle server CPU with the fleet parked, peak server RSS,
and duplicates (a job handed out twice). Targets (issue 10): per-job CPU at 4,000 <= 1.5 x
the small group's; p99 <= 100 ms at 20 jobs/s; idle CPU <= 5 % of a core; RSS <= 500 MB.

    .venv/bin/python bench/fleet.py                        # everything (a few minutes)
    .venv/bin/python bench/fleet.py --workers 1000 --no-postgres --no-interval
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.procs import Server, wait_until  # noqa: E402  (shared process harness)

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP = "fleet"


# -- the simulated workers (run as `fleet.py --sim SPEC.json`) ---------------------------------


class _Conn:
    """One keep-alive HTTP/1.1 connection, as lean as a client can be.

    The simulated workers share the machine's two cores with the server they measure; httpx
    costs about a millisecond of client CPU per request, which at 4,000 workers delayed the
    reading of answers the server had sent in time. This speaks the same HTTP to the same
    routes for a fraction of that, so client-observed latency is closer to the server's.
    """

    def __init__(self, url: str, credential: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.auth = f"Bearer {credential}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: {self.auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        try:
            return await asyncio.wait_for(self._response(self.reader), timeout)
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                chunks.append(await reader.readexactly(size + 2))
            await reader.readuntil(b"\r\n")
            return status, b"".join(c[:-2] for c in chunks)
        return status, await reader.readexactly(int(headers.get("content-length", "0")))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _simulate(spec: dict[str, Any]) -> None:
    """One client process: a long-poll loop per credential until the stop file appears.

    Each simulated worker has its own connection, as a real agent does (`_Conn`).
    """
    stop = Path(spec["stop_file"])
    out = open(spec["out_file"], "a", buffering=1)  # noqa: SIM115  one line per claimed job
    hold, interval = spec["hold"], spec["interval"]
    deadline = time.monotonic() + spec["max_s"]

    async def worker(url: str, credential: str, phase: float) -> None:
        polls = 0
        answered = False  # as the agent: until a poll is answered, the server compares what it holds
        answers: dict[str, int] = {}  # poll answers by status (or error class): a bench that errs says so
        if interval:
            await asyncio.sleep(phase * interval)  # Azure's workers are not in step
        conn = _Conn(url, credential)
        try:
            while not stop.exists() and time.monotonic() < deadline:
                try:
                    body = json.dumps({"held": [], "settle": not answered}).encode()
                    status, payload = await conn.request(f"/api/v1/agent/poll?wait={hold}", body, hold + 30)
                    answered = status in (200, 204)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    answered = False
                    answers[type(exc).__name__] = answers.get(type(exc).__name__, 0) + 1
                    await asyncio.sleep(1)
                    continue
                polls += 1
                answers[str(status)] = answers.get(str(status), 0) + 1
                if status == 200:
                    now = time.time()
                    for job in json.loads(payload)["jobs"]:
                        out.write(json.dumps({"job": job["job_id"], "t": now}) + "\n")
                        stamp = datetime.now(UTC).isoformat()
                        batch = {
                            "job_id": job["job_id"],
                            "records": [{"seq": 1, "stream": "Output", "time": stamp, "text": "ok"}],
                            "status": {"status": "Completed", "exit_code": 0, "started_at": stamp},
                        }
                        events = json.dumps({"batches": [batch]}).encode()
                        for _ in range(3):  # bounded: a reused keep-alive connection may have just closed
                            try:
                                await conn.request("/api/v1/agent/events", events, 60)
                                break
                            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                                await asyncio.sleep(0.2)
                elif interval:
                    await asyncio.sleep(interval)
        finally:
            conn.close()
        out.write(json.dumps({"polls": polls, "answers": answers}) + "\n")

    n = len(spec["workers"])
    await asyncio.gather(*(worker(u, c, i / max(n, 1)) for i, (u, c) in enumerate(spec["workers"])))


# -- measuring ---------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


@dataclass
class Result:
    scenario: str
    workers: int
    jobs: int
    cpu_ms_per_job: float
    net_ms_per_job: float  # cpu/job less the parked fleet's own idle cost over the same time
    p50_ms: float
    p99_ms: float
    idle_cpu_pct: float
    rss_mb: float
    duplicates: int
    claims_per_job: float
    polls_per_s: float = 0.0
    mean_wait_ms: float = 0.0
    handed_pct: float = 0.0  # jobs' polls served from the parked FIFO by a wake-up (the rest: fresh polls)
    # The simulated workers' own CPU during the load, % of a core: near 100 x procs, they are the bottleneck.
    client_cpu_pct: float = 0.0
    answers: dict[str, int] = field(default_factory=dict)  # every poll answer of the run, by status
    # Created -> claimed as the server saw it (its own "job queued" spans): without the clients' delays.
    server_p50_ms: float = float("nan")
    server_p99_ms: float = float("nan")


def _register_all(servers: list[Server], count: int, key: str) -> list[tuple[str, str]]:
    local = threading.local()  # one keep-alive client per registering thread

    def one(i: int) -> tuple[str, str]:
        server = servers[i % len(servers)]
        body = {"key": key, "group": GROUP, "name": f"sim{i}"}
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        for _ in range(5):  # bounded retries: registration under load may time out
            try:
                r = local.client.post(f"{server.url}/api/v1/agent/register", json=body)
            except httpx.HTTPError:
                continue
            if r.status_code == 201:
                return server.url, r.json()["credential"]
        raise RuntimeError(f"could not register sim{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(count)))


def _dispatch(servers: list[Server], key: str) -> int:
    total = 0
    for s in servers:
        with s.client() as c:
            c.timeout = httpx.Timeout(120)
            total += c.get("/api/v1/dispatch").json()[key]
    return total


def _parked(servers: list[Server]) -> int:
    return _dispatch(servers, "parked")


def _claims(servers: list[Server]) -> int:
    return _dispatch(servers, "claims")


def run_scenario(
    name: str, servers: list[Server], workers: int, args: argparse.Namespace, root: Path, interval: float = 0.0
) -> Result:
    key = servers[0].registration_key
    print(f"\n== {name}: registering {workers} simulated workers", flush=True)
    creds = _register_all(servers, workers, key)
    with servers[0].client() as c:
        c.put("/api/v1/runbooks/noop/draft", json={"type": "bash", "content": "true\n"}).raise_for_status()
        c.post("/api/v1/runbooks/noop/publish").raise_for_status()
    stop_file = root / f"{name}.stop"
    out_files: list[Path] = []
    procs: list[subprocess.Popen[bytes]] = []
    nproc = max(1, min(args.procs, workers))
    hold = 0.0 if interval else args.hold
    for p in range(nproc):
        mine = creds[p::nproc]
        out = root / f"{name}-{p}.jsonl"
        spec = root / f"{name}-{p}.json"
        spec.write_text(
            json.dumps(
                {
                    "workers": mine,
                    "stop_file": str(stop_file),
                    "out_file": str(out),
                    "hold": hold,
                    "interval": interval,
                    "max_s": 900,
                }
            )
        )
        out_files.append(out)
        procs.append(subprocess.Popen([sys.executable, __file__, "--sim", str(spec)]))
    pids = [s.proc.pid for s in servers if s.proc]
    try:
        if not interval:
            wait_until(lambda: _parked(servers) >= workers, 300, 0.5, f"{workers} parked polls")
        time.sleep(2)
        # Idle: the whole fleet parked (or polling on its interval), no jobs.
        c0 = sum(cpu_s(p) for p in pids)
        time.sleep(args.idle_s)
        idle_pct = (sum(cpu_s(p) for p in pids) - c0) / args.idle_s * 100
        claims0, handed0 = _claims(servers), _dispatch(servers, "handed")
        created: dict[str, float] = {}
        sims = [pr.pid for pr in procs]
        c0, t0 = sum(cpu_s(p) for p in pids), time.monotonic()
        client0 = sum(cpu_s(p) for p in sims)
        with servers[0].client() as c:
            for i in range(args.jobs):
                due = t0 + i / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                r = c.post("/api/v1/jobs", json={"runbook": "noop", "run_on": GROUP})
                r.raise_for_status()
                job = r.json()
                created[job["id"]] = datetime.fromisoformat(job["created_at"]).timestamp()

        def claims_in() -> list[dict[str, Any]] | None:
            seen = [json.loads(line) for f in out_files if f.exists() for line in f.read_text().splitlines()]
            got = [s for s in seen if s.get("job") in created]
            return got if len({g["job"] for g in got}) >= len(created) else None

        got = wait_until(claims_in, 120 + (interval * 2), 0.2, "every job to be claimed")
        cpu = sum(cpu_s(p) for p in pids) - c0  # before the spans query below, which is not dispatch
        elapsed = time.monotonic() - t0
        client_pct = (sum(cpu_s(p) for p in sims) - client0) / elapsed * 100
        claims = _claims(servers) - claims0
        handed = _dispatch(servers, "handed") - handed0
        rss = max(rss_mb(p) for p in pids)
        server_waits = _queued_spans(servers, len(created))
    finally:
        stop_file.touch()
        for pr in procs:
            try:
                pr.wait(hold + 35)
            except subprocess.TimeoutExpired:
                pr.send_signal(signal.SIGKILL)
                pr.wait(5)
    first: dict[str, float] = {}
    for g in got:
        first.setdefault(g["job"], g["t"])
    waits = [(first[j] - created[j]) * 1000 for j in created]
    summaries = [r for r in (json.loads(x) for f in out_files if f.exists() for x in f.read_text().splitlines())
                 if "polls" in r]  # fmt: skip
    polls = sum(r["polls"] for r in summaries)
    answers: dict[str, int] = {}
    for r in summaries:
        for k, v in r.get("answers", {}).items():
            answers[k] = answers.get(k, 0) + v
    return Result(
        scenario=name,
        workers=workers,
        jobs=len(created),
        cpu_ms_per_job=cpu / len(created) * 1000,
        net_ms_per_job=max(0.0, cpu - idle_pct / 100 * elapsed) / len(created) * 1000,
        p50_ms=pct(waits, 50),
        p99_ms=pct(waits, 99),
        idle_cpu_pct=idle_pct,
        rss_mb=rss,
        duplicates=len(got) - len(first),
        claims_per_job=claims / len(created),
        polls_per_s=polls / max(elapsed + args.idle_s, 1e-9) if interval else 0.0,
        mean_wait_ms=sum(waits) / len(waits),
        client_cpu_pct=client_pct,
        handed_pct=handed / len(created) * 100,
        answers=answers,
        server_p50_ms=pct(server_waits, 50),
        server_p99_ms=pct(server_waits, 99),
    )


def _queued_spans(servers: list[Server], jobs: int) -> list[float]:
    """The jobs' created -> claimed durations from the servers' "job queued" spans ([] if they never land).

    Without a collector each replica keeps the spans of the claims it made: all of them together.
    """
    query = 'OTelSpans | where Name == "job queued" | project DurationMs'

    def one(server: Server) -> list[float]:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            r = c.post("/api/v1/query", json={"query": query})
        # A null duration: the claim's clock read fell before the stored creation time (rounding): 0 ms.
        return [row[0] or 0.0 for row in r.json().get("rows", [])] if r.status_code == 200 else []

    def landed() -> list[float] | None:
        rows = [d for server in servers for d in one(server)]
        return rows if len(rows) >= jobs else None

    try:
        return wait_until(landed, 30, 1.0, "the job queued spans")
    except AssertionError:
        return []


def _servers(root: Path, name: str, count: int, database_url: str | None) -> list[Server]:
    servers: list[Server] = []
    for i in range(count):
        s = Server(root / f"{name}-{i}", database_url=database_url, extra=["--log-level", "warning"]).start(60)
        if servers:
            s.token, s.registration_key = servers[0].token, servers[0].registration_key
        servers.append(s)
    return servers


def _pg_database() -> str | None:
    try:
        import psycopg

        name = f"outpost_fleet_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no server: that scenario is skipped, and says so
        print(f"PostgreSQL unavailable ({type(exc).__name__}); skipping the replica scenario")
        return None
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _scenario(name: str, count: int, database_url: str | None, workers: int, args: argparse.Namespace, root: Path,
              interval: float = 0.0) -> Result | None:  # fmt: skip
    servers = _servers(root, name, count, database_url)
    try:
        return run_scenario(name, servers, workers, args, root, interval)
    except Exception as exc:  # one failed scenario must not lose the others' figures
        print(f"{name}: failed: {type(exc).__name__}: {exc}", flush=True)
        return None
    finally:
        for s in servers:
            s.stop()


def _print(results: list[Result]) -> None:
    print()
    # p50/p99: created -> claimed as the simulated workers saw it; srv: as the server's spans say.
    # cpu/job: all server CPU during the load per job; net: less the parked fleet's idle rate.
    print(f"{'scenario':<16}{'workers':>7}{'cpu/job':>8}{'net':>6}{'p50':>6}{'p99':>6}{'srv p99':>8}{'idle':>6}"
          f"{'rss':>5}{'cl/job':>7}{'dup':>4}")  # fmt: skip
    print(f"{'':<16}{'':>7}{'ms':>8}{'ms':>6}{'ms':>6}{'ms':>6}{'ms':>8}{'%core':>6}{'MB':>5}{'':>7}{'':>4}")
    for r in results:
        print(
            f"{r.scenario[:16]:<16}{r.workers:>7}{r.cpu_ms_per_job:>8.1f}{r.net_ms_per_job:>6.1f}{r.p50_ms:>6.0f}"
            f"{r.p99_ms:>6.0f}{r.server_p99_ms:>8.0f}{r.idle_cpu_pct:>6.1f}{r.rss_mb:>5.0f}{r.claims_per_job:>7.2f}"
            f"{r.duplicates:>4}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=4000, help="the big group")
    parser.add_argument("--small", type=int, default=10, help="the baseline group")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per scenario")
    parser.add_argument("--rate", type=float, default=20.0, help="jobs created per second")
    parser.add_argument("--hold", type=float, default=25.0, help="long-poll hold the simulated workers ask for")
    parser.add_argument(
        "--idle-s", type=float, default=None,
        help="idle window with the fleet parked (default: the hold + 5 s, so every parked poll re-polls once)",
    )  # fmt: skip
    parser.add_argument("--procs", type=int, default=4, help="client processes for the simulated workers")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pg-workers", type=int, default=0, help="the replica scenario's fleet (default --workers)")
    parser.add_argument("--no-interval", action="store_true", help="skip the 30 s interval-polling baseline")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.idle_s is None:
        args.idle_s = args.hold + 5.0
    if args.sim:
        asyncio.run(_simulate(json.loads(Path(args.sim).read_text())))
        return
    results: list[Result | None] = []
    with tempfile.TemporaryDirectory(prefix="outpost-fleet-") as tmp:
        root = Path(tmp)
        results.append(_scenario("sqlite-small", 1, None, args.small, args, root) if args.small else None)
        results.append(_scenario("sqlite-big", 1, None, args.workers, args, root))
        db = None if args.no_postgres else _pg_database()
        if db:  # each PostgreSQL scenario on a database of its own; the small one is the replicas' baseline
            results.append(_scenario("pg-2x-small", 2, db, args.small, args, root) if args.small else None)
            db = _pg_database()
        if db:
            results.append(_scenario("pg-2x-big", 2, db, args.pg_workers or args.workers, args, root))
        if not args.no_interval:
            interval = argparse.Namespace(**{**vars(args), "jobs": min(args.jobs, 40), "rate": 2.0})
            results.append(_scenario("sqlite-30s-poll", 1, None, args.workers, interval, root, interval=30.0))
    done = [r for r in results if r is not None]
    if args.json:
        print(json.dumps([asdict(r) for r in done], indent=2))
        return
    _print(done)
    small, big = results[0], results[1]
    if small is None or big is None:
        return
    print(
        f"\nbig/small per-job CPU x{big.cpu_ms_per_job / small.cpu_ms_per_job:.2f} (target <= 1.5), "
        f"net of idle x{big.net_ms_per_job / max(small.net_ms_per_job, 1e-9):.2f}; "
        f"big p99 {big.p99_ms:.0f} ms (target <= 100); big idle {big.idle_cpu_pct:.1f} % (target <= 5); "
        f"RSS {big.rss_mb:.0f} MB (target <= 500)"
    )
    by_name = {r.scenario: r for r in done}
    pg_small, pg_big = by_name.get("pg-2x-small"), by_name.get("pg-2x-big")
    if pg_small and pg_big:
        print(
            f"2 replicas on PostgreSQL, big/small per-job CPU x{pg_big.cpu_ms_per_job / pg_small.cpu_ms_per_job:.2f}"
            f", net of idle x{pg_big.net_ms_per_job / max(pg_small.net_ms_per_job, 1e-9):.2f}; big p99 "
            f"{pg_big.p99_ms:.0f} ms; big idle {pg_big.idle_cpu_pct:.1f} %"
        )
    for r in done:
        if r.scenario.endswith("-poll"):
            print(
                f"{r.scenario}: {r.polls_per_s:.0f} polls/s, mean wait {r.mean_wait_ms:.0f} ms "
                f"(x{r.mean_wait_ms / max(big.mean_wait_ms, 1e-9):.1f} the long-poll's), idle "
                f"x{r.idle_cpu_pct / max(big.idle_cpu_pct, 1e-9):.1f} the long-poll's"
            )


if __name__ == "__main__":
    main()
