"""The agent poll: the one request a parked fleet makes all the time.

4,000 workers holding 25 s long-polls re-poll about 180 times a second, and most of those
polls park and time out with nothing. What such a poll costs the server is the fleet's idle
CPU, so it has two doors onto one implementation (`serve`):

- the documented FastAPI route (`automation.api`), which takes every request: it authenticates
  against the store, validates, and answers errors in the API's shapes;
- `PollFastPath`, plain ASGI in front of FastAPI, which takes only the common well-formed case
  (a credential already in the cache, parameters in range, a valid JSON body or none) and
  passes everything else, body replayed, to the route. It skips FastAPI's routing and
  dependency solving, which cost twice the poll itself (`bench/poll_cost.py`).

Both validate with the same bounds and the same `PollRequest` model, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from fastapi import Response
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automation import dispatch, middleware, workers
from automation.context import ControlPlane
from outpost import contract as c
from outpost.observer import WorkerIdentity

MAX_JOBS_PER_POLL = 64
MAX_WAIT_S = 60.0
FAST_BODY_BYTES = 64 * 1024  # a held list of MAX_HELD_PER_POLL ids fits; larger bodies take the route


async def serve(
    cp: ControlPlane,
    identity: WorkerIdentity,
    wait: float,
    max_jobs: int,
    body: c.PollRequest | None,
    gone: Callable[[], Awaitable[bool]],
) -> Response:
    """Claim now or park in the group's FIFO (automation.waiters); 200 with jobs, or 204."""
    held = body.held if body is not None else None  # None: an agent that does not say what it holds
    settle = body is None or body.settle  # False: the agent's last poll was answered, nothing to compare

    def check() -> list[c.JobAssignment]:
        return dispatch.claim(cp, identity, max_jobs, held)

    async def must_claim() -> bool:
        return settle and await cp.run(dispatch.unsettled, cp, identity, held)

    jobs = await cp.dispatcher.wait(identity.group, check, wait, gone=gone, must_claim=must_claim)
    cp.observer.on_poll(identity, bool(jobs))
    if not jobs:
        return Response(status_code=204)
    return Response(c.PollResponse(jobs=jobs).model_dump_json(), media_type="application/json")


class PollFastPath:
    """Answers well-formed polls from cached workers without FastAPI; hands the rest on."""

    def __init__(self, app: ASGIApp, cp: ControlPlane) -> None:
        self.app = app
        self.cp = cp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != c.AGENT_POLL or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        identity = _cached_worker(scope)
        params = _params(scope, self.cp.poll_hold_s) if identity is not None else None
        if identity is None or params is None or not _small_json(scope):
            await self.app(scope, receive, send)  # the route says what is wrong, or authenticates
            return
        body, more = await _read_body(receive)
        replay = _replaying(body, more, receive)
        readable, poll = (False, None) if more else _poll_body(body)
        if not readable:
            await self.app(scope, replay, send)
            return
        self.cp.dispatcher.stats.fast += 1
        try:
            answer = await serve(self.cp, identity, *params, poll, Request(scope, replay).is_disconnected)
        except Exception as exc:
            known = middleware.error_response(exc)
            if known is None:
                raise  # middleware.Unexpected answers 500 and logs it
            answer = known
        await answer(scope, replay, send)


def _cached_worker(scope: Scope) -> WorkerIdentity | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            return workers.cached_identity(token.strip())
    return None


def _params(scope: Scope, default_wait: float) -> tuple[float, int] | None:
    """(wait, max) when each is absent or in the route's bounds; None: let the route answer."""
    wait, max_jobs = default_wait, 1
    try:
        for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if key == "wait":
                wait = float(value)
            elif key == "max":
                max_jobs = int(value)
    except ValueError:
        return None
    if not (0 <= wait <= MAX_WAIT_S and 1 <= max_jobs <= MAX_JOBS_PER_POLL):  # NaN fails both comparisons
        return None
    return wait, max_jobs


def _small_json(scope: Scope) -> bool:
    """No content type or JSON, and no declared length over FAST_BODY_BYTES."""
    for name, value in scope["headers"]:
        if name == b"content-type" and value.split(b";", 1)[0].strip().lower() != b"application/json":
            return False
        if name == b"content-length" and (not value.isdigit() or int(value) > FAST_BODY_BYTES):
            return False
    return True


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The body, and whether more was left unread (over FAST_BODY_BYTES, or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > FAST_BODY_BYTES:
            return b"".join(chunks), True


def _replaying(body: bytes, more: bool, receive: Receive) -> Receive:
    """A receive that yields what was already read once, then the connection's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def _poll_body(body: bytes) -> tuple[bool, c.PollRequest | None]:
    """(readable, the body): an empty body is None, as the route takes it."""
    if not body:
        return True, None
    try:
        return True, c.PollRequest.model_validate_json(body)
    except ValidationError:
        return False, None  # the route answers 400/422 in the API's shape
