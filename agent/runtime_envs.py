"""Runtime environments on the worker: build a job's venv on first use, cache it by content hash.

A job's `runtime` (contract.RuntimeSpec) names a Python version and requirement lines.
The environment is ``<state-dir>/runtimes/<hash>``, where the hash covers the interpreter
(its real path and version) and the sorted requirement lines: the same package set under
another name, or again after a change was undone, reuses what was built. A build runs
``python -m venv`` (no system site-packages: nothing of the machine's or the agent's is
visible) and then pip with the index and find-links of this worker's configuration only;
pip's output goes to the job's Verbose stream, and a failed build fails the job with pip's
reason. Builds of one hash are serialised by a lock file, so concurrent jobs build once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.runtime import RuntimeRefusal, runbook_environment
from outpost.contract import RuntimeSpec

BUILD_TIMEOUT_S = 900.0
META_FILE = "outpost-runtime.json"  # written last: a directory without it is not a finished build
TAIL_LINES = 8  # of pip's output, in a failed build's reason


@dataclass
class PipConfig:
    """Where this worker's pip finds packages (`outpost worker run --pip-*`)."""

    index_url: str | None = None
    find_links: list[str] = field(default_factory=list)
    no_index: bool = False

    def args(self) -> list[str]:
        out = ["--no-input", "--disable-pip-version-check"]
        if self.no_index:
            out.append("--no-index")
        elif self.index_url:
            out += ["--index-url", self.index_url]
        for link in self.find_links:
            out += ["--find-links", link]
        return out


def _version(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            env=runbook_environment(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class RuntimeCache:
    def __init__(self, root: Path, default_python: str | None, pip: PipConfig) -> None:
        self.root = root
        self.default_python = default_python
        self.pip = pip

    def base_python(self, spec: RuntimeSpec) -> str:
        """The interpreter the environment is built from: the worker's python3, or python<version>."""
        default = self.default_python
        if spec.python is None or (default is not None and _version(default) == spec.python):
            if default is None:
                raise RuntimeRefusal(f"runtime environment {spec.name}: no python3 on this worker (--python PATH)")
            return default
        found = shutil.which(f"python{spec.python}", path=runbook_environment().get("PATH", os.defpath))
        if found is None or _version(found) != spec.python:
            have = _version(default) if default else None
            raise RuntimeRefusal(
                f"runtime environment {spec.name} needs Python {spec.python}; this worker has "
                f"{'Python ' + have if have else 'no python3'} and no python{spec.python} on PATH"
            )
        return found

    def key(self, spec: RuntimeSpec, python: str) -> str:
        identity = {
            "python": os.path.realpath(python),
            "version": _version(python),
            "requirements": sorted(spec.requirements),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]

    def ensure(self, spec: RuntimeSpec, say: Callable[[str], None]) -> str:
        """The environment's python, built first if needed; `say` gets each line of the build's output."""
        base = self.base_python(spec)
        key = self.key(spec, base)
        target = self.root / key
        python = target / "bin" / "python"
        if (target / META_FILE).exists():
            say(f"runtime environment {spec.name}: using the cached build {key}")
            return str(python)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(self.root / f".{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another job may be building this same environment
            if (target / META_FILE).exists():
                say(f"runtime environment {spec.name}: using the build {key} another job just made")
                return str(python)
            self._build(spec, base, target, key, say)
        return str(python)

    def _build(self, spec: RuntimeSpec, base: str, target: Path, key: str, say: Callable[[str], None]) -> None:
        say(f"runtime environment {spec.name}: building {key} with {base} ({len(spec.requirements)} requirement(s))")
        shutil.rmtree(target, ignore_errors=True)  # an unfinished earlier build
        work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=self.root))
        started = time.monotonic()
        try:
            # The venv is made in place (its scripts name their own path). The agent's own pip installs into
            # it (`pip --python`): seeding pip into every venv costs ~15 s on a busy machine and leaves a pip
            # the runbook does not need. Without a pip of its own, the agent has the venv seeded with one.
            own_pip = importlib.util.find_spec("pip") is not None
            venv = [base, "-m", "venv", *(["--without-pip"] if own_pip else []), str(target)]
            self._run(venv, spec, "creating the venv", say, started)
            if spec.requirements:
                reqs = work / "requirements.txt"
                reqs.write_text("\n".join(spec.requirements) + "\n", encoding="utf-8")
                env_python = str(target / "bin" / "python")
                pip = [sys.executable, "-m", "pip", "--python", env_python] if own_pip else [env_python, "-m", "pip"]
                self._run([*pip, "install", *self.pip.args(), "-r", str(reqs)], spec, "pip install", say, started)
            meta = {
                "name": spec.name,
                "python": base,
                "requirements": spec.requirements,
                "built_at": datetime.now(UTC).isoformat(),
            }
            (target / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        say(f"runtime environment {spec.name}: built {key} in {time.monotonic() - started:.1f} s")

    @staticmethod
    def _run(argv: list[str], spec: RuntimeSpec, what: str, say: Callable[[str], None], started: float) -> None:
        env = {**runbook_environment(), "PIP_NO_INPUT": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        tail: list[str] = []
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True
        ) as proc:
            # A hung pip (a dead index, say) is killed at the deadline even while it prints nothing.
            timer = threading.Timer(max(1.0, BUILD_TIMEOUT_S - (time.monotonic() - started)), proc.kill)
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = line.rstrip()
                    if line:
                        say(line)
                        tail = [*tail[-(TAIL_LINES - 1) :], line]
                code = proc.wait()
            finally:
                timer.cancel()
        if time.monotonic() - started >= BUILD_TIMEOUT_S:
            raise RuntimeRefusal(
                f"runtime environment {spec.name}: the build took over {BUILD_TIMEOUT_S:.0f} s ({what})"
            )
        if code != 0:
            errors = [t for t in tail if "error" in t.lower()] or tail
            raise RuntimeRefusal(f"runtime environment {spec.name}: {what} failed (exit {code}): {' | '.join(errors)}")

    def held(self) -> list[str]:
        """`name:hash` of every finished build here, for the Heartbeat row."""
        out = []
        with contextlib.suppress(OSError):
            for entry in sorted(self.root.iterdir()):
                try:
                    meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                out.append(f"{meta.get('name')}:{entry.name}")
        return out
