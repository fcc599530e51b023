"""Built-in alerting for installations without Prometheus: evaluate KQL rules, notify, remember.

`AlertEvaluator` runs each rule (telemetry/alert_rules.py) through an injected
`run_query(kql) -> (columns, rows)`, so it works with the collector's KQL layer or
anything that answers KQL. Breaching rows become alerts keyed by rule + dimension
labels; they are posted to Alertmanager (re-sent every `resend_interval` while
firing, once more with `endsAt` when resolved) and/or a webhook (on each change).
Maintenance windows for a worker or group suppress matching alerts: they still
show (state `suppressed`) but nothing is sent.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from telemetry.alert_delivery import AlertmanagerSender, DeliveryError, WebhookSender, rfc3339
from telemetry.alert_rules import KqlAlertRule

log = logging.getLogger(__name__)

QueryRunner = Callable[[str], tuple[Sequence[str], Sequence[Sequence[Any]]]]
FIRING, SUPPRESSED, RESOLVED = "firing", "suppressed", "resolved"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime | None) -> str | None:
    return rfc3339(ts) if ts else None


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _render(template: str, labels: dict[str, str], value: float) -> str:
    try:
        return template.format_map(_Missing(labels, value=value))
    except (ValueError, IndexError, KeyError):  # a bad format spec must not break alerting
        return template


def collector_query_runner(collector: Any) -> QueryRunner:
    """Adapt telemetry.collector.Collector.query (a kql.QueryResult) to run_query(kql) -> (columns, rows)."""

    def run(kql: str) -> tuple[list[str], list[Any]]:
        result = collector.query(kql)
        return [name for name, _ in result.columns], result.rows

    return run


@dataclass
class MaintenanceWindow:
    """Silences alerts whose `worker` or `group` label matches, between starts_at and ends_at."""

    ends_at: datetime
    worker: str | None = None
    group: str | None = None
    starts_at: datetime = field(default_factory=_utcnow)
    comment: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: datetime = field(default_factory=_utcnow)

    def __post_init__(self) -> None:
        if not self.worker and not self.group:
            raise ValueError("a maintenance window needs a worker or a group")
        if self.ends_at <= self.starts_at:
            raise ValueError("a maintenance window must end after it starts")

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str], now: datetime) -> bool:
        if not self.active(now):
            return False
        return bool(
            (self.worker and labels.get("worker") == self.worker) or (self.group and labels.get("group") == self.group)
        )

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        data = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        data["active"] = self.active(now or _utcnow())
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaintenanceWindow:
        def ts(value: str) -> datetime:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))

        return cls(
            ends_at=ts(data["ends_at"]), worker=data.get("worker"), group=data.get("group"),
            starts_at=ts(data["starts_at"]), comment=data.get("comment", ""), id=data["id"],
            created_at=ts(data["created_at"]),
        )  # fmt: skip


@dataclass
class AlertState:
    rule: KqlAlertRule
    labels: dict[str, str]
    value: float
    starts_at: datetime
    status: str = FIRING
    ends_at: datetime | None = None
    last_evaluated: datetime | None = None
    am_sent_at: datetime | None = None  # last time Alertmanager accepted it
    am_resolved_sent: bool = False
    notified: bool = False  # the webhook was told it fires

    @property
    def fingerprint(self) -> str:
        return json.dumps(sorted(self.labels.items()))

    def annotations(self) -> dict[str, str]:
        notes = {
            "summary": _render(self.rule.summary or f"{self.rule.name} is firing", self.labels, self.value),
            "description": _render(self.rule.description, self.labels, self.value),
            "runbook_url": self.rule.runbook_url,
            "value": f"{self.value:g}",
        }
        return {k: v for k, v in notes.items() if v}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.rule.name, "state": self.status, "severity": self.rule.severity,
            "labels": dict(self.labels), "annotations": self.annotations(), "value": self.value,
            "worker": self.labels.get("worker"), "group": self.labels.get("group"),
            "starts_at": _iso(self.starts_at), "ends_at": _iso(self.ends_at),
            "last_evaluated": _iso(self.last_evaluated),
        }  # fmt: skip


@dataclass
class RuleStatus:
    last_evaluated: datetime | None = None
    last_error: str | None = None
    last_duration_s: float | None = None


class AlertEvaluator:
    """Evaluates KQL alert rules on a schedule and delivers their alerts.

    Thread-safe: `tick()` may run on the background thread (`start()`) while the API
    reads `alerts()` and edits maintenance windows.
    """

    def __init__(
        self,
        rules: Sequence[KqlAlertRule],
        run_query: QueryRunner,
        *,
        alertmanager_url: str | None = None,
        webhook_url: str | None = None,
        resend_interval_s: float = 60.0,
        resolved_retention_s: float = 3600.0,
        tick_interval_s: float = 5.0,
        maintenance_file: Path | str | None = None,
        state_file: Path | str | None = None,
        generator_url: str = "",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.rules = list(rules)
        self._run_query = run_query
        self._alertmanager = AlertmanagerSender(alertmanager_url) if alertmanager_url else None
        self._webhook = WebhookSender(webhook_url) if webhook_url else None
        self.resend_interval_s = resend_interval_s
        self.resolved_retention_s = resolved_retention_s
        self.tick_interval_s = tick_interval_s
        self.generator_url = generator_url
        self._clock = clock
        self._lock = threading.RLock()
        self._states: dict[tuple[str, str], AlertState] = {}
        self._rule_status: dict[str, RuleStatus] = {r.name: RuleStatus() for r in self.rules}
        self._webhook_queue: list[tuple[str, AlertState]] = []
        # Open alerts survive a restart with their starts_at (and a webhook that heard "firing" is not
        # told again): they are written here after each change and read back at start.
        self._state_file = Path(state_file) if state_file else None
        self._saved_states = ""
        self._states.update(self._load_states())
        self.last_delivery_error: str | None = None
        self._maintenance_file = Path(maintenance_file) if maintenance_file else None
        self._windows: dict[str, MaintenanceWindow] = self._load_windows()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- schedule -------------------------------------------------------------

    def start(self) -> None:
        """Evaluate in a daemon thread until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="outpost-alerting", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for sender in (self._alertmanager, self._webhook):
            if sender is not None:
                sender.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad evaluation
                log.exception("alert evaluation failed")
            self._stop.wait(self.tick_interval_s)

    def tick(self, *, force: bool = False) -> None:
        """Evaluate every rule that is due (all with force), then deliver."""
        now = self._clock()
        for rule in self.rules:
            status = self._rule_status[rule.name]
            due = status.last_evaluated is None or (now - status.last_evaluated).total_seconds() >= rule.frequency_s
            if force or due:
                self.evaluate(rule, now)
        self.deliver(now)

    # -- evaluation -----------------------------------------------------------

    def evaluate(self, rule: KqlAlertRule, now: datetime | None = None) -> None:
        now = now or self._clock()
        status = self._rule_status.setdefault(rule.name, RuleStatus())
        started = _utcnow()
        try:
            columns, rows = self._run_query(rule.query)
            breaching = self._breaching(rule, list(columns), rows)
            status.last_error = None
        except Exception as exc:  # keep alert states as they were: a failing query is not "resolved"
            status.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("alert rule %s: %s", rule.name, status.last_error)
            return
        finally:
            status.last_evaluated = now
            status.last_duration_s = (_utcnow() - started).total_seconds()
        with self._lock:
            self._apply(rule, breaching, now)
            self._save_states()

    @staticmethod
    def _breaching(
        rule: KqlAlertRule, columns: list[str], rows: Sequence[Sequence[Any]]
    ) -> dict[str, tuple[dict[str, str], float]]:
        index = {name: i for i, name in enumerate(columns)}
        missing = [c for c in [*rule.dimensions.values(), rule.metric_column] if c and c not in index]
        if missing:
            raise ValueError(f"query result has no column(s) {missing}; it has {columns}")
        values: dict[str, tuple[dict[str, str], float]] = {}
        for row in rows:
            labels = {
                label: "" if row[index[col]] is None else str(row[index[col]]) for label, col in rule.dimensions.items()
            }
            key = json.dumps(sorted(labels.items()))
            if rule.metric_column is None:  # "number of results" per dimension set
                values[key] = (labels, values.get(key, (labels, 0.0))[1] + 1)
                continue
            raw = row[index[rule.metric_column]]
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            if not math.isnan(value):
                values[key] = (labels, value)
        return {k: v for k, v in values.items() if rule.breaches(v[1])}

    def _apply(self, rule: KqlAlertRule, breaching: dict[str, tuple[dict[str, str], float]], now: datetime) -> None:
        for key, (dims, value) in breaching.items():
            labels = {**rule.labels, **dims, "alertname": rule.name, "severity": rule.severity}
            state = self._states.get((rule.name, key))
            if state is None or state.status == RESOLVED:
                state = AlertState(rule=rule, labels=labels, value=value, starts_at=now, status="")
                self._states[(rule.name, key)] = state
            state.value, state.last_evaluated = value, now
            self._set_status(state, SUPPRESSED if self._suppressed(state, now) else FIRING)
        retention = max(self.resolved_retention_s, 0)
        for (name, key), state in list(self._states.items()):
            if name != rule.name:
                continue
            if key not in breaching and state.status != RESOLVED:
                state.ends_at, state.last_evaluated = now, now
                self._set_status(state, RESOLVED)
            elif (
                state.status == RESOLVED
                and state.ends_at is not None
                and (now - state.ends_at).total_seconds() > retention
                and (state.am_sent_at is None or state.am_resolved_sent)
            ):
                del self._states[(name, key)]

    def _set_status(self, state: AlertState, new: str) -> None:
        """Change state; the webhook hears of firing (not muted) and of the resolution of what it heard."""
        old, state.status = state.status, new
        if new == FIRING and old != FIRING:
            self._queue_webhook(FIRING, state)
            state.notified = True
        elif new == RESOLVED and old != RESOLVED and state.notified:
            self._queue_webhook(RESOLVED, state)

    def _suppressed(self, state: AlertState, now: datetime) -> bool:
        return state.rule.suppress_by_maintenance and any(w.matches(state.labels, now) for w in self._windows.values())

    # -- delivery -------------------------------------------------------------

    def _am_payload(self, state: AlertState, now: datetime) -> dict[str, Any]:
        if state.status == RESOLVED:
            ends = state.ends_at or now
        else:
            # Like Prometheus: a firing alert expires by itself if we stop re-sending it.
            ends = now + timedelta(seconds=3 * max(self.resend_interval_s, state.rule.frequency_s))
        payload = {
            "labels": state.labels,
            "annotations": state.annotations(),
            "startsAt": rfc3339(state.starts_at),
            "endsAt": rfc3339(ends),
        }
        if self.generator_url:
            payload["generatorURL"] = self.generator_url
        return payload

    def _am_due(self, state: AlertState, now: datetime) -> bool:
        if state.status == FIRING:
            return state.am_sent_at is None or (now - state.am_sent_at).total_seconds() >= self.resend_interval_s
        # A suppressed alert is simply no longer re-sent: Alertmanager lets it expire at its endsAt.
        return state.status == RESOLVED and state.am_sent_at is not None and not state.am_resolved_sent

    def _queue_webhook(self, status: str, state: AlertState) -> None:
        if self._webhook is None:
            return
        self._webhook_queue.append((status, state))
        del self._webhook_queue[:-1000]  # bounded: a long-dead webhook must not grow memory forever

    def deliver(self, now: datetime | None = None) -> None:
        now = now or self._clock()
        with self._lock:
            due = []
            if self._alertmanager is not None:
                due = [state for state in self._states.values() if self._am_due(state, now)]
            payloads = [self._am_payload(s, now) for s in due]
            webhook_batch, self._webhook_queue = self._webhook_queue, []
        errors = []
        if self._alertmanager is not None and payloads:
            try:
                self._alertmanager.send(payloads)
                with self._lock:
                    for state in due:
                        if state.status == RESOLVED:
                            state.am_resolved_sent = True
                        else:
                            state.am_sent_at = now
            except DeliveryError as exc:
                errors.append(str(exc))
        if self._webhook is not None and webhook_batch:
            failed = []
            for status in (FIRING, RESOLVED):
                batch = [s for st, s in webhook_batch if st == status]
                if not batch:
                    continue
                try:
                    self._webhook.send(status, [{**s.to_dict(), "state": status} for s in batch])
                except DeliveryError as exc:
                    errors.append(str(exc))
                    failed += [(status, s) for s in batch]
            with self._lock:
                self._webhook_queue = failed + self._webhook_queue
        self.last_delivery_error = "; ".join(errors) or None
        for error in errors:
            log.warning("alert delivery failed: %s", error)

    # -- reading --------------------------------------------------------------

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = [s.to_dict() for s in self._states.values() if state in (None, s.status)]
        order = {FIRING: 0, SUPPRESSED: 1, RESOLVED: 2}
        return sorted(items, key=lambda a: (order[a["state"]], a["name"], json.dumps(a["labels"], sort_keys=True)))

    def rule_statuses(self) -> list[dict[str, Any]]:
        out = []
        for rule in self.rules:
            status = self._rule_status[rule.name]
            out.append({
                **rule.to_dict(),
                "last_evaluated": _iso(status.last_evaluated),
                "last_error": status.last_error,
                "last_duration_seconds": status.last_duration_s,
            })  # fmt: skip
        return out

    # -- maintenance windows --------------------------------------------------

    def add_maintenance(
        self,
        *,
        ends_at: datetime,
        worker: str | None = None,
        group: str | None = None,
        starts_at: datetime | None = None,
        comment: str = "",
    ) -> MaintenanceWindow:
        window = MaintenanceWindow(
            ends_at=ends_at, worker=worker, group=group, starts_at=starts_at or self._clock(), comment=comment
        )
        with self._lock:
            self._windows[window.id] = window
            self._resuppress(self._clock())
            self._save_windows()
            self._save_states()
        return window

    def remove_maintenance(self, window_id: str) -> bool:
        with self._lock:
            found = self._windows.pop(window_id, None) is not None
            if found:
                self._resuppress(self._clock())
                self._save_windows()
                self._save_states()
        return found

    def maintenance_windows(self, *, include_expired: bool = False) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            windows = [w for w in self._windows.values() if include_expired or w.ends_at > now]
        return [w.to_dict(now) for w in sorted(windows, key=lambda w: (w.starts_at, w.id))]

    def _resuppress(self, now: datetime) -> None:
        # A window added or removed takes effect at once, not at the rule's next run.
        for state in self._states.values():
            if state.status != RESOLVED:
                self._set_status(state, SUPPRESSED if self._suppressed(state, now) else FIRING)

    def _load_windows(self) -> dict[str, MaintenanceWindow]:
        if self._maintenance_file is None or not self._maintenance_file.exists():
            return {}
        try:
            items = json.loads(self._maintenance_file.read_text())
            return {w.id: w for w in map(MaintenanceWindow.from_dict, items)}
        except (ValueError, KeyError, TypeError) as exc:
            log.error("ignoring unreadable maintenance file %s: %s", self._maintenance_file, exc)
            return {}

    def _save_windows(self) -> None:
        if self._maintenance_file is None:
            return
        now = self._clock()
        items = [w.to_dict(now) for w in self._windows.values() if w.ends_at > now]
        tmp = self._maintenance_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(items, indent=2))
        os.replace(tmp, self._maintenance_file)

    # -- open alerts across restarts -------------------------------------------

    def _load_states(self) -> dict[tuple[str, str], AlertState]:
        if self._state_file is None or not self._state_file.exists():
            return {}
        rules = {r.name: r for r in self.rules}
        states: dict[tuple[str, str], AlertState] = {}
        try:
            for item in json.loads(self._state_file.read_text()):
                rule = rules.get(item["rule"])
                if rule is None or item["status"] not in (FIRING, SUPPRESSED):
                    continue  # a rule removed since: its alerts go with it
                labels = {str(k): str(v) for k, v in item["labels"].items()}
                state = AlertState(
                    rule=rule, labels=labels, value=float(item["value"]),
                    starts_at=datetime.fromisoformat(item["starts_at"].replace("Z", "+00:00")),
                    status=item["status"], notified=bool(item.get("notified")),
                )  # fmt: skip
                dims = {label: labels.get(label, "") for label in rule.dimensions}
                states[(rule.name, json.dumps(sorted(dims.items())))] = state
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("ignoring unreadable alert state file %s: %s", self._state_file, exc)
            return {}
        return states

    def _save_states(self) -> None:
        """Write the open (firing or suppressed) alerts, when they changed; called under the lock."""
        if self._state_file is None:
            return
        items = [
            {"rule": s.rule.name, "labels": s.labels, "value": s.value, "starts_at": _iso(s.starts_at),
             "status": s.status, "notified": s.notified}
            for s in self._states.values()
            if s.status in (FIRING, SUPPRESSED)
        ]  # fmt: skip
        text = json.dumps(items, indent=2, sort_keys=True)
        if text == self._saved_states:
            return
        tmp = self._state_file.with_suffix(".tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, self._state_file)
        except OSError as exc:  # alerting goes on; only the restart memory is lost
            log.warning("cannot write the alert state file %s: %s", self._state_file, exc)
            return
        self._saved_states = text
