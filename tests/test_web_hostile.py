"""`machineroom serve` against an attacker: a real server subprocess, bodies of 1 GiB streamed
by a generator (never built in memory), wrong tokens from several client addresses.

What a user checks: the answer comes at once (401, 413, 429), the server's memory (VmHWM, its
peak resident size, read from /proc) barely moves, and a right token still works.
Client addresses are taken from this test's own loopback net (LAB_NET, default 127.0.21):
the server listens on 127.0.0.1 and sees each client's source address.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websupport import Server, make_token, wait_for

from machineroom.web.guard import MAX_API_BODY, MAX_FORM_BODY
from machineroom.web.throttle import AuthThrottle, client_key

GIB = 1 << 30
BLOCK = 64 * 1024
MEMORY_BOUND_MIB = 50  # the server's peak may grow this much at most while refusing
ANSWER_SECONDS = 10  # a refusal comes well within this, even on a busy 2-core machine
NET = os.environ.get("LAB_NET", "127.0.21")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A state database, a viewer and an operator token, and a server with default limits."""
    root = tmp_path_factory.mktemp("web-hostile")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "check.yml").write_text("- hosts: all\n  tasks: []\n")
    (root / "inventory.yml").write_text("all:\n  hosts:\n    web1: {host: 127.0.0.1}\n")
    state = root / ".machineroom" / "state.db"
    tokens = {role: make_token(root, state, role, role) for role in ("viewer", "operator")}
    env = {"HOME": str(root), "SSH_AUTH_SOCK": ""}
    server = Server(root, state, [root / "inventory.yml"], env)
    try:
        yield {"root": root, "state": state, "server": server, "tokens": tokens}
    finally:
        server.stop()


def from_address(server: Server, host: str, token: str | None = None) -> httpx.Client:
    """A client whose connections leave from `host` (an address of the loopback net)."""
    transport = httpx.HTTPTransport(local_address=host)
    return server.client(token, transport=transport)


