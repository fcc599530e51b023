"""One HTTPS `outpost server` (private CA) with one real agent in group "linux", shared by a module,
and the official `azure-mgmt-automation` client pointed at it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.automation import AutomationClient

from tests.helpers.pki import make_ca_and_cert
from tests.helpers.procs import Agent, Server

SUB, RG, ACCOUNT = "00000000-0000-0000-0000-0000000000aa", "migrated-rg", "outpost"
API_VERSION = "2024-10-23"


class StaticToken:
    """A credential as a migration script writes one: get_token returns the Outpost token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class Arm:
    server: Server
    agent: Agent
    ca: str

    def sdk(self, token: str | None = None, **options: Any) -> AutomationClient:
        return AutomationClient(
            StaticToken(token or self.server.token),
            SUB,
            base_url=self.server.url,
            connection_verify=self.ca,
            retry_total=0,  # an error is the answer under test, not something to retry
            **options,
        )

    def path(self, tail: str = "", account: str = ACCOUNT) -> str:
        base = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Automation/automationAccounts/{account}"
        return base + tail

    def raw(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.server.token}"} if token != "" else {}

        def versioned(request: httpx.Request) -> None:
            # As the SDK does; a nextLink already carries it (client-wide params would drop its query).
            if "api-version" not in request.url.params:
                request.url = request.url.copy_add_param("api-version", API_VERSION)

        return httpx.Client(
            base_url=self.server.url,
            headers=headers,
            verify=self.server.verify(),
            timeout=30,
            event_hooks={"request": [versioned]},
        )

    def token(self, name: str, role: str, **extra: Any) -> str:
        with self.server.client() as c:
            r = c.post(f"/api/v1/tokens/{name}", json={"role": role, **extra})
        assert r.status_code == 201, r.text
        return r.json()["token"]


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arm]:
    root = tmp_path_factory.mktemp("arm")
    pki = make_ca_and_cert(root)
    tls = ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    server = Server(root / "server", extra=tls, ca_file=str(pki["ca"])).start()
    agent = Agent(server, root / "state-w1", "linux", "w1")
    try:
        agent.register()
        agent.start()
        yield Arm(server, agent, str(pki["ca"]))
    finally:
        # The tests end with no job running: a kill spares the ~25 s an idle agent spends flushing
        # telemetry at SIGTERM (graceful stops are tested in tests/runtime).
        agent.stop(signal.SIGKILL)
        server.stop()
