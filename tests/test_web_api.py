"""The JSON API of `machineroom serve`, end to end: a real server subprocess on 127.0.0.1, a
state database filled through the StateStore, tokens made by `machineroom token create`.

No SSH lab here: inventory hosts point at a closed port (unreachable at once) or at a TCP
listener that never speaks (slow1: a command that hangs), which is all the error classes need.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from websupport import Server, fill_metrics, free_port, machineroom, make_token, wait_for

HOSTS = ["web1", "web2", "db1"]


class SilentHost:
    """A TCP listener that accepts connections and never answers (an SSH server hung)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project (inventory, playbooks, filled state db), tokens, and the server."""
    root = tmp_path_factory.mktemp("web-api")
    home = tmp_path_factory.mktemp("web-home")
    (home / ".ssh").mkdir()
    closed = free_port()  # nothing listens: connection refused at once
    silent = SilentHost()
    (root / "inventory.yml").write_text(
        "all:\n  vars: {user: root}\n  children:\n"
        f"    web:\n      hosts:\n        web1: {{host: 127.0.0.1, port: {closed}}}\n"
        f"        web2: {{host: 127.0.0.1, port: {closed}}}\n"
        f"    db:\n      hosts:\n        db1: {{host: 127.0.0.1, port: {closed}}}\n"
        f"    hung:\n      hosts:\n        slow1: {{host: 127.0.0.1, port: {silent.port}}}\n"
    )
    (root / "playbooks").mkdir()
    (root / "playbooks" / "check.yml").write_text(
        "- hosts: web\n  gather_facts: false\n  tasks:\n    - debug: {msg: hello}\n"
    )
    (root / "playbooks" / "slow.yml").write_text(
        "- hosts: slow1\n  gather_facts: false\n  tasks:\n    - command: 'true'\n"
    )
    state = root / ".machineroom" / "state.db"
    populate(state)
    env = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    tokens = {role: make_token(root, state, role, role) for role in ("viewer", "operator", "admin")}
    server = Server(root, state, [root / "inventory.yml"], env)
    try:
        yield {"root": root, "state": state, "server": server, "tokens": tokens, "url": server.url}
    finally:
        server.stop()
        silent.close()


def populate(state: Path) -> None:
    """Servers, a day of metrics, one apply run with results and commands, two alerts."""
    from machineroom.state import open_state

    with open_state(state) as store:
        for host in [*HOSTS, "slow1"]:
            store.upsert_server(host, "127.0.0.1", "root", "", 22)
        store.update_res("web1", {"docker_compose_installed": True, "facts": {"os": "debian"}})
        run = store.start_run("apply", "machineroom apply site.yml", playbook="site.yml")
        store.record_task_result(run, "web1", "Write motd", "changed", diff="-old\n+new\n")
        store.record_task_result(run, "web2", "Write motd", "ok", message="already matches")
        store.record_command(run, "web1", "cat /etc/motd", 0, 0.05, "hi\n", "")
        store.finish_run(run, "ok", {})
    fill_metrics(state, ["web1", "web2"], hours=24)
    with sqlite3.connect(state) as db:
        db.execute(
            "INSERT INTO alerts (rule, host_id, subject, severity, state, opened_at, value,"
            " message) VALUES ('disk_full', 'web1', '/', 'critical', 'open',"
            " '2030-01-01T00:00:00.000Z', 95.5, 'disk / is 95.5% full')"
        )


def error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Assert the one error shape; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message"}
    assert body["error"]["status"] == status
    if code:
        assert body["error"]["code"] == code
    return str(body["error"]["message"])


def test_every_call_needs_a_token(site: dict[str, Any]) -> None:
    server: Server = site["server"]
    with server.client() as anonymous:
        assert "Bearer" in error(anonymous.get("/api/hosts"), 401, "unauthorized")
        assert anonymous.get("/api/hosts").headers["www-authenticate"].startswith("Bearer")
        message = error(anonymous.get("/api/hosts", headers={"Authorization": "Basic x"}), 401)
        assert "Bearer" in message
        assert "unknown token" in error(
            anonymous.get("/api/runs", headers={"Authorization": "Bearer mr_wrong"}), 401
        )
        page = anonymous.get("/hosts/web1")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
        assert anonymous.get("/login").status_code == 200
        assert anonymous.get("/static/style.css").status_code == 200


def test_revoked_and_expired_tokens_are_refused_with_the_reason(site: dict[str, Any]) -> None:
    root, state, server = site["root"], site["state"], site["server"]
    gone = make_token(root, state, "gone", "viewer")
    short = make_token(root, state, "short", "viewer", "--expires", "1s")
    with server.client(gone) as client:
        assert client.get("/api/me").json() == {"name": "gone", "role": "viewer"}
        machineroom("token", "revoke", "gone", "--state", str(state), cwd=root)
        assert "'gone' was revoked" in error(client.get("/api/me"), 401)
    time.sleep(1.2)
    with server.client(short) as client:
        assert "'short' expired" in error(client.get("/api/me"), 401)
    listing = machineroom("token", "list", "--state", str(state), cwd=root)
    assert "gone" in listing and "revoked" in listing and "expired" in listing
    assert gone not in listing and gone not in (state.read_bytes().decode("latin-1"))


def test_a_viewer_reads_hosts_metrics_runs_alerts_and_audit(site: dict[str, Any]) -> None:
    with site["server"].client(site["tokens"]["viewer"]) as client:
        hosts = {h["id"]: h for h in client.get("/api/hosts").json()}
        assert set(hosts) == {*HOSTS, "slow1"}
        assert hosts["web1"]["status"] == "up" and hosts["web1"]["groups"] == ["web"]
        assert hosts["web1"]["containers_running"] == 2 and hosts["web1"]["open_alerts"] == 1
        assert hosts["db1"]["status"] == "unknown"
        assert [h["id"] for h in client.get("/api/hosts", params={"group": "db"}).json()] == ["db1"]
        assert {h["id"] for h in client.get("/api/hosts", params={"status": "up"}).json()} == {
            "web1",
            "web2",
        }
        web1 = client.get("/api/hosts/web1").json()
        assert web1["stages"] == ["docker_compose"] and web1["facts"] == {"os": "debian"}
        assert "load1" in web1["metric_names"] and "disk_used_pct:/" in web1["metric_names"]
        assert [c["name"] for c in web1["containers"]] == ["app", "worker", "old"]
        assert web1["recent_runs"][0]["counts"] == {"changed": 1}
        assert web1["alerts"][0]["rule"] == "disk_full"
        day = client.get("/api/hosts/web1/metrics/load1", params={"since": "24h"}).json()
        assert 250 <= len(day["points"]) <= 300 and day["step"] >= 1
        hour = client.get("/api/hosts/web1/metrics/disk_used_pct:/", params={"since": "1h"})
        assert {v for _, v in hour.json()["points"]} == {55.0}
        few = client.get("/api/hosts/web1/metrics/load1", params={"since": "24h", "points": 24})
        assert len(few.json()["points"]) <= 25
        runs = client.get("/api/runs").json()
        assert runs[-1]["command"] == "machineroom apply site.yml"
        run = client.get(f"/api/runs/{runs[-1]['id']}").json()
        assert run["hosts"]["web1"][0]["diff"] == "-old\n+new\n"
        assert client.get("/api/alerts", params={"state": "open"}).json()[0]["value"] == 95.5
        audit = client.get("/api/audit", params={"host": "web1"}).json()
        assert audit[0]["command"] == "cat /etc/motd"
        assert {p["name"] for p in client.get("/api/playbooks").json()} == {
            "playbooks/check.yml",
            "playbooks/slow.yml",
        }


def test_errors_have_one_shape_and_say_what_is_wrong(site: dict[str, Any]) -> None:
    with site["server"].client(site["tokens"]["viewer"]) as client:
        assert "did you mean" in error(client.get("/api/hosts/web9"), 404, "not_found")
        assert "unknown run 99999" in error(client.get("/api/runs/99999"), 404)
        assert "no metric 'lod1'" in error(client.get("/api/hosts/web1/metrics/lod1"), 404)
        error(client.get("/api/runs/abc"), 400, "invalid_input")
        error(client.get("/api/runs/99999999999999999999999"), 400)
        assert "24h" in error(client.get("/api/hosts/web1/metrics/load1?since=forever"), 400)
        error(client.get("/api/alerts", params={"state": "maybe"}), 400)
        error(client.get("/api/nothing"), 404)
        error(client.delete("/api/hosts"), 405, "method_not_allowed")


def test_a_viewer_cannot_start_anything(site: dict[str, Any]) -> None:
    with site["server"].client(site["tokens"]["viewer"]) as client:
        body = {"playbook": "playbooks/check.yml"}
        assert "needs operator" in error(client.post("/api/actions/apply", json=body), 403)
        error(client.post("/api/actions/collect", json={"pattern": "all"}), 403, "forbidden")
        error(client.post("/api/hosts/web1/collect"), 403)
        error(client.get("/api/tokens"), 403)
        assert client.get("/api/actions").json() == []


def test_an_operator_applies_and_finds_the_run_it_started(site: dict[str, Any]) -> None:
    with site["server"].client(site["tokens"]["operator"]) as client:
        started = client.post("/api/actions/apply", json={"playbook": "playbooks/check.yml"})
        assert started.status_code == 202, started.text
        action = started.json()
        assert action["check"] is True and action["by"] == "operator"

        def finished() -> Any:
            now = client.get(f"/api/actions/{action['id']}").json()
            return now if not now["running"] and now["run_id"] else None

        done = wait_for(finished)
        run = client.get(f"/api/runs/{done['run_id']}").json()["run"]
        assert run["trigger"].startswith("web:operator:") and run["kind"] == "apply"
        assert "--check" in run["command"]
        assert run["status"] in {"unreachable", "ok", "failed"}
        # The same run is in the history the CLI shows.
        shown = machineroom("history", "--state", str(site["state"]), cwd=site["root"])
        assert str(done["run_id"]) in shown


def test_one_apply_of_a_playbook_at_a_time(site: dict[str, Any]) -> None:
    with site["server"].client(site["tokens"]["operator"]) as client:
        first = client.post("/api/actions/apply", json={"playbook": "playbooks/slow.yml"})
        assert first.status_code == 202, first.text
        second = client.post("/api/actions/apply", json={"playbook": "playbooks/slow.yml"})
        assert "already running" in error(second, 409, "conflict")


def test_actions_refuse_unknown_playbooks_paths_and_patterns(site: dict[str, Any]) -> None:
    with site["server"].client(site["tokens"]["operator"]) as client:
        for name in ("../inventory.yml", "/etc/passwd", "playbooks/../inventory.yml"):
            assert "unknown playbook" in error(
                client.post("/api/actions/apply", json={"playbook": name}), 400
            )
        message = error(client.post("/api/actions/collect", json={"pattern": "--help"}), 400)
        assert "pattern" in message
        error(client.post("/api/actions/apply", json={"playbook": "x", "rm": 1}), 400)
        error(
            client.post(
                "/api/actions/apply",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            400,
        )


def test_collecting_one_host_answers_503_when_down_and_408_when_hung(
    site: dict[str, Any],
) -> None:
    with site["server"].client(site["tokens"]["operator"]) as client:
        assert "unreachable" in error(client.post("/api/hosts/web2/collect"), 503, "unavailable")
        started = time.monotonic()
        hung = client.post("/api/hosts/slow1/collect", params={"timeout": 1})
        assert "within 1 s" in error(hung, 408, "timeout")
        assert time.monotonic() - started < 9
        error(client.post("/api/hosts/nohost/collect"), 404)
        # The child was killed with its process group; its run does not stay "running".
        runs = client.get("/api/runs", params={"kind": "collect"}).json()
        mine = [
            r for r in runs if r["trigger"].startswith("web:operator:") and "slow1" in r["command"]
        ]
        assert mine[0]["status"] == "interrupted", mine[0]


def test_an_admin_manages_tokens(site: dict[str, Any]) -> None:
    server: Server = site["server"]
    with server.client(site["tokens"]["admin"]) as admin:
        made = admin.post("/api/tokens", json={"name": "ci", "role": "viewer", "expires": "7d"})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        assert token.startswith("mr_") and made.json()["info"]["expires_at"]
        error(admin.post("/api/tokens", json={"name": "ci", "role": "viewer"}), 409)
        error(admin.post("/api/tokens", json={"name": "bad name", "role": "viewer"}), 400)
        error(admin.post("/api/tokens", json={"name": "x", "role": "root"}), 400)
        with server.client(token) as ci:
            assert ci.get("/api/me").json()["role"] == "viewer"
            assert admin.delete("/api/tokens/ci").json()["state"] == "revoked"
            error(ci.get("/api/me"), 401)
        assert "did you mean 'ci'" in error(admin.delete("/api/tokens/cj"), 404)


def test_browser_sessions_need_the_csrf_token_to_post(site: dict[str, Any]) -> None:
    server: Server = site["server"]
    with server.client() as browser:
        bad = browser.post("/login", data={"token": "mr_nope", "next": "/"})
        assert bad.status_code == 401 and "unknown token" in bad.text
        login = browser.post("/login", data={"token": site["tokens"]["operator"], "next": "/"})
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert site["tokens"]["operator"].lower() not in cookie
        assert browser.get("/api/me").json()["name"] == "operator"
        refused = browser.post("/api/actions/collect", json={"pattern": "web1"})
        assert error(refused, 403, "csrf")
        foreign = browser.post(
            "/api/actions/collect",
            json={"pattern": "web1"},
            headers={"Origin": "http://evil.example", "X-CSRF-Token": "x"},
        )
        assert "cross-site" in error(foreign, 403, "csrf")
        page = browser.get("/actions")
        assert page.status_code == 200 and 'name="csrf"' in page.text
        assert browser.post("/logout", data={}).status_code == 403


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A server of its own (its actions do not meet the module's), with a hung host whose
    connection waits a minute, and $TMPDIR in tmp_path."""
    root = tmp_path / "site"
    (root / "playbooks").mkdir(parents=True)
    (root / ".ssh").mkdir()
    (root / "tmp").mkdir()
    silent = SilentHost()
    closed = free_port()
    (root / "inventory.yml").write_text(
        "all:\n  vars: {user: root, connect_timeout: 60}\n  hosts:\n"
        f"    web1: {{host: 127.0.0.1, port: {closed}}}\n"
        f"    slow1: {{host: 127.0.0.1, port: {silent.port}}}\n"
        f"    slow2: {{host: 127.0.0.1, port: {silent.port}}}\n"
    )
    (root / "playbooks" / "slow.yml").write_text(
        "- hosts: slow1\n  gather_facts: false\n  tasks:\n    - command: 'true'\n"
    )
    state = root / ".machineroom" / "state.db"
    env = {
        "HOME": str(root),
        "SSH_AUTH_SOCK": "",
        "TMPDIR": str(root / "tmp"),
    }
    token = make_token(root, state, "op", "operator")
    server = Server(root, state, [root / "inventory.yml"], env)
    try:
        yield {"root": root, "state": state, "server": server, "token": token}
    finally:
        server.stop()
        silent.close()