def stream_post(
    client: httpx.Client,
    path: str,
    total: int,
    *,
    declared: bool,
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, float, int]:
    """POST `total` bytes made block by block by a generator, with a Content-Length saying so
    (`declared`) or chunked; the answer, the seconds it took and the bytes handed to the
    socket before it came."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        block = bytes(BLOCK)
        while sent < total:
            sent += BLOCK
            yield block

    sending = {"Content-Type": "application/json", **(headers or {})}
    if declared:
        sending["Content-Length"] = str(total)
    started = time.monotonic()
    response = client.post(path, content=body(), headers=sending)
    return response, time.monotonic() - started, sent


def refused_unread(
    server: Server, client: httpx.Client, path: str, status: int, declared: bool
) -> httpx.Response:
    """Stream 1 GiB to `path`; assert the answer is `status`, fast, with the connection closed,
    most of the body never sent, and the server's peak memory within the bound."""
    peak_before = server.memory_mib("VmHWM")
    rss_before = server.memory_mib()
    response, seconds, sent = stream_post(client, path, GIB, declared=declared)
    rss_after, peak_after = server.memory_mib(), server.memory_mib("VmHWM")
    how = "Content-Length" if declared else "chunked"
    print(
        f"\n1 GiB POST {path} ({how}): {response.status_code} after {seconds:.3f} s, "
        f"{sent / 2**20:.1f} MiB handed to the socket; server RSS {rss_before:.1f} -> "
        f"{rss_after:.1f} MiB, peak {peak_before:.1f} -> {peak_after:.1f} MiB"
    )
    assert response.status_code == status, response.text
    assert response.headers["connection"] == "close"
    assert seconds < ANSWER_SECONDS
    assert sent < GIB // 4
    assert peak_after - peak_before < MEMORY_BOUND_MIB
    return response


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_unauthenticated_gigabyte_is_refused_before_it_is_read(
    site: dict[str, Any], declared: bool
) -> None:
    server: Server = site["server"]
    with server.client() as anonymous:
        response = refused_unread(server, anonymous, "/api/actions/apply", 401, declared)
        assert response.json()["error"]["code"] == "unauthorized"
        assert "Bearer" in response.headers["www-authenticate"]
        page = refused_unread(server, anonymous, "/actions/apply", 303, declared)
        assert page.headers["location"].startswith("/login?next=")
    with server.client(site["tokens"]["viewer"]) as viewer:
        assert viewer.get("/api/me").json()["name"] == "viewer"  # the server is still fine


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_sent_where_none_is_taken_is_not_drained(
    site: dict[str, Any], declared: bool
) -> None:
    """A chunked body to a route that takes none gets its answer (405) and the connection is
    closed, rather than the server reading the rest of the gigabyte to throw it away."""
    server: Server = site["server"]
    status = 413 if declared else 405
    with server.client(site["tokens"]["viewer"]) as viewer:
        refused_unread(server, viewer, "/api/me", status, declared)
    with server.client() as anonymous:
        refused_unread(server, anonymous, "/static/style.css", status, declared)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_the_login_form_is_capped_while_it_streams(site: dict[str, Any], declared: bool) -> None:
    server: Server = site["server"]
    with server.client() as anonymous:
        page = refused_unread(server, anonymous, "/login", 413, declared)
        assert f"{MAX_FORM_BODY // 1024} KiB" in page.text
        # A form within the limit is read: the wrong token is refused as such.
        wrong = anonymous.post("/login", data={"token": "mr_" + "x" * 8000, "next": "/"})
        assert wrong.status_code == 401 and "unknown token" in wrong.text


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_authenticated_oversize_body_is_refused_with_413(
    site: dict[str, Any], declared: bool
) -> None:
    server: Server = site["server"]
    with server.client(site["tokens"]["operator"]) as operator:
        response = refused_unread(server, operator, "/api/actions/apply", 413, declared)
        body = response.json()["error"]
        assert body["code"] == "too_large"
        assert f"{MAX_API_BODY // 1024} KiB" in body["message"]
        # Just under the limit, the body is read and judged on what it says.
        padded = '{"playbook": "nope.yml"' + " " * (MAX_API_BODY - 100) + "}"
        under = operator.post(
            "/api/actions/apply", content=padded, headers={"Content-Type": "application/json"}
        )
        assert under.status_code == 400 and "nope.yml" in under.json()["error"]["message"]
        over = operator.post(
            "/api/actions/apply",
            content=padded + " " * 200,
            headers={"Content-Type": "application/json"},
        )
        assert over.status_code == 413


def test_the_openapi_document_needs_a_token(site: dict[str, Any]) -> None:
    server: Server = site["server"]
    with server.client() as anonymous:
        refused = anonymous.get("/openapi.json")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "unauthorized"
        for path in ("/docs", "/redoc", "/api", "/no-such-page"):
            assert anonymous.get(path).status_code in (303, 401), path
        assert anonymous.get("/login").status_code == 200
        assert anonymous.get("/static/style.css").status_code == 200
    with server.client(site["tokens"]["viewer"]) as viewer:
        document = viewer.get("/openapi.json")
        assert document.status_code == 200 and document.json()["openapi"].startswith("3.")
        assert viewer.get("/docs").status_code == 404  # no Swagger UI at all


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A server that allows 3 wrong tokens an address within 8 seconds."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "inventory.yml").write_text("all:\n  hosts:\n    web1: {host: 127.0.0.1}\n")
    state = root / ".machineroom" / "state.db"
    token = make_token(root, state, "viewer", "viewer")
    env = {"HOME": str(root), "SSH_AUTH_SOCK": ""}
    options = ["--auth-failures", "3", "--auth-window", "8"]
    server = Server(root, state, [root / "inventory.yml"], env, options)
    try:
        yield {"server": server, "token": token, "window": 8.0}
    finally:
        server.stop()


