"""Defaults and environment variable names shared by every part of Outpost.

One place for each knob, so the CLI, the server and the agent agree.
"""

from __future__ import annotations

import os
from pathlib import Path

# Environment variables (documented in the README).
ENV_URL = "OUTPOST_URL"
ENV_TOKEN = "OUTPOST_TOKEN"
ENV_DATA_DIR = "OUTPOST_DATA_DIR"
ENV_STATE_DIR = "OUTPOST_STATE_DIR"
ENV_DATABASE_URL = "OUTPOST_DATABASE_URL"
ENV_CA_FILE = "OUTPOST_CA_FILE"
ENV_MASTER_KEY = "OUTPOST_MASTER_KEY"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = Path("outpost-data")

# Wire timings (DESIGN.md "Wire contract").
REQUEST_TIMEOUT_S = 30.0
REQUEST_ATTEMPTS = 3
LONG_POLL_HOLD_S = 25.0  # server holds a poll this long; below the 30 s client timeout
DISPATCH_RECHECK_S = 5.0  # each group with parked polls re-reads its queue this often, wake-up or not
LEASE_SECONDS = 30.0
HEARTBEAT_INTERVAL_S = 60.0
MAX_ACTIVATIONS = 3  # Azure: Suspended after 3 failed activations

# Request bodies above this size are refused with 413.
MAX_BODY_BYTES = 8 * 1024 * 1024


def default_state_dir() -> Path:
    """Agent state: $OUTPOST_STATE_DIR, /var/lib/outpost for root, else per-user."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/outpost")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "outpost"


def default_data_dir() -> Path:
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR)
