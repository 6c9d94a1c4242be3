"""`machineroom forget` and `import --prune` end to end: a real state database filled through
the store, the CLI run as a subprocess, the tables read back with sqlite3."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from clirun import machineroom

from machineroom.state import open_state
from machineroom.state.alerts import NewAlert
from machineroom.state.metrics import HostCollection, now_unix

RECORDER = Path(__file__).parent / "data" / "alerts" / "alerts_record.py"

SERVERS = """\
web1--10.0.0.1--root------22
web2--10.0.0.2--root------22
db1--10.0.0.3--admin------2222
"""

# Every table keyed by host, and the column holding the host id.
HOST_TABLES = {
    "server_room": "id",
    "host_status": "host_id",
    "series": "host_id",
    "facts": "host_id",
    "alerts": "host_id",
    "task_results": "host_id",
    "audit_log": "host_id",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A folder whose state database knows web1, web2 and db1, each with a pending apply,
    facts, a day of metrics, an alert, a task result and an audit entry."""
    (tmp_path / "scratch.txt").write_text(SERVERS)
    out = machineroom("import", "scratch.txt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    now = now_unix()
    with open_state(tmp_path / ".machineroom" / "state.db") as store:
        run_id = store.start_run("apply", "machineroom apply site.yml", playbook="site.yml")
        for host in ("web1", "web2", "db1"):
            store.record_task_result(run_id, host, "Install docker", "failed", message="boom")
            store.record_command(run_id, host, "apt-get install docker", 100, 0.5)
            store.set_next_action(host, {"stage": "docker", "reason": "failed: boom"})
            store.record_facts(host, {"os": "debian", "cpus": 2}, run_id)
            store.metrics.record_collections(
                [
                    HostCollection(host, now - step * 300, True, metrics={"load1": 0.5})
                    for step in range(12, 0, -1)
                ]
            )
            store.alerts.record_alert_changes(
                [NewAlert("disk_full", host, "/", "warning", 95.0, "disk / is 95% full")], [], now
            )
        store.finish_run(run_id, "failed")
    return tmp_path


def rows_of(repo: Path, host: str) -> dict[str, int]:
    """How many rows each host-keyed table holds for `host`."""
    with sqlite3.connect(repo / ".machineroom" / "state.db") as db:
        return {
            table: db.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = ?", [host]
            ).fetchone()[0]
            for table, column in HOST_TABLES.items()
        }


def samples(repo: Path) -> int:
    with sqlite3.connect(repo / ".machineroom" / "state.db") as db:
        return int(db.execute("SELECT count(*) FROM samples").fetchone()[0])


def test_forget_removes_the_host_and_keeps_its_run_history(repo: Path) -> None:
    before = samples(repo)
    out = machineroom("forget", "web2", "--state", ".machineroom/state.db", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "web2: forgotten (server row, pending apply, 1 facts snapshot, 2 metric series, "
        "1 alert); its 2 run-history row(s) stay"
    )
    assert rows_of(repo, "web2") == {
        "server_room": 0,
        "host_status": 0,
        "series": 0,
        "facts": 0,
        "alerts": 0,
        "task_results": 1,  # history stays: the run's page still shows what it did
        "audit_log": 1,
    }
    assert samples(repo) == before - 24  # 12 collections of load1 and up
    assert rows_of(repo, "web1")["series"] == 2  # the others are untouched
    listed = machineroom("ls", "--state", ".machineroom/state.db", cwd=repo)
    assert "web1" in listed.stdout and "web2" not in listed.stdout
    history = machineroom("history", "--state", ".machineroom/state.db", cwd=repo)
    assert "forget    machineroom forget web2" in history.stdout


def test_an_unknown_id_names_close_ones_and_forgets_nothing(repo: Path) -> None:
    out = machineroom("forget", "web1", "wbe2", "--state", ".machineroom/state.db", cwd=repo)
    assert out.returncode == 4
    assert out.stderr.strip() == (
        "error: unknown host 'wbe2' (did you mean 'web2', 'web1'?); nothing was forgotten"
    )
    assert rows_of(repo, "web1")["server_room"] == 1  # all or nothing


def test_a_host_still_in_the_inventory_is_refused(repo: Path) -> None:
    out = machineroom(
        "forget", "web1", "-i", "scratch.txt", "--state", ".machineroom/state.db", cwd=repo
    )
    assert out.returncode == 4
    assert out.stderr.strip() == (
        "error: web1: in the inventory (scratch.txt), so the next command would add it back "
        "with nothing recorded; remove it from the inventory first, or keep it out of runs "
        "with `machineroom retire web1`"
    )
    assert rows_of(repo, "web1")["server_room"] == 1


