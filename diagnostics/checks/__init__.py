"""Every check, in the order a run performs and prints them.

A check is a function of the context (machine-wide) or of the context and one endpoint
(``per_endpoint``). It returns an Outcome, or a list of them for several targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    func: Callable[..., Any]
    per_endpoint: bool = False

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


def all_checks() -> list[CheckSpec]:
    from diagnostics.checks import (
        app,
        certificate,
        clock,
        config,
        credential,
        dns,
        endpoints,
        freshness,
        proxy,
        resources,
        sandbox,
        tcp,
        tls,
    )

    modules = (
        config,
        endpoints,
        dns,
        tcp,
        proxy,
        tls,
        certificate,
        credential,
        app,
        clock,
        freshness,
        sandbox,
        resources,
    )
    return [spec for module in modules for spec in module.CHECKS]


def select(checks: list[CheckSpec], wanted: str | None) -> list[CheckSpec]:
    """One check by id ("dns.resolve") or one group ("dns"); ValueError names the known ids."""
    if not wanted:
        return checks
    chosen = [c for c in checks if c.id == wanted or c.group == wanted]
    if not chosen:
        known = ", ".join(c.id for c in checks)
        groups = ", ".join(dict.fromkeys(c.group for c in checks))
        raise ValueError(f"unknown check {wanted!r}; groups: {groups}; checks: {known}")
    return chosen
