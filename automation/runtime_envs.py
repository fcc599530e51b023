"""Named runtime environments: a Python version and a package set that Python runbooks run in.

An admin defines one (`outpost runtime create NAME --python 3.11 --package requests==2.32.3`,
or `PUT /api/v1/runtimes/NAME`); a runbook names its environment, and a job can name
another. The job carries the environment as it was when the job was created (like its
runbook content); the worker builds it on first use (a venv plus pip, cached by content
hash, agent/runtime_envs.py). Which package index pip uses is the worker's configuration,
never the environment's: a requirement line cannot carry pip options.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import Connection, Row, bindparam
from sqlalchemy import select as core_select
from sqlmodel import func, select

from automation.context import ControlPlane
from automation.errors import BadRequest, Conflict, NotFound
from automation.models import Runbook, RuntimeEnvironment, utcnow
from automation.params import NamePath
from automation.roles import Role
from outpost import contract as c
from outpost.contract import NAME_RE, PATTERN_HINTS, RunbookType, RuntimeSpec
from outpost.messages import Name

if TYPE_CHECKING:  # automation.auth imports automation.workers, which imports this
    from automation.auth import RoleChecks

MAX_REQUIREMENTS = 500
MAX_REQUIREMENT_CHARS = 300
PYTHON_PATTERN = r"^3\.[0-9]{1,2}$"  # the model's (JSON Schema: `$` is the end)
# A PEP 508 requirement as pip reads it from a file: a project name, extras, a version
# specifier and markers. No options (-e, -r, --index-url ...), no URLs or paths.
# No URL either: nothing after the name may hold a ':' (nor a '#', a comment's start in a file).
# RuntimeBody publishes both patterns: one requirement (`packages`) and a whole file (`requirements`).
REQUIREMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]+\])?\s*([<>=!~;(][^\n:#]*)?$"
_REQUIREMENT_RE = re.compile(REQUIREMENT_PATTERN[:-1] + r"\Z")
Requirement = Annotated[str, StringConstraints(pattern=REQUIREMENT_PATTERN, max_length=MAX_REQUIREMENT_CHARS)]
# A file's line: blank, a comment, or a requirement (bounded to fit MAX_REQUIREMENT_CHARS) with an
# optional " # comment"; each such line is one requirement_lines accepts.
_FILE_REQUIREMENT = (
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[[A-Za-z0-9._, \t-]{1,60}\])?[ \t]{0,20}([<>=!~;(][^\n:#]{0,100})?"
)
_FILE_LINE = rf"[ \t]*(#[^\n]*|{_FILE_REQUIREMENT}( #[^\n]*)?)?[ \t\r]*"
REQUIREMENTS_FILE_PATTERN = rf"^({_FILE_LINE}\n)*{_FILE_LINE}$"
_NOT_A_REQUIREMENT = (
    "not a package requirement such as 'requests==2.32.3': pip options are not allowed (the package index and "
    "find-links are each worker's configuration: outpost worker run --pip-index-url/--pip-find-links), nor URLs"
)
PATTERN_HINTS.update(
    {
        PYTHON_PATTERN: "python must be a version such as 3.11",
        REQUIREMENT_PATTERN: _NOT_A_REQUIREMENT,
        REQUIREMENTS_FILE_PATTERN: f"each line a # comment or a requirement, {_NOT_A_REQUIREMENT}",
    }
)

_table = RuntimeEnvironment.__table__  # type: ignore[attr-defined]
_BY_NAME = core_select(_table).where(_table.c.name == bindparam("name"))


class RuntimeBody(BaseModel):
    python: str | None = Field(
        default=None, pattern=PYTHON_PATTERN, description='a Python version such as "3.11"; null: the worker\'s python3'
    )
    packages: list[Requirement] = Field(
        default_factory=list, max_length=MAX_REQUIREMENTS, description='requirement lines, e.g. "requests==2.32.3"'
    )
    requirements: str = Field(
        default="",
        pattern=REQUIREMENTS_FILE_PATTERN,
        description="a requirements.txt (requirements only, no pip options)",
    )
    description: str = ""


class RunbookRuntimeBody(BaseModel):
    environment: Name | None = Field(description="a runtime environment's name; null: the worker's python3")


def requirement_lines(packages: list[str], requirements: str) -> list[str]:
    """The environment's requirement lines, checked (BadRequest names the first bad one)."""
    lines = [p.strip() for p in packages]
    for raw in requirements.split("\n"):  # lines as REQUIREMENTS_FILE_PATTERN reads them
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    if len(lines) > MAX_REQUIREMENTS:
        raise BadRequest(f"too many requirements ({len(lines)}); at most {MAX_REQUIREMENTS}")
    for line in lines:
        if line.startswith("-"):
            raise BadRequest(
                f"requirement {line!r}: pip options are not allowed; the package index and find-links are each "
                "worker's configuration (outpost worker run --pip-index-url/--pip-find-links)"
            )
        if len(line) > MAX_REQUIREMENT_CHARS or not _REQUIREMENT_RE.match(line):
            raise BadRequest(f"requirement {line!r} is not a package requirement such as 'requests==2.32.3'")
    return list(dict.fromkeys(lines))


