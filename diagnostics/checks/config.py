"""Run context and configuration: who runs diagnose, the state directory, the registration."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from diagnostics.checks import CheckSpec
from diagnostics.context import Context, same_server, split_url
from diagnostics.model import Outcome, fail, ok, skip, warn


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def user(ctx: Context) -> Outcome:
    uid = os.geteuid()
    evidence = {"uid": uid, "user": _user(uid), "state_dir": str(ctx.state_dir)}
    who = "root" if uid == 0 else f"user {_user(uid)} (uid {uid})"
    try:
        owner = ctx.state_dir.stat().st_uid
    except OSError:
        return ok(f"running as {who}", evidence=evidence)
    evidence["state_dir_owner"] = _user(owner)
    if uid not in (0, owner):
        return warn(
            f"running as {who}, but the agent's state belongs to {_user(owner)}",
            f"run as the agent's user: sudo -u {_user(owner)} outpost diagnose (or as root)",
            evidence=evidence,
        )
    return ok(f"running as {who}", evidence=evidence)


def state_dir(ctx: Context) -> Outcome:
    path = ctx.state_dir
    evidence: dict[str, object] = {"path": str(path)}
    if not path.exists():
        if ctx.options.url or ctx.options.azure_region:
            return skip(f"no agent state at {path}; checking the given server only", evidence=evidence)
        return fail(
            f"no agent state at {path}: this machine is not registered",
            "register it: outpost worker register --url URL --key KEY --group NAME; "
            "or pass --state-dir / OUTPOST_STATE_DIR if the agent keeps its state elsewhere, "
            "or --url to check a server",
            evidence=evidence,
        )
    if not path.is_dir():
        return fail(f"{path} is not a directory", "point --state-dir at the agent's state directory", evidence=evidence)
    mode = stat.S_IMODE(path.stat().st_mode)
    evidence["mode"] = f"{mode:04o}"
    if not os.access(path, os.R_OK | os.X_OK):
        return fail(
            f"cannot read the state directory {path} (mode {mode:04o})",
            "run diagnose as the agent's user or as root",
            evidence=evidence,
        )
    if mode & 0o077:
        return warn(
            f"state directory {path} is open to other users (mode {mode:04o})",
            f"chmod 700 {path}",
            evidence=evidence,
        )
    return ok(f"state directory {path} is readable (mode {mode:04o})", evidence=evidence)


def registration(ctx: Context) -> Outcome:
    info = ctx.registration()
    path = ctx.state.registration_path
    if info.registration is None:
        if ctx.options.url or ctx.options.azure_region:
            return skip(f"not registered ({info.error}); checking the given server only")
        return fail(
            f"not registered: {info.error}",
            "register: outpost worker register --url URL --key KEY --group NAME",
            command=f"cat {path}",
        )
    reg = info.registration
    evidence = {
        "url": reg.url,
        "worker_id": reg.worker_id,
        "name": reg.name,
        "group": reg.group,
        "ca_file": reg.ca_file,
    }
    missing = [k for k in ("url", "worker_id", "group") if not isinstance(getattr(reg, k), str) or not getattr(reg, k)]
    if missing:
        return fail(
            f"{path} lacks {', '.join(missing)}",
            "re-register: outpost worker register --force --url URL --key KEY --group NAME",
            evidence=evidence,
        )
    try:
        scheme, _, _ = split_url(reg.url)
    except ValueError as exc:
        return fail(f"registered server URL is unusable: {exc}", "re-register with an https:// URL", evidence=evidence)
    if reg.ca_file and not Path(reg.ca_file).is_file():
        return fail(
            f"the registered CA file {reg.ca_file} is missing",
            f"restore {reg.ca_file} or re-register with --ca-file pointing at the server's CA bundle",
            evidence=evidence,
        )
    who = f"worker {reg.name or reg.worker_id} ({reg.worker_id}) in group {reg.group}"
    if ctx.options.url and not same_server(ctx.options.url, reg.url):
        return warn(
            f"{who} is registered to {reg.url}, not to {ctx.options.url} (checking {ctx.options.url})",
            f"to move it: outpost worker register --force --url {ctx.options.url} --key KEY --group {reg.group}; "
            "or drop --url to check the registered server",
            evidence=evidence,
        )
    if scheme != "https":
        return warn(
            f"{who} talks plain HTTP to {reg.url}: its credential crosses the network unencrypted",
            "serve Outpost over HTTPS and re-register with the https:// URL",
            evidence=evidence,
        )
    return ok(f"{who}, server {reg.url}", evidence=evidence)


CHECKS = [
    CheckSpec("config.user", "Run context", user),
    CheckSpec("config.state_dir", "State directory", state_dir),
    CheckSpec("config.registration", "Registration", registration),
]
