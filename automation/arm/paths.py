"""ARM paths are case-insensitive: `.../resourcegroups/rg/providers/microsoft.automation/...`, as
many tools write resource ids, reaches the same route as the SDK's spelling.

Only the fixed words of a path are respelled (the types and actions, never a name), before routing.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_WORDS = [
    "subscriptions", "resourceGroups", "providers", "Microsoft.Automation", "automationAccounts",
    "runbooks", "draft", "content", "publish", "jobs", "output", "streams", "stop",
    "hybridRunbookWorkerGroups", "hybridRunbookWorkers", "variables", "credentials", "certificates",
    "connections", "connectionTypes", "webhooks", "generateUri", "schedules", "jobSchedules",
]  # fmt: skip
CANONICAL = {w.lower(): w for w in _WORDS}
_WORDS_AFTER = {("draft", "content"), ("webhooks", "generateuri")}


def canonical(path: str) -> str:
    """/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Automation/automationAccounts/{a}/{type}/{name}/...:
    the words sit at the odd positions and the namespace's, plus `draft/content` and `webhooks/generateUri`."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        lower, after = parts[i].lower(), parts[i - 1].lower()
        named = (after, lower) in _WORDS_AFTER  # a word where a name would be
        if (i % 2 == 1 or i == 6 or named) and lower in CANONICAL:
            parts[i] = CANONICAL[lower]
    return "/".join(parts)


class CanonicalPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = canonical(scope["path"])
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
