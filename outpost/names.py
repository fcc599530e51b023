"""Rules the CLI checks before it sends a request, and the server can share (automation/ imports these).

Names: the server's own rule (`outpost.contract.NAME_RE`), with its message, so the CLI refuses
`a?b`, `a#b` or `a/b` up front instead of sending a URL that means something else.

Job parameters: a runbook gets them as its argv, so they must fit what Linux can exec(): each
string at most MAX_ARG_STRLEN (32 pages, 128 KiB, with its NUL), and all of argv plus the
environment within ARG_MAX (2 MiB by default, a quarter of the stack limit). Outpost allows half
of that to parameters, leaving the rest for the job's environment and the interpreter's own argv.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from outpost.contract import NAME_RE

MAX_PARAM_VALUE_BYTES = 128 * 1024 - 1  # MAX_ARG_STRLEN less the NUL
MAX_PARAMS_TOTAL_BYTES = 1024 * 1024  # half the default ARG_MAX
_POINTER_BYTES = 8  # each argv entry also costs a pointer in the exec'd process


def name_problem(kind: str, name: str) -> str | None:
    """None for a valid name, else the one-line reason."""
    if NAME_RE.match(name or ""):
        return None
    return f"invalid {kind} name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def params_problem(params: Iterable[Mapping[str, str | None]]) -> str | None:
    """None when the parameters fit the argv a worker can exec, else why not (for a 400 or a CLI error)."""
    total = 0
    for i, param in enumerate(params, 1):
        name, value = param.get("name"), param.get("value") or ""
        args = ([f"--{name}"] if name else []) + [value]
        for arg in args:
            size = len(arg.encode("utf-8")) + 1
            if size - 1 > MAX_PARAM_VALUE_BYTES:
                which = f"parameter {name!r}" if name else f"parameter {i}"
                return (
                    f"{which} is {size - 1} bytes; one parameter may be at most {MAX_PARAM_VALUE_BYTES} bytes "
                    "(the largest single argument Linux can pass to a program): pass large data in a variable asset"
                )
            total += size + _POINTER_BYTES
    if total > MAX_PARAMS_TOTAL_BYTES:
        return (
            f"the parameters total {total} bytes; a job's parameters may total at most {MAX_PARAMS_TOTAL_BYTES} "
            "bytes (what fits in the argument list of a program): pass large data in a variable asset"
        )
    return None
