"""The worker's own credential: on disk (private), and accepted by the server.

The credential itself is never printed, logged or put in evidence.
"""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

from diagnostics.checks import CheckSpec
from diagnostics.context import Context, same_server
from diagnostics.model import Outcome, fail, ok, skip, warn
from outpost import contract


def _proc_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[2])  # effective uid
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read(ctx: Context) -> tuple[str | None, str | None]:
    try:
        value = ctx.state.credential_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, "missing"
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        return None, str(exc)
    return (value, None) if value else (None, "empty")


def _jwt_expiry(token: str) -> datetime | None:
    """Expiry of a JWT-shaped credential; opaque credentials have none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.fromtimestamp(float(payload["exp"]), UTC)
    except (ValueError, KeyError, TypeError):
        return None


def file(ctx: Context) -> Outcome:
    path = ctx.state.credential_path
    if ctx.registration().registration is None:
        return skip("not registered; no credential to check")
    try:
        st = path.stat()
    except FileNotFoundError:
        return fail(
            f"the worker credential {path} is missing",
            "re-register: outpost worker register --force --url URL --key KEY --group NAME",
        )
    except OSError as exc:
        return fail(f"cannot stat {path}: {exc}", "run diagnose as the agent's user or root")
    mode = stat.S_IMODE(st.st_mode)
    evidence: dict[str, object] = {"path": str(path), "mode": f"{mode:04o}", "owner_uid": st.st_uid}
    value, problem = _read(ctx)
    if problem == "permission denied":
        return fail(
            f"cannot read {path} (owner uid {st.st_uid}, mode {mode:04o})",
            "run diagnose as the agent's user or as root",
            evidence=evidence,
        )
    if value is None:
        return fail(
            f"the worker credential {path} is {problem}",
            "re-register: outpost worker register --force --url URL --key KEY --group NAME",
            evidence=evidence,
        )
    if mode & 0o077:
        return fail(
            f"{path} is readable by other users (mode {mode:04o})",
            f"chmod 600 {path}; then rotate the credential (re-register) if others may have read it",
            evidence=evidence,
        )
    pid = ctx.agent_pid()
    agent_uid = _proc_uid(pid) if pid else None
    evidence["agent_uid"] = agent_uid
    if agent_uid is not None and agent_uid not in (0, st.st_uid):
        return fail(
            f"{path} belongs to uid {st.st_uid} but the agent (pid {pid}) runs as uid {agent_uid}",
            f"chown {agent_uid} {path} (and the state directory)",
            evidence=evidence,
        )
    expiry = _jwt_expiry(value)
    if expiry is not None:
        evidence["expires_at"] = expiry.isoformat()
        if expiry <= datetime.now(UTC):
            return fail(
                f"the worker credential expired at {expiry.isoformat()}",
                "re-register the worker to get a new credential",
                evidence=evidence,
            )
    expires = f", expires {expiry.isoformat()}" if expiry else ", no expiry"
    return ok(f"present, mode {mode:04o}, owner uid {st.st_uid}{expires}", evidence=evidence)


def accepted(ctx: Context) -> Outcome:
    info = ctx.registration()
    reg = info.registration
    if reg is None:
        return skip("not registered; no credential to present")
    value, problem = _read(ctx)
    if value is None:
        return skip(f"no readable credential ({problem}; see credential.file)")
    if not ctx.server_url:
        return skip("no server URL")
    url = ctx.server_url
    command = f'curl -sS -H "Authorization: Bearer $(sudo cat {ctx.state.credential_path})" {url}{contract.AGENT_SELF}'
    elsewhere = ""
    if ctx.options.url and not same_server(ctx.options.url, reg.url):
        elsewhere = f"; this worker is registered to {reg.url}, not to this server"
    probe = ctx.http("GET", contract.AGENT_SELF, token=value)
    evidence: dict[str, object] = {"url": probe.url, "status": probe.status}
    if probe.error:
        return skip(f"no answer ({probe.error}; see app.health)", evidence=evidence, command=command)
    if not probe.is_outpost:
        return skip(
            f"the answer is not from Outpost (HTTP {probe.status}; see app.health)", evidence=evidence, command=command
        )
    if probe.status in (401, 403):
        return fail(
            f"the server rejected this worker's credential (HTTP {probe.status}){elsewhere}",
            "the worker was removed or its credential rotated: re-register with "
            f"outpost worker register --force --url {url} --key KEY --group {reg.group}",
            evidence=evidence,
            command=command,
        )
    if probe.status == 404:
        return fail(
            f"{contract.AGENT_SELF} not found (HTTP 404): not an Outpost server, or too old",
            "upgrade the server or check the URL",
            evidence=evidence,
            command=command,
        )
    body = probe.json()
    if probe.status != 200 or not isinstance(body, dict):
        return fail(
            f"unexpected answer to the authenticated call: HTTP {probe.status}",
            "check the server's logs",
            evidence=evidence,
            command=command,
        )
    evidence.update({k: body.get(k) for k in ("worker_id", "name", "group")})
    if body.get("worker_id") != reg.worker_id:
        return fail(
            f"the server knows this credential as worker {body.get('worker_id')}, but the registration says "
            f"{reg.worker_id}{elsewhere}",
            "the state directory mixes two registrations: re-register this machine",
            evidence=evidence,
            command=command,
        )
    if body.get("group") and reg.group and body.get("group") != reg.group:
        return warn(
            f"accepted, but the server puts worker {body.get('name')} in group {body.get('group')}, "
            f"the registration says {reg.group}",
            "the worker was moved on the server: re-register to refresh the local registration",
            evidence=evidence,
            command=command,
        )
    expires = body.get("credential_expires_at")
    suffix = f", credential expires {expires}" if expires else ""
    return ok(
        f"accepted as worker {body.get('name')} ({body.get('worker_id')}) in group {body.get('group')}{suffix}",
        evidence=evidence,
        command=command,
    )


CHECKS = [
    CheckSpec("credential.file", "Worker credential on disk", file),
    CheckSpec("credential.accepted", "Worker credential accepted", accepted),
]