def test_a_host_known_only_from_a_collection_can_be_forgotten(repo: Path) -> None:
    with open_state(repo / ".machineroom" / "state.db") as store:
        store.metrics.record_collections([HostCollection("old9", now_unix(), False, "refused")])
    out = machineroom("forget", "old9", "--state", ".machineroom/state.db", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "old9: forgotten (1 metric series)"
    assert rows_of(repo, "old9")["host_status"] == 0


def test_import_prune_leaves_exactly_the_imported_servers(repo: Path) -> None:
    (repo / "smaller.txt").write_text("web1--10.0.0.1--root------22\n")
    out = machineroom("import", "smaller.txt", "--prune", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "web2: alert disk_full resolved (host forgotten)",  # before anything is deleted
        "db1: alert disk_full resolved (host forgotten)",
        f"imported 1 server(s) into {repo / '.machineroom' / 'state.db'}",
        "db1: forgotten (server row, pending apply, 1 facts snapshot, 2 metric series, "
        "1 alert); its 2 run-history row(s) stay [not in smaller.txt]",
        "web2: forgotten (server row, pending apply, 1 facts snapshot, 2 metric series, "
        "1 alert); its 2 run-history row(s) stay [not in smaller.txt]",
        "pruned 2 host(s) not in smaller.txt",
    ]
    with sqlite3.connect(repo / ".machineroom" / "state.db") as db:
        assert [r[0] for r in db.execute("SELECT id FROM server_room")] == ["web1"]
        assert {r[0] for r in db.execute("SELECT host_id FROM host_status")} == {"web1"}
    again = machineroom("import", "smaller.txt", "--prune", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert "pruned 0 host(s) not in smaller.txt" in again.stderr


def test_import_without_prune_keeps_the_other_servers(repo: Path) -> None:
    (repo / "smaller.txt").write_text("web1--10.0.0.1--root------22\n")
    out = machineroom("import", "smaller.txt", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert "forgotten" not in out.stderr
    assert rows_of(repo, "db1")["server_room"] == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.txt", ""),
        ("comments.txt", "# every server moved to the new list\n"),
        ("braces.yml", "{}\n"),
        ("nohosts.yml", "all: {hosts: {}}\n"),
    ],
)
def test_import_prune_of_a_file_listing_no_host_is_refused(
    repo: Path, name: str, text: str
) -> None:
    (repo / name).write_text(text)
    out = machineroom("import", name, "--prune", cwd=repo)
    assert out.returncode == 4
    assert out.stderr.strip() == (
        f"error: {name}: lists no host, so --prune would forget every host of the database; "
        "nothing was changed"
    )
    for host in ("web1", "web2", "db1"):
        assert rows_of(repo, host)["server_room"] == 1
        assert rows_of(repo, host)["alerts"] == 1


def test_import_prune_refuses_a_host_the_project_inventory_lists(repo: Path) -> None:
    (repo / "inventory.yml").write_text("all:\n  hosts:\n    web2: {host: 10.0.0.2}\n")
    (repo / "smaller.txt").write_text("web1--10.0.0.1--root------22\n")
    out = machineroom("import", "smaller.txt", "--prune", cwd=repo)
    assert out.returncode == 4
    assert out.stderr.strip() == (
        "error: web2: in the inventory (inventory.yml), so the next command would add it back "
        "with nothing recorded; remove it from the inventory first, or keep it out of runs "
        "with `machineroom retire web2`"
    )
    assert rows_of(repo, "db1")["server_room"] == 1  # nothing was pruned


def test_dry_run_prints_what_would_go_and_changes_nothing(repo: Path) -> None:
    (repo / "smaller.txt").write_text("web1--10.0.0.1--root------22\n")
    out = machineroom("import", "smaller.txt", "--prune", "--dry-run", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "db1: would be forgotten (server row, pending apply, 1 facts snapshot, 2 metric series, "
        "1 alert); its 2 run-history row(s) would stay [not in smaller.txt]",
        "web2: would be forgotten (server row, pending apply, 1 facts snapshot, 2 metric "
        "series, 1 alert); its 2 run-history row(s) would stay [not in smaller.txt]",
        "would prune 2 host(s) not in smaller.txt; nothing changed",
    ]
    forget = machineroom(
        "forget", "web2", "--dry-run", "--state", ".machineroom/state.db", cwd=repo
    )
    assert forget.returncode == 0, forget.stderr
    assert forget.stdout.splitlines() == [
        "web2: would be forgotten (server row, pending apply, 1 facts snapshot, 2 metric "
        "series, 1 alert); its 2 run-history row(s) would stay",
        "nothing changed (--dry-run)",
    ]
    for host in ("web2", "db1"):
        assert rows_of(repo, host)["server_room"] == 1 and rows_of(repo, host)["alerts"] == 1
    history = machineroom("history", "--state", ".machineroom/state.db", cwd=repo)
    assert "forget" not in history.stdout and "--prune" not in history.stdout


def test_the_close_ids_hint_ignores_case(repo: Path) -> None:
    out = machineroom("forget", "WEB9", "--state", ".machineroom/state.db", cwd=repo)
    assert out.returncode == 4
    assert out.stderr.strip() == (
        "error: unknown host 'WEB9' (did you mean 'web2', 'web1'?); nothing was forgotten"
    )


def test_forgetting_a_host_resolves_its_open_alert_and_notifies(repo: Path) -> None:
    """The alert that paged someone gets its resolution, through alerts.yml's notifier."""
    log = repo / "notified.jsonl"
    (repo / "alerts.yml").write_text(
        "notifiers:\n"
        f"  log:\n    command: {json.dumps([sys.executable, str(RECORDER), str(log)])}\n"
        "rules:\n"
        "  disk_full: {metric: 'disk_used_pct:*', above: 90, notify: log}\n"
    )
    (repo / "inventory.yml").write_text("all:\n  hosts:\n    web1: {host: 10.0.0.1}\n")
    out = machineroom("forget", "web2", "-i", "inventory.yml", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "web2: alert disk_full resolved (host forgotten)"
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(a["event"], a["host"], a["rule"]) for a in sent] == [("resolved", "web2", "disk_full")]
    assert sent[0]["message"] == "disk / is 95% full (resolved: host forgotten)"
    assert rows_of(repo, "web2")["alerts"] == 0  # then gone with the host
    assert rows_of(repo, "web1")["alerts"] == 1
