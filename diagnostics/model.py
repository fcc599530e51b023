"""The result of one check, as printed, serialised and posted to the collector.

The wire names (``id, group, status, finding, remediation, duration_ms, evidence``) are the
contract with the collector's ``DiagnosticResults`` table; ``target``, ``title`` and
``command`` are extras a reader may ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


# Worst first: decides the summary and the exit code.
SEVERITY = {Status.FAIL: 3, Status.WARN: 2, Status.PASS: 1, Status.SKIP: 0}


@dataclass
class CheckResult:
    id: str  # stable check id, e.g. "dns.resolve"; one id may yield one result per target
    group: str  # area: config, endpoints, dns, tcp, proxy, tls, certificate, credential, app, ...
    status: Status
    finding: str  # one line: what was found
    remediation: str = ""  # what to do about it (empty when nothing to do)
    duration_ms: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-safe facts behind the finding
    target: str | None = None  # "host:port", a path, or None for machine-wide checks
    title: str = ""
    command: str | None = None  # a shell command that reproduces the check by hand

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "status": str(self.status),
            "finding": self.finding,
            "remediation": self.remediation,
            "duration_ms": round(self.duration_ms, 1),
            "evidence": self.evidence,
            "target": self.target,
            "title": self.title,
            "command": self.command,
        }


def worst(results: list[CheckResult]) -> Status:
    if not results:
        return Status.SKIP
    return max((r.status for r in results), key=SEVERITY.__getitem__)


def exit_code(results: list[CheckResult]) -> int:
    """0 when everything passed or warned (or was skipped), 1 on any failure."""
    return 1 if any(r.status is Status.FAIL for r in results) else 0


@dataclass
class Outcome:
    """What a check function returns; the runner adds id, group, target and timing."""

    status: Status
    finding: str
    remediation: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    target: str | None = None  # set for machine-wide checks reporting on several things


def ok(finding: str, **kw: Any) -> Outcome:
    return Outcome(Status.PASS, finding, **kw)


def warn(finding: str, remediation: str, **kw: Any) -> Outcome:
    return Outcome(Status.WARN, finding, remediation, **kw)


def fail(finding: str, remediation: str, **kw: Any) -> Outcome:
    return Outcome(Status.FAIL, finding, remediation, **kw)


def skip(finding: str, **kw: Any) -> Outcome:
    return Outcome(Status.SKIP, finding, **kw)