def test_synchronous_collects_share_the_action_limits(lone: dict[str, Any]) -> None:
    server: Server = lone["server"]
    with server.client(lone["token"]) as client:
        # A synchronous collect holds a slot while it waits: the same collection is refused.
        answers: list[httpx.Response] = []

        def wait_for_collect() -> None:
            with server.client(lone["token"]) as other:
                answers.append(other.post("/api/hosts/slow1/collect", params={"timeout": 4}))

        waiting = threading.Thread(target=wait_for_collect)
        waiting.start()
        wait_for(lambda: client.get("/api/runs", params={"kind": "collect"}).json(), 10, 0.05)
        refused = client.post("/api/actions/collect", json={"pattern": "slow1"})
        assert "'slow1' is already running" in error(refused, 409, "conflict")
        waiting.join()
        assert "within 4 s" in error(answers[0], 408, "timeout")
        # Actions fill the slots: a synchronous collect is then refused at once, not queued.
        for pattern in ("slow1", "slow2", "all"):
            started = client.post("/api/actions/collect", json={"pattern": pattern})
            assert started.status_code == 202, started.text
        same = client.post("/api/hosts/slow2/collect", params={"timeout": 30})
        assert "'slow2' is already running" in error(same, 409, "conflict")
        applying = client.post("/api/actions/apply", json={"playbook": "playbooks/slow.yml"})
        assert applying.status_code == 202, applying.text
        begun = time.monotonic()
        full = client.post("/api/hosts/web1/collect", params={"timeout": 30})
        assert "4 actions are running" in error(full, 409, "conflict")
        assert time.monotonic() - begun < 2


