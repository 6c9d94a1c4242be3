"""Alerts: rules from alerts.yml evaluated after collections, opened and resolved once each,
notified through a real command and a real HTTP server; then end to end with
`machineroom collect` against real sshd hosts (fleet_lab h5-h7).

The unit tests fill a real SQLite state database in tmp_path with `record_collections`, as a
collection does, at chosen times.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import paramiko
import pytest
from clirun import machineroom

from machineroom.errors import InputError
from machineroom.fleet.alerts import AlertChange, evaluate_after_collection
from machineroom.fleet.alerts_rules import load_alert_rules
from machineroom.inventory import Inventory, load_inventory
from machineroom.lab import Lab
from machineroom.state import StateStore, open_state
from machineroom.state.alerts import NewAlert
from machineroom.state.metrics import HostCollection

DATA = Path(__file__).parent / "data" / "alerts"
RECORDER = DATA / "alerts_record.py"
T0 = 1_700_000_000  # a fixed unix time: evaluations pass `now` explicitly


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with open_state(tmp_path / "state.db") as opened:
        yield opened


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    lines = ["all:", "  children:", "    web:", "      hosts:"]
    lines += [f"        h{i}: {{host: 127.0.0.{i}}}" for i in (5, 6)]
    lines += ["    db:", "      hosts:", "        h7: {host: 127.0.0.7}"]
    (tmp_path / "inventory.yml").write_text("\n".join(lines) + "\n")
    return load_inventory(tmp_path / "inventory.yml")


def write_rules(tmp_path: Path, rules: str, notifiers: str = "") -> Path:
    """alerts.yml with a `log` notifier appending each alert's JSON to notified.jsonl."""
    log = tmp_path / "notified.jsonl"
    text = "notifiers:\n"
    text += f"  log:\n    command: {json.dumps([sys.executable, str(RECORDER), str(log)])}\n"
    text += notifiers + "rules:\n" + rules
    path = tmp_path / "alerts.yml"
    path.write_text(text)
    return path


def notified(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "notified.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def collect(
    store: StateStore,
    at: int,
    host: str = "h5",
    reachable: bool = True,
    containers: list[dict[str, Any]] | None = None,
    **metrics: float,
) -> None:
    store.metrics.record_collections(
        [
            HostCollection(
                host_id=host,
                at=at,
                reachable=reachable,
                error="" if reachable else "connection refused",
                # disk_used_pct__data=95 stands for disk_used_pct:/data
                metrics={k.replace("__", ":/"): v for k, v in metrics.items()},
                containers=containers or [],
            )
        ]
    )


