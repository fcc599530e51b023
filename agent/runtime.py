"""What the agent checks and prepares before a runbook starts: signature, Python 3, RunAs user.

Each check returns a readable failure reason instead of raising, so a job that cannot
run ends Failed with that reason and nothing is started.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SIGNATURE_ERROR = "InvalidRunbookSignature"
_BEGIN = "-----BEGIN PGP SIGNED MESSAGE-----"
_SIG_END = "-----END PGP SIGNATURE-----"
GPG_TIMEOUT_S = 30
log = logging.getLogger("outpost.agent")


class RuntimeRefusal(Exception):
    """The job must not run; the message is its status reason."""


# -- signing -----------------------------------------------------------------------------------


def trusted_key_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".asc", ".gpg", ".pub", ".key"))
    elif path.is_file():
        files = [path]
    else:
        raise RuntimeRefusal(f"{SIGNATURE_ERROR}: the trusted keys {path} do not exist on this worker")
    if not files:
        raise RuntimeRefusal(f"{SIGNATURE_ERROR}: no key files (*.asc, *.gpg, *.pub, *.key) in {path}")
    return files


def _gpg(home: str, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    gpg = shutil.which("gpg") or shutil.which("gpg2")
    if gpg is None:
        raise RuntimeRefusal(f"{SIGNATURE_ERROR}: gpg is not installed on this worker (apt-get install gnupg)")
    return subprocess.run(
        [gpg, "--homedir", home, "--batch", "--no-tty", "--no-autostart", "--trust-model", "always", *args],
        input=data,
        capture_output=True,
        timeout=GPG_TIMEOUT_S,
        env={**os.environ, "GNUPGHOME": home, "LC_ALL": "C"},
    )


def verify_clearsigned(content: str, trusted: Path, runbook: str) -> str:
    """Verify a GPG clear-signed runbook against only the trusted keys; return the signed text."""
    stripped = content.strip()
    if not stripped.startswith(_BEGIN):
        raise RuntimeRefusal(
            f"{SIGNATURE_ERROR}: runbook {runbook} is not signed; this worker runs only runbooks clear-signed "
            "by a trusted key (gpg --clearsign)"
        )
    if stripped.count(_BEGIN) != 1 or not stripped.endswith(_SIG_END):
        raise RuntimeRefusal(f"{SIGNATURE_ERROR}: runbook {runbook} must be exactly one clear-signed block")
    keys = trusted_key_files(trusted)
    home = tempfile.mkdtemp(prefix="outpost-gpg-")
    try:
        os.chmod(home, 0o700)
        for key in keys:
            imported = _gpg(home, "--import", str(key))
            if imported.returncode != 0:
                raise RuntimeRefusal(f"{SIGNATURE_ERROR}: cannot import the trusted key {key.name}")
        out = Path(home) / "verified"
        result = _gpg(home, "--status-fd", "1", "--output", str(out), "--decrypt", data=content.encode("utf-8"))
        status = result.stdout.decode("utf-8", "replace").splitlines()
        good = any(line.startswith("[GNUPG:] GOODSIG ") for line in status) and any(
            line.startswith("[GNUPG:] VALIDSIG ") for line in status
        )
        bad = [line for line in status if line.split()[1:2] and line.split()[1] in ("BADSIG", "ERRSIG", "NO_PUBKEY")]
        if result.returncode != 0 or not good or bad:
            why = "no trusted key made this signature" if any("NO_PUBKEY" in b for b in bad) else "bad signature"
            if any("BADSIG" in b for b in bad):
                why = "bad signature: the runbook was changed after signing"
            raise RuntimeRefusal(f"{SIGNATURE_ERROR}: runbook {runbook}: {why}")
        return out.read_bytes().decode("utf-8")
    except subprocess.TimeoutExpired:
        raise RuntimeRefusal(f"{SIGNATURE_ERROR}: gpg did not answer within {GPG_TIMEOUT_S} s") from None
    finally:
        shutil.rmtree(home, ignore_errors=True)


def unwrap_clearsigned(content: str) -> str:
    """The text of a clear-signed runbook, unverified: for workers that do not enforce signatures."""
    stripped = content.strip()
    if not stripped.startswith(_BEGIN) or "-----BEGIN PGP SIGNATURE-----" not in stripped:
        return content
    lines = stripped.splitlines()[1:]
    while lines and lines[0].strip():  # armor headers (Hash: ...) end at the first empty line
        lines.pop(0)
    body: list[str] = []
    for line in lines[1:]:
        if line.startswith("-----BEGIN PGP SIGNATURE-----"):
            break
        body.append(line[2:] if line.startswith("- ") else line)
    return "\n".join(body) + "\n"


# -- Python 2 ----------------------------------------------------------------------------------

_PY2_MARKERS = [
    re.compile(r"^\s*print\s+[^\s(=.,)][^=]*$", re.M),  # print "x"
    re.compile(r"^\s*print\s*$", re.M),
    re.compile(r"except\s+[\w.]+\s*,\s*\w+\s*:"),  # except E, e:
    re.compile(r"^\s*raise\s+[\w.]+\s*,", re.M),  # raise E, "msg"
    re.compile(r"^\s*exec\s+['\"]", re.M),
    re.compile(r"\b\d+L\b"),  # long literals
    re.compile(r"\bur['\"]"),
    re.compile(r"<>"),
    re.compile(r"`[^`\n]+`"),
]


def check_python3(content: str, runbook: str) -> None:
    """Fail fast, before anything starts, on a runbook that does not parse as Python 3."""
    try:
        compile(content, f"{runbook}.py", "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: {exc.msg}" if exc.lineno else str(exc.msg)
        if any(p.search(content) for p in _PY2_MARKERS):
            raise RuntimeRefusal(
                f"Python 2 is not supported: runbook {runbook} does not parse as Python 3 ({where}); "
                "port it to Python 3 (e.g. print(...), 'except E as e')"
            ) from None
        raise RuntimeRefusal(f"runbook {runbook} has a Python syntax error ({where})") from None
    except ValueError as exc:  # e.g. NUL bytes
        raise RuntimeRefusal(f"runbook {runbook} cannot be compiled: {exc}") from None


# -- RunAs -------------------------------------------------------------------------------------


@dataclass
class RunAsUser:
    name: str
    uid: int
    gid: int
    groups: list[int]
    home: str
    shell: str

    def env(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell or "/bin/sh"}

    def setpriv_args(self) -> list[str]:
        """util-linux setpriv options that become this user (its groups as resolved, no NSS lookup per job)."""
        groups = ",".join(str(g) for g in dict.fromkeys(self.groups))
        return [f"--reuid={self.uid}", f"--regid={self.gid}", f"--groups={groups}" if groups else "--clear-groups"]

    def can_execute(self, path: str) -> bool:
        """Whether this user may run `path` (every directory on the way searchable, the file executable)."""
        return self.why_cannot_execute(path) is None

    def why_cannot_execute(self, path: str) -> str | None:
        """None if this user may run `path`, else the first thing in the way, readably.

        Both the path as given and its target are walked: a symlink in a directory the user cannot
        search is as unusable as a target there (a root-only pyenv under /root, mode 0700).
        """
        real = os.path.realpath(path)
        given = os.path.abspath(path)
        steps = [*(str(d) for d in reversed(Path(given).parents)), *(str(d) for d in reversed(Path(real).parents))]
        for p in [*dict.fromkeys(steps), real]:
            try:
                st = os.stat(p)
            except OSError as exc:
                return f"{p}: {exc.strerror or exc}"
            mode = stat.S_IMODE(st.st_mode)
            if st.st_uid == self.uid:
                ok = mode & 0o100
            elif st.st_gid in self.groups or st.st_gid == self.gid:
                ok = mode & 0o010
            else:
                ok = mode & 0o001
            if not ok:
                owner = _owner(st.st_uid)
                what = "directory" if stat.S_ISDIR(st.st_mode) else "file"
                need = "search" if what == "directory" else "execute"
                return f"the {what} {p} is mode {mode:04o} (owner {owner}): no {need} permission for user {self.name!r}"
        return None


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def resolve_run_as(name: str, credential: str | None, worker: str) -> RunAsUser:
    source = f" (RunAs credential {credential!r})" if credential else ""
    if os.geteuid() != 0:
        raise RuntimeRefusal(
            f"RunAs user {name!r}{source} needs the agent on {worker} to run as root; "
            "it runs as an unprivileged user, so it cannot switch users"
        )
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise RuntimeRefusal(f"RunAs user {name!r}{source} does not exist on worker {worker}") from None
    if pw.pw_uid == 0:  # root reads everything, the worker's credential included
        raise RuntimeRefusal(
            f"RunAs user {name!r}{source} is root (uid 0) on worker {worker}: a runbook running as root could "
            "read the worker's credential; name an unprivileged user (and grant it what it needs with sudo rules)"
        )
    groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
    return RunAsUser(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir, pw.pw_shell)


# -- the runbook's environment ---------------------------------------------------------------

# Inherited from the agent, never handed on: the agent's own configuration and secrets
# (OUTPOST_REGISTRATION_KEY, OUTPOST_TOKEN, OUTPOST_STATE_DIR, ...) and its virtualenv.
_AGENT_ONLY_PREFIX = "OUTPOST_"
_AGENT_ONLY = frozenset({"VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT", "PYTHONHOME"})


_BASE_ENV: dict[str, str] | None = None


def runbook_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's environment minus what is the agent's alone; its venv is taken off PATH.

    The agent's own environment does not change while it runs: it is scrubbed once, and
    each job gets a copy.
    """
    global _BASE_ENV
    if environ is None:
        if _BASE_ENV is None:
            _BASE_ENV = runbook_environment(dict(os.environ))
        return dict(_BASE_ENV)
    source = dict(environ)
    venvs = {p for p in (source.get("VIRTUAL_ENV"), sys.prefix if sys.prefix != sys.base_prefix else None) if p}
    env = {k: v for k, v in source.items() if not k.startswith(_AGENT_ONLY_PREFIX) and k not in _AGENT_ONLY}
    if "PATH" in env and venvs:
        bins = {os.path.realpath(os.path.join(v, "bin")) for v in venvs}
        env["PATH"] = os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if d and os.path.realpath(d) not in bins)
    return env