def _view(env: RuntimeEnvironment | Row[Any]) -> dict[str, Any]:
    return {
        "name": env.name,
        "python": env.python,
        "requirements": env.requirements.splitlines(),
        "description": env.description,
        "created_at": env.created_at.isoformat(),
        "updated_at": env.updated_at.isoformat(),
    }


def put(cp: ControlPlane, name: str, body: RuntimeBody) -> tuple[dict[str, Any], bool]:
    """Create or replace an environment. -> (its view, created)."""
    if not NAME_RE.match(name):
        raise BadRequest(f"invalid runtime environment name {name!r}: letters, digits, '.', '_' or '-'")
    lines = requirement_lines(body.packages, body.requirements)
    with cp.session() as s:
        env = s.get(RuntimeEnvironment, name)
        created = env is None
        if env is None:
            env = RuntimeEnvironment(name=name)
        env.python = body.python
        env.requirements = "\n".join(lines)
        env.description = body.description[:512]
        env.updated_at = utcnow()
        s.add(env)
        s.commit()
        s.refresh(env)
        return _view(env), created


def show(cp: ControlPlane, name: str) -> dict[str, Any]:
    with cp.reading() as s:
        env = s.get(RuntimeEnvironment, name)
    if env is None:
        raise NotFound(f"runtime environment {name!r} does not exist")
    return _view(env)


def list_all(cp: ControlPlane) -> list[dict[str, Any]]:
    with cp.reading() as s:
        envs = s.exec(select(RuntimeEnvironment).order_by(RuntimeEnvironment.name)).all()
    return [_view(e) for e in envs]


def delete(cp: ControlPlane, name: str) -> None:
    with cp.session() as s:
        env = s.get(RuntimeEnvironment, name)
        if env is None:
            raise NotFound(f"runtime environment {name!r} does not exist")
        users = s.exec(select(func.count()).select_from(Runbook).where(Runbook.runtime_environment == name)).one()
        if users:
            raise Conflict(f"runtime environment {name!r} is used by {users} runbook(s); point them elsewhere first")
        s.delete(env)
        s.commit()


def set_runbook_runtime(cp: ControlPlane, runbook: str, environment: str | None) -> dict[str, Any]:
    with cp.session() as s:
        rb = s.exec(select(Runbook).where(Runbook.name == runbook)).first()
        if rb is None:
            raise NotFound(f"runbook {runbook!r} does not exist")
        if environment is not None:
            if s.get(RuntimeEnvironment, environment) is None:
                raise NotFound(f"runtime environment {environment!r} does not exist")
            if (rb.published_type or rb.runbook_type) != RunbookType.PYTHON3:
                raise BadRequest(f"runbook {runbook} is not a python3 runbook; runtime environments are for Python")
        rb.runtime_environment = environment
        s.add(rb)
        s.commit()
    return {"runbook": runbook, "runtime_environment": environment}


def snapshot(conn: Connection, rb: Row[Any], override: str | None) -> str | None:
    """The job's RuntimeSpec as JSON (inside job creation's transaction): the override's, else the runbook's."""
    name = override or rb.runtime_environment
    if name is None:
        return None
    if (rb.published_type or rb.runbook_type) != RunbookType.PYTHON3:
        raise BadRequest(f"runbook {rb.name} is not a python3 runbook; runtime environments are for Python")
    env = conn.execute(_BY_NAME, {"name": name}).first()
    if env is None:
        raise NotFound(f"runtime environment {name!r} does not exist")
    spec = RuntimeSpec(name=env.name, python=env.python, requirements=env.requirements.splitlines())
    return spec.model_dump_json()


def router(cp: ControlPlane, roles: RoleChecks) -> APIRouter:
    r = APIRouter(prefix=c.API, tags=["runtimes"])
    READ, ADMIN, AUTHOR = (Depends(roles[x]) for x in (Role.READER, Role.ADMIN, Role.AUTHOR))

    @r.get("/runtimes", dependencies=[READ])
    def list_runtimes() -> list[dict[str, Any]]:
        return list_all(cp)

    @r.get("/runtimes/{name}", dependencies=[READ])
    def show_runtime(name: NamePath) -> dict[str, Any]:
        return show(cp, name)

    @r.put(
        "/runtimes/{name}",
        dependencies=[ADMIN],
        responses={200: {"description": "replaced"}, 201: {"description": "created"}},
    )
    def put_runtime(name: NamePath, body: RuntimeBody, response: Response) -> dict[str, Any]:
        view, created = put(cp, name, body)
        response.status_code = 201 if created else 200
        return view

    @r.delete("/runtimes/{name}", status_code=204, dependencies=[ADMIN])
    def delete_runtime(name: NamePath) -> Response:
        delete(cp, name)
        return Response(status_code=204)

    @r.put("/runbooks/{name}/runtime", dependencies=[AUTHOR])
    def set_runtime(name: NamePath, body: RunbookRuntimeBody) -> dict[str, Any]:
        return set_runbook_runtime(cp, name, body.environment)

    return r
