"""The refusals made before a request's body is read: who is asking, whether their address
has sent too many wrong tokens, and how large the body may be.

`Guard` is a pure ASGI middleware, the outermost but for the security headers, so nothing
before it reads or buffers the body (uvicorn itself holds at most 64 KiB of it, then stops
reading the socket). For every request:

1. Open paths (the login page and /static/) need no token; every other path, /openapi.json
   included, needs a bearer token or a session cookie, checked from the headers alone
   (auth.identify). A request without one is refused (401, or for pages a redirect to the
   login page) without a byte of its body being read.
2. A request that tries a token (an Authorization header, a POST to /login) from an address
   that sent too many wrong ones is answered 429 with Retry-After (web/throttle.py), before
   the token is looked at.
3. The body is capped: MAX_API_BODY under /api/, MAX_FORM_BODY for the pages' forms (the login
   form included). A Content-Length over the cap is answered 413 at once; a body without one
   (chunked) is counted as the application reads it and refused with 413 as soon as it
   passes the cap.

A response that starts before the request's whole body came in (a refusal, a route that takes
no body) gets `Connection: close`: the connection is closed rather than the rest of the body
read and thrown away.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from machineroom.errors import MachineroomError
from machineroom.web.auth import COOKIE, PRINCIPAL, Principal, WrongToken, identify
from machineroom.web.errors import ApiError, error_response
from machineroom.web.throttle import client_key

if TYPE_CHECKING:
    from machineroom.web.app import WebState

MAX_API_BODY = 64 * 1024  # the API's JSON bodies are a few hundred bytes
MAX_FORM_BODY = 16 * 1024  # the login, logout and action forms are smaller still
LOGIN = "/login"
OPEN_PREFIXES = ("/static/",)


def body_limit(path: str) -> int:
    """The largest body a request to `path` may send, in bytes."""
    return MAX_API_BODY if path == "/api" or path.startswith("/api/") else MAX_FORM_BODY


def is_open(path: str) -> bool:
    """Whether `path` is served without a token: the login page and the static files."""
    return path == LOGIN or path.startswith(OPEN_PREFIXES)


def too_large(limit: int) -> str:
    """The 413 message."""
    return f"the request body is larger than the limit of {limit // 1024} KiB"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes its cap. An HTTPException, so that
    FastAPI's body parsing passes it on instead of calling it a parse error (400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


class Guard:
    """The ASGI middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass the request on with its Principal and a capped `receive`."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        limit = body_limit(path)
        declared = _content_length(headers)
        has_body = bool(declared) or "transfer-encoding" in headers
        try:
            await self._admit(scope, headers, path)
            if declared is not None and declared > limit:
                raise ApiError(413, too_large(limit))
        except MachineroomError as exc:  # the state database cannot be read
            await _refuse(scope, receive, send, ApiError(503, str(exc)), has_body)
            return
        except ApiError as exc:
            await _refuse(scope, receive, send, exc, has_body)
            return
        await self._capped(scope, receive, send, limit, has_body)

    async def _admit(self, scope: Scope, headers: Headers, path: str) -> None:
        """Raise the ApiError that refuses the request; else leave its Principal in scope."""
        state: WebState = scope["app"].state.web
        key = client_key(scope)
        authorization = headers.get("authorization")
        if is_open(path):
            if path == LOGIN and scope["method"] == "POST":
                _check_throttle(state, key)
            return
        if authorization is not None:
            _check_throttle(state, key)
        session_id = Request(scope).cookies.get(COOKIE)
        try:
            principal: Principal = await run_in_threadpool(
                identify, state, authorization, session_id
            )
        except WrongToken:
            state.throttle.failed(key)
            raise
        scope.setdefault("state", {})[PRINCIPAL] = principal

    async def _capped(
        self, scope: Scope, receive: Receive, send: Send, limit: int, has_body: bool
    ) -> None:
        """Run the application with a `receive` that refuses past `limit` bytes. A response
        that starts before the whole body came (the route did not want it, or it was too
        large) closes the connection: uvicorn would otherwise read the rest to throw it away."""
        received = 0
        overflow = False
        finished = not has_body
        started = False

        async def capped_receive() -> Message:
            nonlocal received, overflow, finished
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflow = True
                    raise BodyTooLarge(limit)
                finished = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not finished:
                    message = {**message, "headers": list(message.get("headers", []))}
                    MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
        if overflow and not started:
            await _refuse(scope, receive, send, ApiError(413, too_large(limit)), True)


def _check_throttle(state: WebState, key: str) -> None:
    wait = state.throttle.retry_after(key)
    if wait is not None:
        seconds = math.ceil(wait)
        raise ApiError(
            429,
            f"too many wrong tokens from {key}; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:  # uvicorn's h11 refuses these before us; be safe anyway
        return None


async def _refuse(scope: Scope, receive: Receive, send: Send, error: ApiError, close: bool) -> None:
    if close:
        error.headers["Connection"] = "close"
    response = error_response(Request(scope), error)
    await response(scope, receive, send)
