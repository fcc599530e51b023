"""What a diagnose run is asked to do: the CLI builds one, the agent builds one."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# The resolver configuration diagnose treats as "the system resolver". Defaults to
# /etc/resolv.conf; point it elsewhere when the agent runs with another one (a container's).
ENV_RESOLV_CONF = "OUTPOST_RESOLV_CONF"
DEFAULT_TIMEOUT_S = 5.0


@dataclass
class Thresholds:
    dns_slow_s: float = 1.0
    tcp_slow_s: float = 1.0
    tls_slow_s: float = 1.0
    cert_warn_days: float = 30.0
    skew_warn_s: float = 60.0
    skew_fail_s: float = 300.0
    poll_warn_s: float = 120.0  # a healthy agent completes a long poll every ~25 s
    poll_fail_s: float = 600.0
    heartbeat_intervals_warn: float = 3.0  # missed heartbeats before warn / fail
    heartbeat_intervals_fail: float = 10.0
    disk_warn_bytes: int = 1 << 30
    disk_fail_bytes: int = 100 << 20


@dataclass
class Options:
    state_dir: Path | None = None  # None: outpost.settings.default_state_dir()
    url: str | None = None  # check this server instead of the registered one
    ca_file: str | None = None  # trust this CA bundle instead of the registered one / system store
    check: str | None = None  # run one check id ("dns.resolve") or one group ("dns")
    timeout: float = DEFAULT_TIMEOUT_S  # bound on each check (and each network step inside it)
    run_budget: float | None = None  # bound on the whole run; None: max(20 s, 10 x timeout)
    dns_servers: list[str] = field(default_factory=list)  # "IP" or "IP:PORT", compared with the system's
    azure_region: str | None = None  # also check Azure Automation's endpoints for this region
    account_id: str | None = None  # Azure Automation account id (GUID) for account-scoped records
    proxy: str | None = None  # proxy URL to use instead of the discovered one; "direct" for none
    resolv_conf: Path = field(default_factory=lambda: Path(os.environ.get(ENV_RESOLV_CONF) or "/etc/resolv.conf"))
    hosts_file: Path = Path("/etc/hosts")
    artifacts_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "outpost-diagnose")
    work_dir: Path | None = None  # None: status.json's work_dir, else <state>/work
    log_dir: Path | None = None  # None: status.json's log_dir, else <state>/logs
    thresholds: Thresholds = field(default_factory=Thresholds)

    def budget(self) -> float:
        return self.run_budget if self.run_budget is not None else max(20.0, 10 * self.timeout)
