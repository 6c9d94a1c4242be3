"""Who is asking: a bearer token (API clients) or a session cookie (browsers), its role, and
the CSRF check of state-changing browser requests.

`identify` reads only headers; web/guard.py calls it for every request before the body is
read and leaves the Principal in the request's scope, where the `authenticate` dependency
finds it.

The cookie holds a random session id, not the token: the token is typed once at the login
page and never reaches the browser's storage. Sessions live in the server's memory (a restart
logs browsers out) and each request re-reads the token's row, so revoking a token ends its
sessions at once.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from machineroom.masking import add_secret
from machineroom.state.tokens import ROLES, TokenRow
from machineroom.web.errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Callable

    from machineroom.web.app import WebState

COOKIE = "mr_session"
SESSION_SECONDS = 12 * 3600
CSRF_HEADER = "X-CSRF-Token"
PRINCIPAL = "machineroom_principal"  # where the guard leaves it in scope["state"]

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="An access token from `machineroom token create NAME --role ROLE`.",
)
cookie_scheme = APIKeyCookie(
    name=COOKIE,
    auto_error=False,
    scheme_name="sessionCookie",
    description="The session cookie the login page sets (browsers only).",
)


@dataclass(frozen=True)
class Session:
    """A browser's login: which token it was made with, its CSRF secret, when it ends."""

    token_id: int
    csrf: str
    expires: float  # time.monotonic()


class Sessions:
    """Session id -> Session, in memory, thread-safe."""

    def __init__(self) -> None:
        self._items: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, token_id: int) -> tuple[str, Session]:
        """A new session for the token; returns its id (the cookie value) and the session."""
        session = Session(token_id, secrets.token_urlsafe(24), time.monotonic() + SESSION_SECONDS)
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v.expires > now}
            self._items[session_id] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id, or None."""
        with self._lock:
            session = self._items.get(session_id)
        if session is None or session.expires <= time.monotonic():
            return None
        return session

    def drop(self, session_id: str) -> None:
        """End a session (logout)."""
        with self._lock:
            self._items.pop(session_id, None)


@dataclass(frozen=True)
class Principal:
    """The token behind a request and how it came (`bearer` or `cookie`)."""

    token: TokenRow
    via: str
    csrf: str = ""
    session_id: str = ""

    @property
    def name(self) -> str:
        """The token's name."""
        return self.token.name

    @property
    def role(self) -> str:
        """viewer, operator or admin."""
        return self.token.role

    def may(self, role: str) -> bool:
        """Whether the token's role includes `role`."""
        return self.token.may(role)


def web_state(request: Request) -> WebState:
    """The application's shared state (store, config, sessions, actions)."""
    state: WebState = request.app.state.web
    return state


class WrongToken(ApiError):
    """A token was given and matches none, or the Authorization header is not 'Bearer TOKEN':
    a guess, which the throttle counts (web/throttle.py)."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)


def usable_token(state: WebState, row: TokenRow | None) -> TokenRow:
    """`row` if it may be used now; else the 401 that says why (WrongToken when unknown)."""
    if row is None:
        raise WrongToken("unknown token (check it was copied whole; tokens start with mr_)")
    status = row.state()
    if status == "revoked":
        raise ApiError(401, f"token {row.name!r} was revoked at {row.revoked_at}")
    if status == "expired":
        raise ApiError(401, f"token {row.name!r} expired at {row.expires_at}; create a new one")
    state.store.tokens.touch_token(row)
    return row


def identify(state: WebState, authorization: str | None, session_id: str | None) -> Principal:
    """Who sends a request with this Authorization header and session cookie, or the 401
    that says why. Reads only headers: web/guard.py calls it before any body byte is read.
    The header wins over the cookie, as it did for FastAPI's HTTPBearer."""
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise WrongToken("malformed Authorization header; send 'Bearer TOKEN'")
        row = usable_token(state, state.store.tokens.find_token(token))
        add_secret(token)  # a valid token is masked in whatever the server logs or stores
        return Principal(row, "bearer")
    if session_id:
        session = state.sessions.get(session_id)
        if session is None:
            raise ApiError(401, "your session has ended; log in again")
        row = usable_token(state, state.store.tokens.token_by_id(session.token_id))
        return Principal(row, "cookie", session.csrf, session_id)
    raise ApiError(401, "an access token is needed: send 'Authorization: Bearer TOKEN'")


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session_id: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal:
    """The Principal web/guard.py found for the request before reading its body (401 if it
    found none: only the open paths have none, and they do not ask). The two schemes are
    parameters so that the OpenAPI document describes them."""
    principal = request.scope.get("state", {}).get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise ApiError(401, "an access token is needed: send 'Authorization: Bearer TOKEN'")
    return principal


def require(role: str) -> Callable[..., Principal]:
    """A dependency: the request's Principal, which must have `role` (else 403)."""
    assert role in ROLES

    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise ApiError(
                403, f"token {principal.name!r} has role {principal.role}; this needs {role}"
            )
        return principal

    return check


def check_same_origin(request: Request) -> None:
    """Refuse a browser POST whose Origin (or Referer) is another site (403)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return  # SameSite=Strict already keeps the cookie off cross-site requests
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise ApiError(403, f"cross-site request refused (origin {origin!r})", "csrf")


def check_csrf(request: Request, principal: Principal, form_value: str | None = None) -> None:
    """For cookie-authenticated state changes: same origin and the session's CSRF token (in
    the form or the X-CSRF-Token header). Bearer requests need neither: browsers never add
    an Authorization header on their own."""
    if principal.via != "cookie":
        return
    check_same_origin(request)
    given = form_value or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), principal.csrf.encode()):
        raise ApiError(403, "missing or wrong CSRF token; reload the page and try again", "csrf")