def test_a_run_whose_process_died_shows_as_interrupted(lone: dict[str, Any]) -> None:
    # A CLI run killed before it could record its end: the process that started it is gone.
    code = (
        "import sys; from machineroom.state import open_state\n"
        "with open_state(sys.argv[1]) as store: print(store.start_run('collect', 'died'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(lone["state"])], capture_output=True, text=True
    )
    run_id = int(out.stdout)
    with lone["server"].client(lone["token"]) as client:

        def interrupted() -> Any:
            run = client.get(f"/api/runs/{run_id}").json()["run"]
            return run if run["status"] == "interrupted" else None

        run = wait_for(interrupted, timeout=15, every=0.5)
        assert "ended without finishing" in run["summary"]["reason"]


def test_stopping_the_server_removes_the_action_logs(lone: dict[str, Any]) -> None:
    server: Server = lone["server"]
    with server.client(lone["token"]) as client:
        started = client.post("/api/actions/collect", json={"pattern": "web1"})
        assert started.status_code == 202, started.text
        wait_for(lambda: not client.get(f"/api/actions/{started.json()['id']}").json()["running"])
    (logs,) = (lone["root"] / "tmp").glob("machineroom-web-*")
    assert logs.stat().st_mode & 0o777 == 0o700
    assert [p.suffix for p in logs.iterdir()] == [".log"]
    server.stop()
    assert server.process.returncode is not None
    assert list((lone["root"] / "tmp").glob("machineroom-web-*")) == []


