"""Clock skew against the server's Date header (tokens, certificates and freshness depend on it)."""

from __future__ import annotations

from datetime import UTC, datetime

from diagnostics.checks import CheckSpec
from diagnostics.context import Context
from diagnostics.model import Outcome, fail, ok, skip, warn
from outpost import contract

HINT = "sync this machine's clock: timedatectl set-ntp true (chrony/systemd-timesyncd), then check timedatectl status"


def skew(ctx: Context) -> Outcome:
    if not ctx.server_url:
        return skip("no Outpost server to compare with")
    probe = ctx.http("GET", contract.HEALTH)
    if probe.error:
        return skip(f"no answer from the server ({probe.error})")
    server = probe.server_date()
    if server is None or not probe.is_outpost:
        return skip("no usable Date header from Outpost (see app.health)")
    # Date has one-second resolution and is truncated: its midpoint is +0.5 s.
    local = (probe.sent_at + probe.received_at) / 2
    delta = local - (server + 0.5)
    evidence = {
        "server_date": probe.headers.get("date"),
        "local": datetime.fromtimestamp(local, UTC).isoformat(),
        "skew_s": round(delta, 1),
    }
    ahead = "ahead of" if delta > 0 else "behind"
    finding = f"this machine's clock is {abs(delta):.0f} s {ahead} the server's"
    t = ctx.options.thresholds
    if abs(delta) > t.skew_fail_s:
        return fail(finding + f" (limit {t.skew_fail_s:.0f} s)", HINT, evidence=evidence)
    if abs(delta) > t.skew_warn_s:
        return warn(finding + f" (warn above {t.skew_warn_s:.0f} s)", HINT, evidence=evidence)
    return ok(f"clock within {max(abs(delta), 1):.0f} s of the server's", evidence=evidence)


CHECKS = [CheckSpec("clock.skew", "Clock skew", skew)]
