"""The agent diagnoses itself: periodically, and when polls keep failing.

Results are kept until the service accepts them, so a worker that lost its way
reports what was wrong as soon as it reconnects (the `DiagnosticResults` table and
`outpost_diagnose_check_failing` gauges show which workers fail which check).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from outpost.http import ApiError

log = logging.getLogger("outpost.agent")

RETRY_REPORT_S = 30.0
POLL_FAILURES_BEFORE_CHECK = 3


class SelfCheck:
    def __init__(
        self, state_dir: Path, client: httpx.Client, *, interval_s: float, first_after_s: float, timeout_s: float = 5.0
    ) -> None:
        self.state_dir = state_dir
        self.client = client
        self.interval_s = interval_s
        self.first_after_s = first_after_s
        self.timeout_s = timeout_s
        self._wake = threading.Event()
        self._pending: tuple[datetime, list[Any]] | None = None

    def trigger(self) -> None:
        """Ask for a run now (the poll loop calls this after repeated failures)."""
        self._wake.set()

    def _run_checks(self) -> list[Any]:
        # Imported here: dnspython and the TLS probes stay out of an agent that never diagnoses.
        from diagnostics.options import Options
        from diagnostics.runner import run_checks

        return run_checks(Options(state_dir=self.state_dir, timeout=self.timeout_s))

    def _report(self) -> bool:
        if self._pending is None:
            return True
        from diagnostics.report import post_results

        when, results = self._pending
        try:
            post_results(self.client, results, time=when)
        except ApiError as exc:
            log.info("diagnose results kept for later: %s", exc.message)
            return False
        self._pending = None
        return True

    def run(self, stop: threading.Event) -> None:
        wait = self.first_after_s
        while not stop.is_set():
            triggered = self._wake.wait(wait)
            if stop.is_set():
                return
            self._wake.clear()
            due = triggered or self._pending is None
            if due:
                try:
                    results = self._run_checks()
                except Exception:  # a diagnose bug must not take the agent down
                    log.exception("self-diagnosis failed")
                    results = []
                if results:
                    self._pending = (datetime.now(UTC), results)
                    failed = [r.id for r in results if r.status == "fail"]
                    if failed:
                        log.warning("self-diagnosis: failing checks: %s", ", ".join(sorted(set(failed))))
            wait = self.interval_s if self._report() else RETRY_REPORT_S