def rows(store: StateStore, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(store.path) as db:
        return list(db.execute(sql))


def evaluate(
    store: StateStore, inventory: Inventory, rules: Path, at: int, hosts: tuple[str, ...] = ("h5",)
) -> list[AlertChange]:
    return evaluate_after_collection(store, inventory, rules, list(hosts), at)


DISK_RULE = """\
  disk-full:
    metric: "disk_used_pct:*"
    above: 90
    for: 10m
    severity: critical
    message: "{host}: {subject} is {value:.0f}% full"
    notify: [log]
"""


# -- rule evaluation -----------------------------------------------------------------------------


def test_metric_held_for_the_whole_window_opens_once_and_resolves_once(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(tmp_path, DISK_RULE)
    # every 5 minutes: fine, then over 90 % from T0+300 on
    for step, pct in enumerate([50, 95, 96, 97, 97, 97]):
        at = T0 + step * 300
        collect(store, at, disk_used_pct__data=pct, **{"disk_used_pct:/": 10})
        changes = evaluate(store, inventory, rules, at)
        if step < 3:  # over for 0, 0 and 5 minutes: not yet 10
            assert changes == [], step
        elif step == 3:  # over since T0+300, now T0+900: 10 minutes
            assert [(c.state, c.subject, c.value) for c in changes] == [("opened", "/data", 97.0)]
            assert changes[0].message == "h5: /data is 97% full"
            assert changes[0].severity == "critical" and changes[0].notify_errors == ()
        else:  # still over: still the one open alert, nobody told again
            assert changes == []
    assert len(notified(tmp_path)) == 1
    collect(store, T0 + 1800, disk_used_pct__data=40, **{"disk_used_pct:/": 10})
    changes = evaluate(store, inventory, rules, T0 + 1800)
    assert [(c.state, c.subject, c.value) for c in changes] == [("resolved", "/data", 97.0)]
    assert "(resolved: disk_used_pct:/data is 40)" in changes[0].message
    for later in (2100, 2400):
        collect(store, T0 + later, disk_used_pct__data=40)
        assert evaluate(store, inventory, rules, T0 + later) == []
    sent = notified(tmp_path)
    assert [(n["event"], n["subject"], n["state"]) for n in sent] == [
        ("opened", "/data", "open"),
        ("resolved", "/data", "resolved"),
    ]
    assert sent[0]["id"] == sent[1]["id"]
    assert sent[0]["metric"] == "disk_used_pct:/data" and sent[0]["threshold"] == 90
    assert sent[0]["host"] == "h5" and sent[0]["rule"] == "disk-full"
    assert rows(
        store,
        "SELECT state, notified_open_at IS NOT NULL, notified_resolved_at IS NOT NULL,"
        " notify_error FROM alerts",
    ) == [("resolved", 1, 1, "")]


def test_a_dip_inside_the_window_restarts_it(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(tmp_path, DISK_RULE)
    for step, pct in enumerate([95, 95, 80, 95, 95]):  # the dip at T0+600
        collect(store, T0 + step * 300, disk_used_pct__data=pct)
        assert evaluate(store, inventory, rules, T0 + step * 300) == [], step
    collect(store, T0 + 1500, disk_used_pct__data=95)  # over since T0+900: 10 minutes
    assert len(evaluate(store, inventory, rules, T0 + 1500)) == 1


def test_a_mount_that_disappears_resolves_its_alert(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(tmp_path, '  disk:\n    metric: "disk_used_pct:*"\n    above: 90\n')
    collect(store, T0, disk_used_pct__data=99, disk_used_pct__var=95, **{"disk_used_pct:/": 5})
    opened = evaluate(store, inventory, rules, T0)
    assert sorted(c.subject for c in opened) == ["/data", "/var"]
    collect(store, T0 + 60, disk_used_pct__var=95, **{"disk_used_pct:/": 5})  # /data unmounted
    changes = evaluate(store, inventory, rules, T0 + 60)
    assert [(c.state, c.subject) for c in changes] == [("resolved", "/data")]
    assert changes[0].message.endswith("(resolved: no longer reported)")
    assert rows(store, "SELECT subject FROM alerts WHERE state = 'open'") == [("/var",)]


def test_unreachable_for_three_collections_opens_one_alert(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(
        tmp_path,
        "  down:\n    condition: unreachable\n    severity: critical\n    notify: log\n"
        + "  load:\n    metric: load1\n    above: 1\n",
    )
    collect(store, T0, load1=5)
    assert [c.rule for c in evaluate(store, inventory, rules, T0)] == ["load"]
    for n in range(1, 6):
        collect(store, T0 + n * 60, reachable=False)
        changes = evaluate(store, inventory, rules, T0 + n * 60)
        # opens at the third failure; the load alert stays open while nothing is known
        assert [(c.rule, c.state) for c in changes] == ([("down", "opened")] if n == 3 else [])
    assert rows(store, "SELECT rule, value FROM alerts WHERE state = 'open' ORDER BY rule") == [
        ("down", 3.0),
        ("load", 5.0),
    ]
    collect(store, T0 + 600, load1=0.2)
    changes = evaluate(store, inventory, rules, T0 + 600)
    assert sorted((c.rule, c.state) for c in changes) == [
        ("down", "resolved"),
        ("load", "resolved"),
    ]
    assert [n["event"] for n in notified(tmp_path)] == ["opened", "resolved"]
    assert notified(tmp_path)[0]["message"] == "unreachable for 3 collections"


def test_container_not_running(tmp_path: Path, store: StateStore, inventory: Inventory) -> None:
    rules = write_rules(
        tmp_path,
        "  containers:\n    condition: container_not_running\n    containers: ['web-*', db]\n"
        "    notify: [log]\n",
    )

    def containers(web: str, db: str) -> list[dict[str, Any]]:
        return [
            {"name": "web-1", "image": "nginx", "state": web, "status": f"{web} 1m"},
            {"name": "db", "image": "pg", "state": db, "status": f"{db} 1h"},
            {"name": "job", "image": "x", "state": "exited", "status": "Exited (0)"},  # not watched
        ]

    collect(store, T0, containers=containers("running", "running"))
    assert evaluate(store, inventory, rules, T0) == []
    collect(store, T0 + 60, containers=containers("exited", "running"))
    changes = evaluate(store, inventory, rules, T0 + 60)
    assert [(c.state, c.subject, c.message) for c in changes] == [
        ("opened", "web-1", "container web-1 is exited (exited 1m)")
    ]
    collect(store, T0 + 120, containers=containers("exited", "running"))
    assert evaluate(store, inventory, rules, T0 + 120) == []
    collect(store, T0 + 180, containers=containers("running", "running"))
    changes = evaluate(store, inventory, rules, T0 + 180)
    assert [(c.state, c.subject) for c in changes] == [("resolved", "web-1")]
    assert [n["event"] for n in notified(tmp_path)] == ["opened", "resolved"]


def test_stale_host(tmp_path: Path, store: StateStore, inventory: Inventory) -> None:
    rules = write_rules(tmp_path, "  stale:\n    condition: stale\n    for: 30m\n")
    collect(store, T0, load1=1)
    collect(store, T0 + 1200, reachable=False)
    assert evaluate(store, inventory, rules, T0 + 1200) == []
    collect(store, T0 + 1800, reachable=False)
    changes = evaluate(store, inventory, rules, T0 + 1800)
    assert [(c.rule, c.value, c.message) for c in changes] == [
        ("stale", 1800.0, "no successful collection for 30m")
    ]
    collect(store, T0 + 1900, load1=1)
    assert [c.state for c in evaluate(store, inventory, rules, T0 + 1900)] == ["resolved"]


def test_rule_hosts_pattern_and_removed_rules(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(tmp_path, "  web-load:\n    hosts: web\n    metric: load1\n    above: 1\n")
    for host in ("h5", "h7"):
        collect(store, T0, host=host, load1=3)
    changes = evaluate(store, inventory, rules, T0, ("h5", "h7"))
    assert [c.host_id for c in changes] == ["h5"]  # h7 is in group db
    # the rule goes: its alert is resolved, without a notification (no notifier is left)
    write_rules(tmp_path, "  other:\n    metric: load5\n    above: 100\n    notify: log\n")
    collect(store, T0 + 60, load1=3)
    changes = evaluate(store, inventory, rules, T0 + 60)
    assert [(c.state, c.message) for c in changes] == [
        ("resolved", "load1 is 3, above 1 (resolved: rule removed from alerts.yml)")
    ]
    assert notified(tmp_path) == []
    # a pattern that selects nothing is the rule's error, at its line
    write_rules(tmp_path, "  x:\n    hosts: wbe\n    metric: load1\n    above: 1\n")
    with pytest.raises(InputError, match=r"alerts.yml:\d+:12: rule 'x': hosts: .*'wbe'"):
        evaluate(store, inventory, rules, T0 + 120)


def test_many_evaluations_one_notification_each_way(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(tmp_path, "  load:\n    metric: load1\n    above: 2\n    notify: [log]\n")
    collect(store, T0, load1=5)
    total = [c for n in range(5) for c in evaluate(store, inventory, rules, T0 + n)]
    assert len(total) == 1
    collect(store, T0 + 10, load1=0)
    total = [c for n in range(5) for c in evaluate(store, inventory, rules, T0 + 10 + n)]
    assert [c.state for c in total] == ["resolved"]
    assert [n["event"] for n in notified(tmp_path)] == ["opened", "resolved"]
    assert rows(store, "SELECT COUNT(*) FROM alerts") == [(1,)]


def test_a_crash_between_recording_and_notifying_notifies_once_later(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(tmp_path, "  load:\n    metric: load1\n    above: 2\n    notify: [log]\n")
    collect(store, T0, load1=5)
    # what a process killed after its write transaction leaves: an open, unnotified alert
    store.alerts.record_alert_changes(
        [NewAlert("load", "h5", "", "warning", 5.0, "load1 is 5")], [], T0
    )
    assert notified(tmp_path) == []
    # already open: not opened again; a fresh change may be another evaluation's, in flight
    assert evaluate(store, inventory, rules, T0 + 60) == []
    assert notified(tmp_path) == []
    # ten minutes on, it was left by a process that died: notified now, once
    assert evaluate(store, inventory, rules, T0 + 600) == []
    assert [n["event"] for n in notified(tmp_path)] == ["opened"]
    evaluate(store, inventory, rules, T0 + 1200)
    assert len(notified(tmp_path)) == 1


def test_concurrent_evaluations_notify_once(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    """Two collections finishing together (the scheduler's and a manual one), each with its
    own connection to the database, evaluating the same hosts at once."""
    rules = write_rules(tmp_path, "  load:\n    metric: load1\n    above: 2\n    notify: [log]\n")
    collect(store, T0, load1=5)
    others = [open_state(store.path) for _ in range(4)]
    results: list[list[AlertChange]] = []
    barrier = threading.Barrier(len(others))

    def worker(mine: StateStore) -> None:
        barrier.wait()
        results.append(evaluate(mine, inventory, rules, T0 + 1))

    threads = [threading.Thread(target=worker, args=(s,)) for s in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        other.close()
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert [n["event"] for n in notified(tmp_path)] == ["opened"]


def test_notifier_failures_are_recorded_not_fatal(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\necho 'no route to pager' >&2\nexit 3\n")
    failing.chmod(0o755)
    notifiers = (
        "  failing:\n    command: ./fail.sh --now\n"
        "  missing:\n    command: [/nonexistent/notify]\n"
        "  slow:\n    command: [sleep, '5']\n    timeout: 1s\n"
        "  closed:\n    webhook: http://127.0.0.1:9/hooks/T0/secret-token\n    timeout: 2s\n"
    )
    rules = write_rules(
        tmp_path,
        "  load:\n    metric: load1\n    above: 2\n"
        "    notify: [failing, missing, slow, closed, log]\n",
        notifiers,
    )
    collect(store, T0, load1=5)
    started = time.monotonic()
    changes = evaluate(store, inventory, rules, T0)
    assert time.monotonic() - started < 4.5  # the slow one was cut at its timeout
    assert len(changes) == 1 and changes[0].state == "opened"
    errors = changes[0].notify_errors
    assert errors[0] == "notifier failing: ./fail.sh exited 3: no route to pager"
    assert errors[1].startswith("notifier missing: cannot run /nonexistent/notify: No such file")
    assert errors[2] == "notifier slow: sleep timed out after 1s"
    assert errors[3].startswith("notifier closed (http://127.0.0.1:9/***): ")
    assert len(errors) == 4
    assert len(notified(tmp_path)) == 1  # the working notifier still got it
    (stored,) = rows(store, "SELECT notify_error, notified_open_at IS NOT NULL FROM alerts")
    assert stored[1] == 1 and "exited 3" in stored[0] and "secret-token" not in stored[0]
    everything = "\n".join(str(r) for r in rows(store, "SELECT * FROM alerts"))
    assert "secret-token" not in everything


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(500 if "fail" in self.path else 204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[str]:
    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_receives_the_alert_as_json(
    tmp_path: Path,
    store: StateStore,
    inventory: Inventory,
    hook_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_URL", f"{hook_server}/hooks/T0/secret-token")
    monkeypatch.setenv("HOOK_AUTH", "Bearer abc123")
    notifiers = (
        "  chat:\n    webhook: !env HOOK_URL\n    headers: {Authorization: !env HOOK_AUTH}\n"
        f"  broken:\n    webhook: {hook_server}/fail/other-token\n"
    )
    rules = write_rules(
        tmp_path,
        "  load:\n    metric: load1\n    above: 2\n    notify: [chat, broken]\n",
        notifiers,
    )
    collect(store, T0, load1=5)
    (change,) = evaluate(store, inventory, rules, T0)
    assert change.notify_errors == (
        f"notifier broken ({hook_server}/***): HTTP 500 Internal Server Error",
    )
    collect(store, T0 + 60, load1=1)
    evaluate(store, inventory, rules, T0 + 60)
    chat = [r for r in _Hook.received if r[0].startswith("/hooks/")]
    assert [r[0] for r in chat] == ["/hooks/T0/secret-token"] * 2
    _, headers, body = chat[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer abc123"
    assert body["event"] == "opened" and body["source"] == "machineroom"
    assert {k: body[k] for k in ("rule", "host", "subject", "severity", "value", "threshold")} == {
        "rule": "load",
        "host": "h5",
        "subject": "",
        "severity": "warning",
        "value": 5.0,
        "threshold": 2.0,
    }
    assert chat[1][2]["event"] == "resolved" and chat[1][2]["value"] == 5.0
    assert chat[1][2]["message"] == "load1 is 5, above 2 (resolved: load1 is 1)"
    stored = rows(store, "SELECT notify_error FROM alerts")[0][0]
    assert "other-token" not in stored and "HTTP 500" in stored


class _Redirect(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a 302 to `target`; records whatever reaches `target`'s side."""

    target: ClassVar[str] = ""
    landed: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def do_POST(self) -> None:
        if self.path.startswith("/landed/"):
            self._land()
            return
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(302)
        self.send_header("Location", _Redirect.target + "/landed/other-token")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._land()

    def _land(self) -> None:
        _Redirect.landed.append((self.command, self.path, dict(self.headers)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_webhook_redirect_is_refused_not_followed(
    tmp_path: Path, store: StateStore, inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Redirect.landed = []
    monkeypatch.setenv("HOOK_AUTH", "Bearer abc123")
    with _serving(_Redirect) as first, _serving(_Redirect) as second:
        _Redirect.target = second
        notifiers = (
            f"  moved:\n    webhook: {first}/hooks/T0/secret-token\n"
            "    headers: {Authorization: !env HOOK_AUTH}\n"
        )
        rules = write_rules(
            tmp_path, "  load:\n    metric: load1\n    above: 2\n    notify: [moved]\n", notifiers
        )
        collect(store, T0, load1=5)
        (change,) = evaluate(store, inventory, rules, T0)
    assert _Redirect.landed == []  # the second server never saw the request (nor the token)
    assert change.notify_errors == (
        f"notifier moved ({first}/***): HTTP 302 Found: redirects are not followed",
    )
    stored = rows(store, "SELECT notify_error FROM alerts")[0][0]
    assert "redirects are not followed" in stored and "secret-token" not in stored


# -- the rules file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(p.name for p in DATA.glob("alerts_invalid_*.yml")), ids=lambda n: n[15:-4]
)
def test_invalid_rules_files(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)
    with pytest.raises(InputError) as caught:
        load_alert_rules(name)
    expected = (DATA / name).with_suffix(".expected").read_text().rstrip("\n")
    assert str(caught.value) == expected


def test_valid_rules_file_defaults(tmp_path: Path) -> None:
    rules = load_alert_rules(
        write_rules(tmp_path, DISK_RULE + "  down: {condition: unreachable}\n")
    )
    disk, down = rules.rules["disk-full"], rules.rules["down"]
    assert (disk.for_seconds, disk.above, disk.metric_prefix) == (600.0, 90.0, "disk_used_pct:")
    assert (down.kind, down.collections, down.severity, down.hosts) == (
        "unreachable",
        3,
        "warning",
        "all",
    )
    assert rules.notifiers["log"].argv[1] == str(RECORDER)


# -- the command line ----------------------------------------------------------------------------


def test_alerts_command_lists_and_checks(
    tmp_path: Path, store: StateStore, inventory: Inventory
) -> None:
    rules = write_rules(tmp_path, "  load:\n    metric: load1\n    above: 2\n    notify: [log]\n")
    collect(store, T0, load1=5)
    collect(store, T0, host="h6", load1=4)
    evaluate(store, inventory, rules, T0, ("h5", "h6"))
    collect(store, T0 + 60, host="h6", load1=1)
    evaluate(store, inventory, rules, T0 + 60, ("h6",))
    state = str(store.path)
    listed = machineroom("alerts", "--state", state, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "STATE",
        "SEVERITY",
        "RULE",
        "HOST",
        "SUBJECT",
        "SINCE",
        "VALUE",
        "MESSAGE",
    ]
    assert len(lines) == 2 and lines[1].split()[:5] == ["open", "warning", "load", "h5", "-"]
    every = machineroom("alerts", "--all", "--json", "--state", state, cwd=tmp_path)
    document = json.loads(every.stdout)["alerts"]
    assert [(a["host_id"], a["state"]) for a in document] == [("h5", "open"), ("h6", "resolved")]
    only = machineroom("alerts", "--all", "--host", "h6", "--state", state, cwd=tmp_path)
    assert "resolved" in only.stdout and " h5 " not in only.stdout
    # check: valid, and what would change now (h5's load fell, not yet evaluated)
    collect(store, T0 + 120, load1=0.5)
    checked = machineroom("alerts", "check", "--state", state, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "1 rules, 1 notifiers: valid" in checked.stdout
    assert "would resolve: load on h5: load1 is 5, above 2 (resolved: load1 is 0.5)" in (
        checked.stdout
    )
    assert rows(store, "SELECT COUNT(*) FROM alerts WHERE state = 'open'") == [(1,)]
    (tmp_path / "alerts.yml").write_text(
        "rules:\n  x:\n    condition: unreachable\n    sevrity: 1\n"
    )
    bad = machineroom("alerts", "check", "--state", state, cwd=tmp_path)
    assert bad.returncode == 4
    assert "alerts.yml:4:5: rule 'x': unknown key 'sevrity' (did you mean 'severity'?)" in (
        bad.stderr
    )


def test_notify_test_command(tmp_path: Path) -> None:
    write_rules(tmp_path, "  x: {condition: unreachable}\n", "  bad:\n    command: 'false'\n")
    sent = machineroom("alerts", "notify-test", "log", "--rules", "alerts.yml", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert notified(tmp_path)[0]["event"] == "test"
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1: {host: 127.0.0.1}\n")
    failed = machineroom("alerts", "notify-test", "bad", cwd=tmp_path)  # found beside it
    assert failed.returncode == 1 and "notifier bad: false exited 1" in failed.stderr
    unknown = machineroom("alerts", "notify-test", "lgo", cwd=tmp_path)
    assert unknown.returncode == 4 and "did you mean 'log'" in unknown.stderr


# -- end to end: machineroom collect against real hosts -------------------------------------------


def root_run(lab: Lab, index: int, command: str) -> str:
    """Run `command` as root on lab host `index` over SSH; its stdout."""
    client = paramiko.SSHClient()
    client.load_host_keys(lab.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    host = lab.hosts[index]
    client.connect(
        host.address,
        host.port,
        username="root",
        key_filename=lab.key,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    try:
        _, stdout, stderr = client.exec_command(command, timeout=30)
        code = stdout.channel.recv_exit_status()
        out = stdout.read().decode()
        assert code == 0, f"{command}: {stderr.read().decode()}"
        return out
    finally:
        client.close()


def test_collect_opens_and_resolves_alerts_on_real_hosts(tmp_path: Path, fleet_lab: Lab) -> None:
    """h5's disk fills past 90 % and is freed again; h7's sshd is stopped for good."""
    if not (Path(__file__).parent.parent / "machineroom" / "cli" / "fleet_cmds.py").exists():
        pytest.skip("machineroom collect is not there yet")
    lines = ["all:", "  vars:", f"    ssh_key: {fleet_lab.key}", "    user: root", "  hosts:"]
    lines += [f"    h{i + 1}: {{host: {fleet_lab.hosts[i].address}}}" for i in (4, 5, 6)]
    (tmp_path / "inventory.yml").write_text("\n".join(lines) + "\n")
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    write_rules(
        tmp_path,
        '  disk-full:\n    metric: "disk_used_pct:*"\n    above: 90\n    severity: critical\n'
        '    message: "{host}: {subject} is {value:.0f}% full"\n    notify: [log]\n'
        "  down:\n    condition: unreachable\n    collections: 3\n    notify: [log]\n",
    )
    root_run(fleet_lab, 4, "mkdir -p /mnt/small && mount -t tmpfs -o size=4m tmpfs /mnt/small")

    def run_collect() -> subprocess.CompletedProcess[str]:
        out = machineroom("collect", "all", "--connect-timeout", "3", cwd=tmp_path)
        assert out.returncode in (0, 3), out.stderr
        time.sleep(1.05)  # samples are keyed by the second
        return out

    first = run_collect()
    assert first.returncode == 0 and "alert" not in first.stderr, first.stderr
    root_run(fleet_lab, 4, "dd if=/dev/zero of=/mnt/small/fill bs=1k count=3900 2>/dev/null")
    second = run_collect()
    assert "alert opened: disk-full on h5 /mnt/small [critical] h5: /mnt/small is" in (
        second.stderr
    )
    db = tmp_path / ".machineroom" / "state.db"
    with sqlite3.connect(db) as conn:
        opened = conn.execute("SELECT host_id, subject, value FROM alerts").fetchall()
    assert len(opened) == 1 and opened[0][:2] == ("h5", "/mnt/small") and opened[0][2] > 90
    run_collect()  # still full: nothing new
    root_run(fleet_lab, 4, "rm /mnt/small/fill")
    freed = run_collect()
    assert "alert resolved: disk-full on h5 /mnt/small" in freed.stderr
    # h7 goes down: its sshd is stopped (the host stays down for the rest of the session)
    root_run(fleet_lab, 6, "kill $(cat /run/sshd.pid)")
    outputs = [run_collect() for _ in range(4)]
    assert all(o.returncode == 3 for o in outputs)
    assert ["alert opened: down on h7" in o.stderr for o in outputs] == [False, False, True, False]
    sent = notified(tmp_path)
    assert [(n["rule"], n["host"], n["event"]) for n in sent] == [
        ("disk-full", "h5", "opened"),
        ("disk-full", "h5", "resolved"),
        ("down", "h7", "opened"),
    ]
    listed = machineroom("alerts", "--all", cwd=tmp_path)
    assert listed.returncode == 0
    assert [line.split()[:4] for line in listed.stdout.splitlines()[1:]] == [
        ["open", "warning", "down", "h7"],
        ["resolved", "critical", "disk-full", "h5"],
    ]
    root_run(fleet_lab, 4, "umount /mnt/small")
