"""The control plane's shared parts, built once per server process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from automation.notify import Notifier
from outpost.observer import ControlPlaneObserver, NullObserver
from outpost.settings import LEASE_SECONDS, LONG_POLL_HOLD_S


@dataclass
class ControlPlane:
    engine: Engine
    data_dir: Path
    notifier: Notifier = field(default_factory=Notifier)
    observer: ControlPlaneObserver = field(default_factory=NullObserver)
    lease_seconds: float = LEASE_SECONDS
    poll_hold_s: float = LONG_POLL_HOLD_S
    public_url: str | None = None
    region: str | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