DEFAULT_RUNBOOK_USER = "outpost-runbook"
CREATE_RUNBOOK_USER = f"useradd --system --no-create-home --shell /usr/sbin/nologin {DEFAULT_RUNBOOK_USER}"


def default_runbook_user(requested: str | None, worker: str) -> RunAsUser | None:
    """Who runs a job that has no RunAs: None for the agent's own user (a non-root agent only).

    A runbook must never read the worker's credential (`<state-dir>/credential`, 0600): a
    root agent therefore runs such jobs as `requested`, or as the `outpost-runbook` user
    (created by packaging/install.sh), and refuses to start without one rather than run
    runbooks as root. A non-root agent cannot switch users: its jobs run as itself.
    Raises RuntimeRefusal, with the fix, for a user that cannot be used.
    """
    if os.geteuid() != 0:
        own = pwd.getpwuid(os.geteuid()).pw_name
        if requested is None or requested == own:
            return None
        return resolve_run_as(requested, None, worker)  # refuses: switching users needs root
    if requested is None:
        try:
            pwd.getpwnam(DEFAULT_RUNBOOK_USER)
        except KeyError:
            raise RuntimeRefusal(
                f"as root, the agent runs runbooks without RunAs as an unprivileged user so they cannot read this "
                f"worker's credential, and the {DEFAULT_RUNBOOK_USER} user does not exist: create it "
                f"({CREATE_RUNBOOK_USER}; packaging/install.sh does) or pass --runbook-user NAME"
            ) from None
        requested = DEFAULT_RUNBOOK_USER
    return resolve_run_as(requested, None, worker)