def test_the_alerts_page_shows_every_open_alert_however_old(site: dict[str, Any]) -> None:
    with sqlite3.connect(site["state"]) as db:
        db.execute(
            "INSERT INTO alerts (rule, host_id, subject, severity, state, opened_at, value,"
            " message) VALUES ('ancient', 'db1', '', 'warning', 'open',"
            " '2020-01-01T00:00:00.000Z', 1.0, 'open since 2020')"
        )
        db.executemany(
            "INSERT INTO alerts (rule, host_id, subject, severity, state, opened_at,"
            " resolved_at, value, message) VALUES ('flap', 'db1', ?, 'warning', 'resolved',"
            " '2029-01-01T00:00:00.000Z', '2029-01-01T00:01:00.000Z', 1.0, 'flapped')",
            [(f"s{n}",) for n in range(510)],
        )
    try:
        with site["server"].client(site["tokens"]["viewer"]) as client:
            page = client.get("/alerts")
            assert page.status_code == 200 and "open since 2020" in page.text
            assert page.text.index("open since 2020") < page.text.index("flapped")
            assert page.text.count("flapped") == 500
            assert "open since 2020" in client.get("/alerts", params={"state": "open"}).text
            assert "open since 2020" not in client.get("/alerts?state=resolved").text
    finally:
        with sqlite3.connect(site["state"]) as db:
            db.execute("DELETE FROM alerts WHERE rule IN ('ancient', 'flap')")