def test_repeated_wrong_tokens_are_answered_429_for_a_while(strict: dict[str, Any]) -> None:
    server: Server = strict["server"]
    token, window = strict["token"], strict["window"]
    attacker, neighbour = f"{NET}.10", f"{NET}.11"
    with (
        from_address(server, attacker) as guesser,
        from_address(server, attacker) as browser,
        from_address(server, attacker, token) as colleague,
        from_address(server, neighbour, token) as elsewhere,
    ):
        assert browser.post("/login", data={"token": token, "next": "/"}).status_code == 303
        first = time.monotonic()
        for n in range(3):
            wrong = guesser.get("/api/me", headers={"Authorization": f"Bearer mr_guess{n}"})
            assert wrong.status_code == 401, wrong.text
        throttled = guesser.get("/api/me", headers={"Authorization": "Bearer mr_guess3"})
        assert throttled.status_code == 429, throttled.text
        error = throttled.json()["error"]
        assert error["code"] == "too_many_requests" and attacker in error["message"]
        assert 1 <= int(throttled.headers["retry-after"]) <= window
        # The address's tokens wait, whoever sends them and whatever X-Forwarded-For says (it
        # is trusted from --proxy addresses only)...
        assert colleague.get("/api/me").status_code == 429
        spoofed = colleague.get("/api/me", headers={"X-Forwarded-For": "203.0.113.7"})
        assert spoofed.status_code == 429
        # ...a large body is not read to find that out...
        guess = {"Authorization": "Bearer mr_guess4"}
        response, seconds, _ = stream_post(
            guesser, "/api/actions/apply", GIB, declared=True, headers=guess
        )
        assert response.status_code == 429 and seconds < ANSWER_SECONDS
        # ...but a browser logged in before keeps its session, and other addresses are free.
        assert browser.get("/api/me").json()["name"] == "viewer"
        assert elsewhere.get("/api/me").json()["name"] == "viewer"
        # The wait ends on its own, `window` seconds after the first wrong token; waiting
        # right tokens do not prolong it.
        wait_for(lambda: colleague.get("/api/me").status_code == 200, timeout=window + 30)
        assert time.monotonic() - first >= window - 0.5
        assert guesser.get("/api/me", headers={"Authorization": "Bearer mr_x"}).status_code == 401


def test_wrong_tokens_at_the_login_page_count_too(strict: dict[str, Any]) -> None:
    server: Server = strict["server"]
    with from_address(server, f"{NET}.12") as browser:
        for n in range(3):
            page = browser.post("/login", data={"token": f"mr_guess{n}", "next": "/"})
            assert page.status_code == 401 and "unknown token" in page.text
        page = browser.post("/login", data={"token": strict["token"], "next": "/"})
        assert page.status_code == 429 and "too many wrong tokens" in page.text
        assert page.headers["retry-after"]
    # Nothing is guessed by these, so they do not count: no token, an ended session.
    with from_address(server, f"{NET}.13") as other:
        for _ in range(5):
            assert other.post("/login", data={"token": "", "next": "/"}).status_code == 401
            ended = other.get("/api/me", headers={"Cookie": "mr_session=gone"})
            assert ended.status_code == 401 and "session has ended" in ended.text
        login = other.post("/login", data={"token": strict["token"], "next": "/"})
        assert login.status_code == 303


def test_the_table_of_addresses_is_bounded() -> None:
    now = [0.0]
    throttle = AuthThrottle(limit=2, window=60, max_addresses=100, clock=lambda: now[0])
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    assert throttle.retry_after("10.0.0.0") is None  # forgotten: the oldest went first
    assert throttle.retry_after("10.0.3.231") == 60  # the newest is held
    now[0] = 59.5
    assert throttle.retry_after("10.0.3.231") == 0.5
    now[0] = 60.0
    assert throttle.retry_after("10.0.3.231") is None
    assert len(throttle) == 99  # an address whose failures all expired is dropped


def test_an_ipv6_client_counts_by_its_64_network() -> None:
    one = {"client": ("2001:db8:1:2:aaaa::1", 5000)}
    two = {"client": ("2001:db8:1:2:bbbb::9", 5001)}
    assert client_key(one) == client_key(two) == "2001:db8:1:2::/64"
    assert client_key({"client": ("::ffff:192.0.2.1", 1)}) == "192.0.2.1"
    assert client_key({"client": None}) == "-"