_PROBE = "import sys; print(sys.executable); print(sys.prefix)"


def _probe(python: str, user: RunAsUser | None = None) -> tuple[str, str] | None:
    """(sys.executable, sys.prefix) of `python`, run as a runbook would be (as `user`); None if it does not run."""
    switch = {} if user is None else {"user": user.uid, "group": user.gid, "extra_groups": user.groups, "cwd": "/"}
    try:
        out = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=runbook_environment(),
            **switch,  # type: ignore[arg-type]
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[0].strip(), out[1].strip()) if len(out) >= 2 else None


def python3_candidates() -> list[str]:
    """Where the machine's python3 is looked for: the first on the runbook's PATH, then the usual places."""
    path = runbook_environment().get("PATH", os.defpath)
    found = [shutil.which("python3", path=path), "/usr/bin/python3", "/usr/local/bin/python3"]
    return list(dict.fromkeys(c for c in found if c))


def resolve_python3(preferred: str | None = None, user: RunAsUser | None = None) -> str | None:
    """The interpreter Python runbooks run with, found once at agent start (None: there is none).

    `preferred` (`--python PATH`), else the machine's own `python3`: the first on the runbook's PATH
    (the agent's virtualenv taken off it), then /usr/bin/python3. Never the agent's own virtualenv,
    whose packages (Outpost's, FastAPI, ...) a runbook must not see; OSError for a `preferred` that
    is that, or not a Python at all. PATH often holds a wrapper (pyenv shims re-resolve the version on
    every call, ~100 ms per job); the interpreter's own sys.executable skips it.

    With `user` (a root agent's runbook user) only an interpreter that user can run counts, tried
    as that user: a root-only pyenv under /root (0700) is skipped for the next candidate, and a
    `preferred` one it cannot run is an OSError naming the path, the user and what is in the way.
    """
    own_venv = os.path.realpath(sys.prefix) if sys.prefix != sys.base_prefix else None
    candidates = [preferred] if preferred else python3_candidates()
    skipped: list[str] = []
    for candidate in candidates:
        if not os.access(candidate, os.X_OK):
            continue
        in_own_venv = own_venv is not None and os.path.realpath(os.path.dirname(os.path.abspath(candidate))) == (
            os.path.join(own_venv, "bin")
        )
        if in_own_venv and preferred:  # said before whether the runbook user could run it
            raise OSError(f"--python {preferred} is the agent's own virtualenv; runbooks must not run in it")
        why = user.why_cannot_execute(candidate) if user is not None else None
        found = _probe(candidate, user) if why is None else None
        if found is not None and user is not None and os.path.isabs(found[0]):
            why = user.why_cannot_execute(found[0])  # a wrapper that runs a root-only interpreter
        if why is None and found is None and user is not None:
            why = f"it does not run as user {user.name!r}"
        if why is not None:
            if preferred:
                raise OSError(f"--python {preferred}: the runbook user {user.name!r} cannot run it: {why}")  # type: ignore[union-attr]
            skipped.append(f"{candidate} ({why})")
            continue
        if found is None:
            continue
        executable, prefix = found
        if own_venv is not None and os.path.realpath(prefix) == own_venv:
            if preferred:
                raise OSError(f"--python {preferred} is the agent's own virtualenv; runbooks must not run in it")
            continue
        if skipped:
            log.warning("python3 for runbooks: skipped %s", "; ".join(skipped))
        return executable if os.path.isabs(executable) else candidate
    if preferred:
        raise OSError(f"--python {preferred} is not a Python interpreter this agent can run")
    if skipped:
        log.warning("no python3 the runbook user can run: %s", "; ".join(skipped))
    return None


