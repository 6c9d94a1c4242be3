"""The FastAPI application: shared state, security headers, routes, static files."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from machineroom import __version__
from machineroom.runs.connect import ConnectSettings
from machineroom.state import StateStore, open_state
from machineroom.web.actions import ActionManager
from machineroom.web.auth import Sessions
from machineroom.web.data import InventoryCache, repo_root
from machineroom.web.errors import install_error_handlers
from machineroom.web.guard import Guard
from machineroom.web.hostkeys import HostKeySettings
from machineroom.web.throttle import AUTH_FAILURES, AUTH_WINDOW, AuthThrottle

HERE = Path(__file__).resolve().parent
SWEEP_EVERY = 5.0  # seconds between checks for runs whose process died

DESCRIPTION = """The fleet's hosts, metrics, runs, alerts and audit log as JSON, and the
actions an operator can start (a collection, an apply of a playbook of the repo).

Every endpoint, this document included, needs an access token (`machineroom token create
NAME --role ROLE`) sent as `Authorization: Bearer TOKEN`. Roles: **viewer** reads, **operator**
also starts actions, **admin** also manages tokens. Bodies are at most 64 KiB (413); an address
that sends too many wrong tokens is answered 429 for a while (see `Retry-After`). Errors all
have the shape `{"error": {"status": 404, "code": "not_found", "message": "..."}}`."""

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


@dataclass(frozen=True)
class WebConfig:
    """What `machineroom serve` was given."""

    state_path: str
    inventory_paths: tuple[str, ...] = ()
    cookie_secure: bool = False
    auth_failures: int = AUTH_FAILURES
    auth_window: float = AUTH_WINDOW
    # how its runs connect, beside the project's settings (machineroom.yml, ansible.cfg):
    # extra known_hosts files, the vault password file (a path; the child reads it)
    known_hosts: tuple[str, ...] = ()
    vault_password_file: str | None = None
    # where "Trust this key" writes: the project's known_hosts, as the CLI resolves it
    # (machineroom.yml's known_hosts, else beside the state database)
    project_known_hosts: str | None = None


class WebState:
    """What every request shares: the store (one connection, thread-safe), the inventory,
    the browser sessions and the actions started."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.store: StateStore = open_state(config.state_path)
        self.inventory = InventoryCache(config.inventory_paths)
        self.sessions = Sessions()
        self.throttle = AuthThrottle(config.auth_failures, config.auth_window)
        self.repo = repo_root(config.inventory_paths)
        project_file = config.project_known_hosts or str(
            Path(config.state_path).parent / "known_hosts"
        )
        self.host_keys = HostKeySettings(project_file, config.known_hosts)
        # The project's file goes to the child too: the key an admin trusted here is trusted
        # there, wherever the child's own settings put its project file.
        connect = ConnectSettings(
            known_hosts=self.host_keys.files(), vault_password_file=config.vault_password_file
        )
        self.actions = ActionManager(
            config.inventory_paths, config.state_path, self.repo, connect=connect
        )
        self._swept_at = float("-inf")
        self._sweeping = threading.Lock()
        self.sweep_runs(force=True)

    def sweep_runs(self, force: bool = False) -> None:
        """Mark 'interrupted' the runs left 'running' by a process that is gone (killed, a
        crash): at once when `force`, else at most every SWEEP_EVERY seconds, so the pages
        and API that show runs can call it on every request."""
        if not force and time.monotonic() - self._swept_at < SWEEP_EVERY:
            return
        if not self._sweeping.acquire(blocking=force):
            return  # another request is sweeping right now
        try:
            self.store.mark_interrupted_runs()
            self._swept_at = time.monotonic()
        finally:
            self._sweeping.release()

    def close(self) -> None:
        """Wait a little for children, remove their logs, close the database."""
        self.actions.close()
        self.store.close()


def create_app(config: WebConfig) -> FastAPI:
    """The dashboard and API application for one state database and inventory."""
    from machineroom.web import api, pages, trust_pages

    config = dataclasses.replace(
        config,
        state_path=str(Path(config.state_path).resolve()),
        inventory_paths=tuple(str(Path(p).resolve()) for p in config.inventory_paths),
        known_hosts=tuple(str(Path(p).expanduser().resolve()) for p in config.known_hosts),
        vault_password_file=(
            None
            if config.vault_password_file is None
            else str(Path(config.vault_password_file).expanduser().resolve())
        ),
    )
    state = WebState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="machineroom",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # Swagger UI would load scripts from a CDN; /openapi.json is served
        redoc_url=None,
    )
    app.state.web = state
    install_error_handlers(app)

    # Inside Starlette's error middleware the last added runs first: the headers, then the
    # guard (before anything reads a body), then the routes.
    app.add_middleware(Guard)
    app.add_middleware(SecurityHeaders)

    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(trust_pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


class SecurityHeaders:
    """A pure ASGI middleware adding SECURITY_HEADERS (and no-store but for /static/) to every
    response, the guard's refusals included; it touches only `send`, never the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not cacheable:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
