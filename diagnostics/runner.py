"""Run checks with a timeout each and a bound on the whole run.

Each check (per endpoint, for per-endpoint checks) runs in its own daemon thread: a check stuck
in a system call is reported as timed out and abandoned, never waited for. Every network step
inside a check also carries the check's remaining time, so abandoned threads end soon after.
Per-endpoint units of one check run in parallel, checks run in order (later ones reuse what
earlier ones learned through the Context).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from diagnostics import regions
from diagnostics.checks import CheckSpec, all_checks, select
from diagnostics.context import Context, Endpoint
from diagnostics.dnsutil import parse_server
from diagnostics.model import CheckResult, Outcome, Status
from diagnostics.options import Options

MAX_PARALLEL = 16


def validate(options: Options) -> None:
    """Raise ValueError with one readable line for options that cannot work (usage errors)."""
    if not 0 < options.timeout <= 300:
        raise ValueError(f"--timeout must be between 0 and 300 seconds, not {options.timeout:g}")
    select(all_checks(), options.check)
    for server in options.dns_servers:
        try:
            parse_server(server)
        except ValueError:
            raise ValueError(f"--dns-server {server!r} is not IP or IP:PORT") from None
    if options.account_id and not options.azure_region:
        raise ValueError("--account-id needs --azure-region")
    if options.azure_region:
        regions.find_region(options.azure_region)
    if options.account_id:
        regions.check_account_id(options.account_id)
    if options.url:
        from diagnostics.context import split_url

        split_url(options.url)


def run_checks(options: Options, on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run the selected checks; never raises for network trouble, never outlives its budget by much.

    ``on_result`` is called as each result is ready (for live output).
    """
    validate(options)
    ctx = Context(options)
    run_deadline = time.monotonic() + options.budget()
    results: list[CheckResult] = []
    for spec in select(all_checks(), options.check):
        if spec.per_endpoint:
            endpoints = _endpoints(ctx, options, run_deadline)
            batch = _run_parallel(ctx, spec, endpoints, run_deadline)
        else:
            batch = _run_unit(ctx, spec, None, run_deadline)
        for result in batch:
            results.append(result)
            if on_result:
                on_result(result)
    return results


def _endpoints(ctx: Context, options: Options, run_deadline: float) -> list[Endpoint]:
    box: list[list[Endpoint]] = []

    def work() -> None:
        ctx.set_deadline(time.monotonic() + options.timeout)
        box.append(ctx.endpoints().endpoints)

    thread = threading.Thread(target=work, daemon=True, name="diagnose-endpoints")
    thread.start()
    thread.join(max(0.0, min(options.timeout, run_deadline - time.monotonic())) + 0.5)
    if box:
        return box[0]
    # The endpoints document hangs: still check the server URL itself.
    from diagnostics.context import split_url

    try:
        scheme, host, port = split_url(ctx.server_url or "")
    except ValueError:
        return []
    return [Endpoint(host, port, "Outpost server (from the server URL)", "server URL", tls=scheme == "https")]


def _run_parallel(ctx: Context, spec: CheckSpec, endpoints: list[Endpoint], run_deadline: float) -> list[CheckResult]:
    if not endpoints:
        return [
            CheckResult(
                spec.id, spec.group, Status.SKIP, "no endpoints to check (see endpoints.list)", title=spec.title
            )
        ]
    slots: list[list[CheckResult]] = [[] for _ in endpoints]
    threads = []
    for start in range(0, len(endpoints), MAX_PARALLEL):
        for i in range(start, min(start + MAX_PARALLEL, len(endpoints))):
            t = threading.Thread(
                target=lambda i=i: slots[i].extend(_run_unit(ctx, spec, endpoints[i], run_deadline)), daemon=True
            )
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        threads.clear()
    return [r for slot in slots for r in slot]


def _run_unit(ctx: Context, spec: CheckSpec, ep: Endpoint | None, run_deadline: float) -> list[CheckResult]:
    """One check for one endpoint (or machine-wide), bounded by the check timeout."""
    target = ep.target if ep else None
    now = time.monotonic()
    if now >= run_deadline:
        return [
            CheckResult(
                spec.id,
                spec.group,
                Status.SKIP,
                f"not run: the whole diagnose run used its {ctx.options.budget():g} s budget",
                target=target,
                title=spec.title,
            )
        ]
    limit = min(ctx.options.timeout, run_deadline - now)
    box: list[Outcome | list[Outcome] | BaseException] = []

    def work() -> None:
        ctx.set_deadline(time.monotonic() + limit)
        try:
            box.append(spec.func(ctx, ep) if ep else spec.func(ctx))
        except Exception as exc:  # a bug in a check must not cost the other checks
            box.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=work, daemon=True, name=f"diagnose-{spec.id}")
    thread.start()
    # Network steps get `limit` each; allow a little slack for the step in flight to return.
    thread.join(limit + 0.5)
    ms = (time.monotonic() - start) * 1000
    if not box:
        return [
            CheckResult(
                spec.id,
                spec.group,
                Status.FAIL,
                f"did not finish within {limit:g} s (check timeout)",
                "something on the path hangs without an error: see the checks before it; "
                "raise --timeout for very slow links",
                ms,
                target=target,
                title=spec.title,
            )
        ]
    value = box[0]
    if isinstance(value, BaseException):
        return [
            CheckResult(
                spec.id,
                spec.group,
                Status.FAIL,
                f"check crashed: {type(value).__name__}: {value}",
                "this is a bug in outpost diagnose: please report it with the --json output",
                ms,
                target=target,
                title=spec.title,
            )
        ]
    outcomes = value if isinstance(value, list) else [value]
    return [
        CheckResult(
            spec.id,
            spec.group,
            o.status,
            o.finding,
            o.remediation,
            ms,
            o.evidence,
            o.target or target,
            spec.title,
            o.command,
        )
        for o in outcomes
    ]