def runbook_pythonpath(sdk_dir: Path, inherited: str | None) -> str:
    """PYTHONPATH of a Python runbook: the automationassets SDK, then the agent's own PYTHONPATH
    minus the directory Outpost itself is imported from (a source checkout)."""
    own = os.path.realpath(Path(__file__).resolve().parent.parent)
    keep = [p for p in (inherited or "").split(os.pathsep) if p and os.path.realpath(p) != own]
    return os.pathsep.join([str(sdk_dir), *keep])


def python_for(user: RunAsUser | None, preferred: str | None, explicit: bool = False) -> str | None:
    """An interpreter the job's user can run: `preferred` (the one chosen at start), else the first usable python3.

    An `explicit` choice (`--python PATH`) is never swapped for another: a user who cannot run it
    fails the job saying so. RuntimeRefusal, naming each path tried and what is in its way, when
    there is none.
    """
    if user is None:
        return preferred
    if preferred and explicit:
        why = user.why_cannot_execute(preferred)
        if why is not None:
            raise RuntimeRefusal(f"--python {preferred}: user {user.name!r} cannot run it: {why}")
        return preferred
    tried: list[str] = []
    for candidate in dict.fromkeys([*([preferred] if preferred else []), *python3_candidates()]):
        if not os.path.exists(candidate):
            continue
        why = user.why_cannot_execute(candidate)
        if why is None:
            return candidate
        tried.append(f"{candidate}: {why}")
    detail = "; ".join(tried) if tried else "there is no python3 on this worker"
    raise RuntimeRefusal(f"user {user.name!r} cannot execute any python3 on this worker ({detail}); pass --python PATH")


