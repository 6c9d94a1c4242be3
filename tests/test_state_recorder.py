"""StateRecorder against a real SQLite file: events in, rows out, and interrupted runs."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from machineroom.events import (
    EventBus,
    HostFinished,
    HostStats,
    PlayStarted,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from machineroom.state import StateStore, open_state
from machineroom.state.recorder import StateRecorder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = open_state(tmp_path / "state.db")
    for name in ("h1", "h2", "h3"):
        opened.upsert_server(name, f"10.0.0.{name[1]}", "root", "", 22)
    yield opened
    opened.close()


def task(host: str, task_id: str, status: str = "ok", **fields: object) -> TaskFinished:
    name = str(fields.pop("task", f"task {task_id}"))
    stage = str(fields.pop("stage", "docker"))
    return TaskFinished(host, task_id, name, stage, status, **fields)  # type: ignore[arg-type]


def finished(status: str = "ok", **stats: HostStats) -> RunFinished:
    return RunFinished(None, status, stats, 2.5)  # type: ignore[arg-type]


def test_a_run_lands_in_task_results_res_next_action_and_runs(store: StateStore) -> None:
    run_id = store.start_run("apply", "machineroom apply site.yml")
    recorder = StateRecorder(store, run_id)
    bus = EventBus([recorder])
    bus.emit(RunStarted(run_id, "site.yml", ("h1", "h2")))
    bus.emit(PlayStarted("site", ("h1", "h2")))
    bus.emit(TaskStarted("h1", "d1", "Install docker", "docker"))
    bus.emit(
        task(
            "h1",
            "d1",
            "changed",
            task="Install docker",
            duration=1.5,
            diff="+docker",
            location="roles/docker/tasks/main.yml:3",
            record={"docker_compose_installed": True},
        )
    )
    bus.emit(task("h2", "d1", "ok", task="Install docker", msg="already installed"))
    bus.emit(
        task(
            "h2",
            "d2",
            "failed",
            task="Start compose",
            msg="exit 1: no such service",
            location="roles/docker/tasks/main.yml:9",
        )
    )
    bus.emit(HostFinished("h1", "ok"))
    bus.emit(HostFinished("h2", "failed", "docker", "d2", "exit 1: no such service"))
    bus.emit(finished("failed", h1=HostStats(ok=1, changed=1), h2=HostStats(ok=1, failed=1)))
    recorder.close()

    rows = store.task_results(run_id)
    assert [(r["host_id"], r["task"], r["status"]) for r in rows] == [
        ("h1", "Install docker", "changed"),
        ("h2", "Install docker", "ok"),
        ("h2", "Start compose", "failed"),
    ]
    assert rows[0]["duration"] == 1.5 and rows[0]["diff"] == "+docker"
    assert rows[0]["location"] == "roles/docker/tasks/main.yml:3"
    assert rows[1]["message"] == "already installed"

    h1, h2 = store.server("h1"), store.server("h2")
    assert h1 is not None and h2 is not None
    assert h1.res["docker_compose_installed"] is True
    assert h1.res["reachable"] is True and h1.res["last_seen"]
    assert h1.next_action == {}
    assert h2.next_action["stage"] == "docker"
    assert h2.next_action["task"] == "d2"
    assert h2.next_action["run_id"] == run_id
    assert h2.next_action["location"] == "roles/docker/tasks/main.yml:9"
    assert h2.next_action["reason"] == "failed: exit 1: no such service"
    assert h2.next_action["at"]

    run = store.run(run_id)
    assert run is not None and run.status == "failed" and run.finished_at
    assert run.summary["hosts"]["h2"]["failed"] == 1
    assert run.summary["totals"]["changed"] == 1
    assert run.summary["duration"] == 2.5
    assert recorder.errors == []


def test_ok_clears_an_earlier_next_action(store: StateStore) -> None:
    store.set_next_action("h1", {"stage": "docker", "reason": "failed"})
    run_id = store.start_run("apply", "machineroom apply")
    with StateRecorder(store, run_id) as recorder:
        recorder(HostFinished("h1", "ok"))
        recorder(finished())
    server = store.server("h1")
    assert server is not None and server.next_action == {}


def test_unreachable_sets_res_and_keeps_a_pending_stage(store: StateStore) -> None:
    store.set_next_action("h3", {"stage": "env", "task": "e4", "reason": "failed: x"})
    run_id = store.start_run("apply", "machineroom apply")
    with StateRecorder(store, run_id) as recorder:
        recorder(HostFinished("h1", "unreachable", stage="cert", reason="connection refused"))
        recorder(HostFinished("h3", "unreachable", reason="timed out"))
        recorder(finished("unreachable"))
    h1, h3 = store.server("h1"), store.server("h3")
    assert h1 is not None and h3 is not None
    assert h1.res["reachable"] is False and h1.res["last_error"] == "connection refused"
    assert "last_seen" not in h1.res
    assert h1.next_action["stage"] == "cert"
    assert h1.next_action["reason"] == "unreachable: connection refused"
    # no stage given: the earlier pending stage stays, the reason is the new one
    assert h3.next_action["stage"] == "env" and h3.next_action["task"] == "e4"
    assert h3.next_action["reason"] == "unreachable: timed out"
    assert h3.next_action["run_id"] == run_id


def test_loop_items_fold_into_their_task_row(store: StateStore) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    with StateRecorder(store, run_id) as recorder:
        recorder(task("h1", "p", "changed", task="Packages", item="nginx", stdout="installed"))
        recorder(task("h1", "p", "ok", task="Packages", item="curl", msg="already there"))
        recorder(task("h1", "p", "changed", task="Packages", duration=3.0))
        recorder(finished(h1=HostStats(ok=1, changed=1)))
    rows = store.task_results(run_id)
    assert len(rows) == 1
    assert rows[0]["status"] == "changed" and rows[0]["duration"] == 3.0
    assert rows[0]["message"] == "[nginx] changed\n[curl] ok: already there"
    assert rows[0]["stdout"] == "== item nginx ==\ninstalled"


def test_facts_are_recorded_but_set_fact_is_not(store: StateStore) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    with StateRecorder(store, run_id) as recorder:
        recorder(task("h1", "f", "ok", result={"facts": {"arch": "x86_64", "cpus": 4}}))
        recorder(task("h2", "s", "ok", result={"module": "set_fact", "ansible_facts": {"a": 1}}))
        recorder(finished())
    history = store.facts_history("h1")
    assert history[0]["facts"] == {"arch": "x86_64", "cpus": 4}
    assert history[0]["run_id"] == run_id
    h1 = store.server("h1")
    assert h1 is not None and h1.res["facts"]["cpus"] == 4
    assert store.facts_history("h2") == []


def test_check_mode_leaves_next_action_and_records_alone(store: StateStore) -> None:
    store.set_next_action("h1", {"stage": "docker"})
    run_id = store.start_run("apply", "machineroom apply --check")
    with StateRecorder(store, run_id) as recorder:
        recorder(RunStarted(run_id, "site.yml", ("h1",), check=True))
        recorder(task("h1", "r", "changed", record={"yacht_installed": True}))
        recorder(HostFinished("h1", "ok"))
        recorder(RunFinished(run_id, "ok", {"h1": HostStats(ok=1, changed=1)}, 1.0, check=True))
    h1 = store.server("h1")
    assert h1 is not None
    assert h1.next_action == {"stage": "docker"}
    assert "yacht_installed" not in h1.res
    assert h1.res["reachable"] is True
    run = store.run(run_id)
    assert run is not None and run.summary["check"] is True


def test_a_failing_write_is_reported_the_rest_still_lands_and_the_run_ends_error(
    store: StateStore, tmp_path: Path
) -> None:
    # A real SQLite failure on one row, as a full disk gives on every row.
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute(
            "CREATE TRIGGER full BEFORE UPDATE ON server_room WHEN NEW.id = 'h2'"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    seen: list[str] = []
    run_id = store.start_run("apply", "machineroom apply")
    recorder = StateRecorder(store, run_id, on_error=seen.append)
    recorder(task("nosuch", "r", "changed", record={"x": 1}))  # not in server_room: no error
    recorder(task("h2", "big", "changed", record={"x": 1}))
    recorder(task("h1", "t", "ok"))
    recorder(finished())
    recorder.close()
    assert len(recorder.errors) == 1 and "database or disk is full" in recorder.errors[0]
    assert seen == recorder.errors
    assert recorder.failure == f"state database {store.path}: database or disk is full"
    assert [r["task"] for r in store.task_results(run_id)] == ["task r", "task big", "task t"]
    run = store.run(run_id)
    assert run is not None and run.status == "error" and recorder.end_recorded
    assert run.summary["reason"].startswith("1 state write(s) failed, the first: state database")


def test_an_interrupted_run_says_what_stopped_it(store: StateStore) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    recorder = StateRecorder(store, run_id)
    recorder.stop_reason = lambda: "interrupted (SIGTERM)"
    recorder(finished("interrupted"))
    recorder.close()
    run = store.run(run_id)
    assert run is not None and run.status == "interrupted"
    assert run.summary["reason"] == "interrupted (SIGTERM)"


def test_close_without_run_finished_marks_the_run_interrupted(
    store: StateStore, tmp_path: Path
) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    recorder = StateRecorder(store, run_id)
    recorder(task("h1", "a", "changed"))
    recorder(task("h1", "b", "ok", item="one"))  # a loop cut before its summary
    recorder(HostFinished("h1", "interrupted", stage="docker", task_id="b"))
    recorder.close()
    run = store.run(run_id)
    assert run is not None and run.status == "interrupted"
    assert run.summary["hosts"]["h1"]["changed"] == 1
    assert run.summary["reason"] == "the run ended before it finished"
    rows = store.task_results(run_id)
    assert [(r["task"], r["status"]) for r in rows] == [("task a", "changed"), ("task b", "ok")]
    assert rows[1]["message"].startswith("interrupted during the loop")
    h1 = store.server("h1")
    assert h1 is not None and h1.next_action["stage"] == "docker"
    assert h1.next_action["reason"] == "interrupted"
    # another connection sees a consistent, committed database
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone() == (
            "interrupted",
        )


def test_abort_drops_the_queue_and_still_marks_the_run(store: StateStore) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    waiting, gate = threading.Event(), threading.Event()

    def on_error(_message: str) -> None:
        waiting.set()
        gate.wait(30)

    recorder = StateRecorder(store, run_id, on_error=on_error)
    recorder(task("h1", "r", "ok", duration=object()))  # cannot be written: the writer waits
    # Queue the rest only once the writer waits: had it taken them in the same batch as the
    # failing event, they would be written with it (a batch is one transaction).
    assert waiting.wait(30)
    for n in range(50):
        recorder(task("h1", f"t{n}", "ok"))
    abort = threading.Thread(target=recorder.abort)
    abort.start()
    assert recorder._abort.wait(10)  # the writer resumes only once the abort is known
    gate.set()
    abort.join(10)
    run = store.run(run_id)
    assert run is not None and run.status == "interrupted"
    assert run.summary["reason"] == "aborted by a second Ctrl-C"
    # what was queued while the writer waited never lands
    assert store.task_results(run_id) == []
    recorder(task("h1", "late", "ok"))  # after abort: ignored, no error
    recorder.close()


def test_ctrl_c_during_close_aborts_and_re_raises(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    recorder = StateRecorder(store, run_id)
    recorder(task("h1", "a", "ok"))
    real_join = threading.Thread.join
    calls = {"n": 0}

    def join(self: threading.Thread, timeout: float | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        real_join(self, timeout)

    monkeypatch.setattr(threading.Thread, "join", join)
    with pytest.raises(KeyboardInterrupt):
        recorder.close()
    monkeypatch.undo()
    run = store.run(run_id)
    assert run is not None and run.status == "interrupted"


@dataclass(frozen=True)
class FakeResult:
    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float


def test_record_command_goes_to_the_audit_log(store: StateStore) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    with StateRecorder(store, run_id) as recorder:
        recorder.record_command("h1", FakeResult("uname -a", 0, "Linux\n", "", 0.01))
        recorder.record_command("h2", FakeResult("sleep 99", None, "", "", 5.0))
        recorder(finished())
    entries = store.audit(run_id=run_id)
    assert {(e["host_id"], e["command"], e["exit_code"]) for e in entries} == {
        ("h1", "uname -a", 0),
        ("h2", "sleep 99", None),
    }


def test_emit_does_not_wait_for_a_locked_database(store: StateStore, tmp_path: Path) -> None:
    run_id = store.start_run("apply", "machineroom apply")
    recorder = StateRecorder(store, run_id)
    other = sqlite3.connect(tmp_path / "state.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = threading.Event()

        def emit() -> None:
            for n in range(20):
                recorder(task("h1", f"t{n}", "ok"))
            started.set()

        thread = threading.Thread(target=emit)
        thread.start()
        assert started.wait(2), "emit blocked on the database lock"
        thread.join()
    finally:
        other.rollback()
        other.close()
    recorder(finished())
    recorder.close()
    assert len(store.task_results(run_id)) == 20
