"""What the run pages read from a real SQLite state database: the audit log's module calls
kept from their start, ignored failures recorded as such, and the queries of big runs."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from machineroom.state import SCHEMA_VERSION, open_state
from machineroom.state.migrations import migrate
from machineroom.state.sqlite import Database


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with open_state(tmp_path / ".machineroom" / "state.db") as opened:
        yield opened


def test_a_long_programs_audit_action_keeps_its_first_task_calls(store: Any) -> None:
    run = store.start_run("apply", "machineroom apply site.yml")
    calls = [f"command: echo step {n:03d} of a long program" for n in range(300)]
    store.record_command(run, "web1", "sh -c ...", 0, 0.1, action="\n".join(calls))
    action = store.audit(run_id=run)[0]["action"]
    lines = action.splitlines()
    assert lines[0] == "command: echo step 000 of a long program"
    assert lines[1] == "command: echo step 001 of a long program"
    assert len(action) <= 4 * 1024 + 20
    kept = len(lines) - 1
    assert lines[-1] == f"[... {300 - kept} more]"
    assert lines[-2] == calls[kept - 1]


def test_version_4_results_get_the_ignored_column_and_the_changed_index(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    db = Database(conn)
    migrate(db, str(path), target=4)
    conn.execute(
        "INSERT INTO runs (kind, command, user, workstation, pid, started_at, status, args,"
        " summary) VALUES ('apply', 'x', 'u', 'w', 1, '2026-01-01T00:00:00.000Z', 'ok', '{}',"
        " '{}')"
    )
    for status, message in [("failed", "non-zero return code (ignored)"), ("failed", "boom")]:
        conn.execute(
            "INSERT INTO task_results (run_id, host_id, task, status, duration, stdout, stderr,"
            " diff, message, started_at, finished_at) VALUES (1, 'web1', 't', ?, 0, '', '', '',"
            " ?, '', '')",
            [status, message],
        )
    conn.commit()
    conn.close()
    with open_state(path) as store:
        cells = store.dashboard.result_cells(1)
        assert [c["ignored"] for c in cells] == [1, 0]
        assert store.dashboard.result_counts([1])[1] == {"failed": 2, "ignored": 1}
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
        indexes = {row[1] for row in raw.execute("PRAGMA index_list(task_results)")}
        assert "task_results_changed" in indexes


def test_the_changes_query_walks_the_index_of_changed_results(store: Any) -> None:
    run = store.start_run("apply", "machineroom apply site.yml")
    for n in range(200):
        status = "changed" if n % 50 == 0 else "ok"
        store.record_task_result(run, f"web{n % 7}", f"task {n}", status, message="m")
    conn = store._handle._db.conn  # the store's own connection: catch the SQL it sends
    sent: list[str] = []
    conn.set_trace_callback(sent.append)
    try:
        rows = store.dashboard.changes(limit=100)
        assert [r["task"] for r in rows] == ["task 150", "task 100", "task 50", "task 0"]
        for check in (None, True):
            store.dashboard.changes(limit=100, check=check, since="2000-01-01T00:00:00.000Z")
    finally:
        conn.set_trace_callback(None)
    queries = [sql for sql in sent if "FROM task_results AS t" in sql]
    assert len(queries) == 3
    for sql in queries:
        plan = " / ".join(str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX task_results_changed" in plan, plan
        assert not re.search(r"SCAN t(?! USING)", plan) and "TEMP B-TREE" not in plan, plan


def test_a_result_with_ignore_errors_is_stored_ignored(store: Any) -> None:
    run = store.start_run("apply", "machineroom apply site.yml")
    store.record_task_result(run, "web1", "t", "failed", message="rc=1 (ignored)", ignored=True)
    store.record_task_result(run, "web1", "t", "ok", ignored=True)  # only a failure is ignored
    assert [c["ignored"] for c in store.dashboard.result_cells(run)] == [1, 0]