# -- hiding the credential from a non-root agent's runbooks ---------------------------------------

# Run in the first (unprivileged) user namespace, where the process is root over its own mount namespace:
# keep a handle on each directory to leave visible, cover the state dir with an empty tmpfs, bind the kept
# ones back at their paths (through /proc/self/fd: their paths now lead into the tmpfs), then map back to
# the agent's own uid in a nested user namespace and exec the runbook. Every step execs: the runbook is
# still the process the agent started (its pid, process group, PDEATHSIG and wait4 rusage).
_MASK_SCRIPT = """set -e
{opens}
mount -t tmpfs -o mode=0700,size=64k outpost-hidden {hidden}
{binds}
cd {workdir}
exec {unshare} -U --map-user={uid} --map-group={gid} -- "$@"
"""
MASK_PROBE_TIMEOUT_S = 10


@dataclass(frozen=True)
class CredentialMask:
    """A non-root agent's runbooks run with its state dir (credential, registration) under an empty tmpfs.

    Private to the runbook's mount namespace (util-linux `unshare`, unprivileged user namespaces):
    the job's work dir, and the runtime environments when they live in the state dir, stay visible.
    """

    unshare: str
    hidden: Path
    keep: tuple[Path, ...] = ()

    def wrap(self, argv: list[str], workdir: Path) -> list[str]:
        quote = shlex.quote
        kept = [p for p in dict.fromkeys([workdir, *self.keep]) if p.is_relative_to(self.hidden) and p.is_dir()]
        opens = " ".join(f"{3 + i}<{quote(str(p))}" for i, p in enumerate(kept))
        binds = "\n".join(
            f"mkdir -p {quote(str(p))}\nmount --no-canonicalize --bind /proc/self/fd/{3 + i} {quote(str(p))}"
            for i, p in enumerate(kept)
        )
        script = _MASK_SCRIPT.format(
            opens=f"exec {opens}" if opens else "",
            hidden=quote(str(self.hidden)),
            binds=binds,
            workdir=quote(str(workdir)),
            unshare=quote(self.unshare),
            uid=os.geteuid(),
            gid=os.getegid(),
        )
        return [self.unshare, "-Urm", "--", "/bin/sh", "-c", script, "outpost-hide-credential", *argv]


def detect_credential_mask(
    state_dir: Path, work_root: Path, keep: tuple[Path, ...] = ()
) -> tuple[CredentialMask | None, str]:
    """For a non-root agent: a CredentialMask if this machine supports it (tried once, at start), and why."""
    if os.geteuid() == 0:
        return None, "the agent is root: runbooks run as an unprivileged runbook user instead"
    unshare = shutil.which("unshare") or shutil.which("unshare", path="/usr/bin:/bin")
    if unshare is None or shutil.which("mount") is None:
        return None, "util-linux unshare/mount not found"
    mask = CredentialMask(unshare, state_dir.absolute(), tuple(p.absolute() for p in keep))
    work_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    probe = work_root.absolute() / ".hide-probe"
    probe.mkdir(exist_ok=True, mode=0o700)
    # Not `true`: the probe checks the state dir really is empty and the work dir still writable.
    check = f'test -z "$(ls -A {shlex.quote(str(mask.hidden))} | grep -vx work)" && touch ./ok'
    try:
        result = subprocess.run(
            mask.wrap(["/bin/sh", "-c", check], probe),
            cwd=probe,
            capture_output=True,
            text=True,
            timeout=MASK_PROBE_TIMEOUT_S,
            env=runbook_environment(),
        )
        ok = result.returncode == 0 and (probe / "ok").exists()
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError) as exc:
        ok, why = False, str(exc)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if not ok:
        return None, f"a private mount namespace is not available here ({why})"
    return mask, "an empty tmpfs covers the state dir in each runbook's private mount namespace"