def test_the_openapi_document_is_valid_and_describes_auth_and_errors(
    site: dict[str, Any],
) -> None:
    viewer = {"Authorization": f"Bearer {site['tokens']['viewer']}"}
    document = httpx.get(site["url"] + "/openapi.json", headers=viewer).json()
    schemathesis.openapi.from_dict(document).validate()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert "ErrorResponse" in document["components"]["schemas"]
    for path, item in document["paths"].items():
        assert path.startswith("/api/"), path
        for operation in item.values():
            assert {"bearerAuth"} <= {k for s in operation["security"] for k in s}, path
            assert {"401", "403"} <= set(operation["responses"]), path
    assert "404" in document["paths"]["/api/hosts/{host_id}"]["get"]["responses"]
    assert "408" in document["paths"]["/api/hosts/{host_id}/collect"]["post"]["responses"]


def test_no_input_makes_a_server_error(site: dict[str, Any]) -> None:
    """Schemathesis against the live OpenAPI document: valid and invalid input for every
    operation, with an admin token (it reaches every endpoint, actions included: the
    inventory's hosts are unreachable, so started collections and applies end at once)."""
    headers = {"Authorization": f"Bearer {site['tokens']['admin']}"}
    schema = schemathesis.openapi.from_url(site["url"] + "/openapi.json", headers=headers)
    calls: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=8,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=site["url"], headers=headers, checks=[not_a_server_error], timeout=60
                )
                calls.append(response.status_code)

            fuzz()
    assert len(calls) > 8 * len(operations) and 500 not in calls
