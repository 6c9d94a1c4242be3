"""One error shape for the whole API: `{"error": {"status", "code", "message"}}`.

Every way a request can fail (our own ApiError, FastAPI's validation errors, Starlette's 404
and 405, a database error, a bug) is turned into that shape here; HTML pages get the same
information as a page (and a redirect to the login page on 401).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from machineroom.errors import InputError, MachineroomError

log = logging.getLogger("machineroom.web")

# HTTP status -> the `code` word clients can switch on.
CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """What went wrong."""

    status: int
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error response of the API."""

    error: ErrorBody


class ApiError(Exception):
    """An error with its HTTP status, code word and a message for people."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each status documented with the error shape."""
    text = {
        400: "Invalid input",
        401: "No token, or a bad, expired or revoked one",
        403: "The token's role may not do this",
        404: "Unknown host, run, action or token",
        408: "The command timed out",
        409: "Already running",
        413: "The body is larger than the limit",
        429: "Too many wrong tokens from this address; see Retry-After",
        503: "Host unreachable",
    }
    return {s: {"model": ErrorResponse, "description": text.get(s, "Error")} for s in statuses}


def is_api(request: Request) -> bool:
    """Whether the request is for the JSON API or its description (else a page)."""
    path = request.url.path
    return path.startswith("/api/") or path in ("/api", "/openapi.json")


def error_response(request: Request, error: ApiError) -> Response:
    """The JSON error, or for a page an HTML error page (401: the login page)."""
    if not is_api(request):
        if error.status == 401:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return RedirectResponse(
                "/login?next=" + quote(target, safe=""), status_code=303, headers=error.headers
            )
        from machineroom.web.pages import render_error

        page = render_error(request, error.status, error.code, error.message)
        page.headers.update(error.headers)
        return page
    headers = dict(error.headers)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="machineroom"'
    body = {"error": {"status": error.status, "code": error.code, "message": error.message}}
    return JSONResponse(body, status_code=error.status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for item in exc.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception into the one error shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, ApiError(400, _validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        message = str(exc.detail) if exc.detail else CODES.get(status, "error")
        if status == 404:
            message = f"no such page or endpoint: {request.url.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(request, ApiError(status, message))

    @app.exception_handler(UnicodeError)
    async def unicode_error(request: Request, exc: UnicodeError) -> Response:
        # A lone surrogate (valid JSON, not valid UTF-8) reaching a file name, argv or SQLite.
        return error_response(request, ApiError(400, "text must be valid UTF-8"))

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Response:
        return error_response(request, ApiError(400, str(exc)))

    @app.exception_handler(MachineroomError)
    async def machineroom_error(request: Request, exc: MachineroomError) -> Response:
        # The state database is busy past its timeout, unreadable, or the like.
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(request, ApiError(503, str(exc)))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(
            request, ApiError(500, f"internal error ({type(exc).__name__}); see the server log")
        )
