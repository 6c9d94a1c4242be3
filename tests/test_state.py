"""The state database on real SQLite files: schema, migrations, modes, secrets, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from machineroom.errors import StateError
from machineroom.state import SCHEMA_VERSION, StateStore, open_state
from machineroom.state.metrics import HostCollection
from machineroom.state.migrations import migrate
from machineroom.state.sqlite import Database

PACKAGE = Path(__file__).resolve().parent.parent / "machineroom"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "repo" / ".machineroom" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Any:
    with open_state(db_path) as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path))


def table_names(path: Path) -> set[str]:
    with raw(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


# -- opening and migrating ---------------------------------------------------------------------


def test_new_database_is_private_wal_and_latest(db_path: Path, store: StateStore) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", "", 22)  # makes the -wal file exist
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{db_path}-wal").stat().st_mode) == 0o600
    assert (db_path.parent / ".gitignore").read_text().splitlines()[-1] == "*"
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store._handle.connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert {"server_room", "runs", "task_results", "facts", "audit_log"} <= table_names(db_path)


def test_server_room_has_exactly_the_documents_columns(db_path: Path, store: StateStore) -> None:
    with raw(db_path) as conn:
        columns = [
            (row[1], row[2], bool(row[3]), bool(row[5]))
            for row in conn.execute("PRAGMA table_info(server_room)")
        ]
    assert columns == [
        ("id", "TEXT", True, True),
        ("host", "TEXT", True, False),
        ("user", "TEXT", True, False),
        ("pass", "TEXT", True, False),
        ("port", "INTEGER", True, False),
        ("description", "TEXT", False, False),
        ("res", "TEXT", True, False),
        ("next_action", "TEXT", True, False),
    ]


def test_empty_file_is_migrated(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    open_state(db_path).close()
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_version_1_is_migrated_to_latest_keeping_servers(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    assert migrate(Database(conn), str(db_path), target=1) == 1
    conn.execute(
        "INSERT INTO server_room VALUES ('old', '192.0.2.1', 'admin', 'env:OLD_PW', 2222, 'kept',"
        " '{\"python3_installed\": true}', '{}')"
    )
    conn.close()
    assert table_names(db_path) == {"server_room"}

    with open_state(db_path) as store:
        row = store.server("old")
        assert row is not None
        assert (row.port, row.pass_ref, row.res) == (
            2222,
            "env:OLD_PW",
            {"python3_installed": True},
        )
        run_id = store.start_run("apply", "machineroom apply site.yml")
        assert store.run(run_id) is not None
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_database_is_refused(db_path: Path) -> None:
    open_state(db_path).close()
    with raw(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match=r"schema version 99, newer than .* upgrade machineroom"):
        open_state(db_path)


def test_not_sqlite_file_is_a_state_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(StateError) as caught:
        open_state(path)
    assert str(path) in str(caught.value)
    assert "not a" in str(caught.value)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with raw(path) as conn:  # the original tool's cache.db, plaintext passwords and all
        conn.execute("CREATE TABLE server_room (id CHAR(100) PRIMARY KEY, pass CHAR(100))")
    with pytest.raises(StateError, match=r"not a machineroom state database .*server_room"):
        open_state(path)


def test_directory_in_place_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StateError, match=re.escape(str(tmp_path / "state.db"))):
        open_state(tmp_path / "state.db")


def test_closed_store_raises_state_error(db_path: Path) -> None:
    store = open_state(db_path)
    store.close()
    with pytest.raises(StateError):
        store.servers()


# -- server_room -------------------------------------------------------------------------------


def test_upsert_keeps_res_and_next_action(store: StateStore) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", "env:WEB_PW", 22, "front")
    store.update_res("web1", {"docker_compose_installed": True})
    store.set_next_action("web1", {"stage": "docker", "reason": "failed"})
    store.upsert_server("web1", "10.0.0.9", "admin", "vault", 2222, None)
    row = store.server("web1")
    assert row is not None
    assert (row.host, row.user, row.pass_ref, row.port, row.description) == (
        "10.0.0.9",
        "admin",
        "vault",
        2222,
        None,
    )
    assert row.res == {"docker_compose_installed": True}
    assert row.next_action == {"stage": "docker", "reason": "failed"}
    assert store.server("nope") is None


@pytest.mark.parametrize(
    "value", ["hunter2", "env:", "env:1ABC", "env:A B", "vault:hunter2", "ENV:PW", " vault"]
)
def test_pass_column_refuses_anything_but_a_reference(store: StateStore, value: str) -> None:
    with pytest.raises(StateError, match="expected '', 'vault' or 'env:NAME'") as caught:
        store.upsert_server("web1", "10.0.0.1", "root", value, 22)
    assert "hunter2" not in str(caught.value)  # the refused value may be a password
    assert store.server("web1") is None


@pytest.mark.parametrize("ref", ["", "vault", "env:SSH_PASSWORD", "env:_x1"])
def test_pass_column_accepts_references(store: StateStore, ref: str) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", ref, 22)
    assert store.servers()[0].pass_ref == ref


@pytest.mark.parametrize("port", [0, 65536, True, "22"])
def test_port_must_be_a_port(store: StateStore, port: Any) -> None:
    with pytest.raises(StateError, match="not between 1 and 65535"):
        store.upsert_server("web1", "10.0.0.1", "root", "", port)


def test_retire_and_servers_filter(store: StateStore) -> None:
    for name in ("web1", "web2", "db1"):
        store.upsert_server(name, f"{name}.example", "root", "", 22)
    store.retire("web2")
    first = store.server("web2")
    assert first is not None and first.retired and first.res["retired_at"].endswith("Z")
    store.retire("web2")  # twice: the first date stays
    again = store.server("web2")
    assert again is not None and again.res["retired_at"] == first.res["retired_at"]
    assert [s.id for s in store.servers()] == ["db1", "web1", "web2"]
    assert [s.id for s in store.servers(include_retired=False)] == ["db1", "web1"]
    with pytest.raises(StateError, match=r"unknown server 'web3' \(did you mean") as caught:
        store.retire("web3")
    assert "'web1'" in str(caught.value) and "'web2'" in str(caught.value)
    assert "db1" not in str(caught.value)


def test_unknown_server_in_empty_database(store: StateStore) -> None:
    with pytest.raises(StateError, match="no servers yet"):
        store.update_res("web1", {"a": 1})
    with pytest.raises(StateError, match="unknown server 'web1'"):
        store.set_next_action("web1", {})


def test_update_res_merges_and_returns(store: StateStore) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", "", 22)
    store.update_res("web1", {"ports": [22, 80], "python3_installed": True})
    merged = store.update_res("web1", {"ports": [22, 443]})
    assert merged == {"ports": [22, 443], "python3_installed": True}
    row = store.server("web1")
    assert row is not None and row.res == merged


def test_record_facts_history_and_latest(store: StateStore) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", "", 22)
    run_id = store.start_run("facts", "machineroom facts all")
    store.record_facts("web1", {"os": "debian", "cpus": 2}, run_id)
    store.record_facts("web1", {"os": "debian", "cpus": 4})
    store.record_facts("adhoc", {"os": "alpine"})  # not in server_room: history only
    row = store.server("web1")
    assert row is not None
    assert row.res["facts"] == {"os": "debian", "cpus": 4}
    assert row.res["reachable"] is True and row.res["last_seen"] == row.res["facts_at"]
    history = store.facts_history("web1")
    assert [h["facts"]["cpus"] for h in history] == [4, 2]
    assert history[1]["run_id"] == run_id
    assert store.facts_history("adhoc")[0]["facts"] == {"os": "alpine"}


# -- runs, task results, audit -----------------------------------------------------------------


def test_runs_and_task_results_round_trip(store: StateStore) -> None:
    run_id = store.start_run(
        "apply",
        "machineroom apply playbooks/site.yml -i inventories/prod.yml",
        args={"check": False, "limit": "web*", "extra_vars": {"x": 1}},
        playbook="playbooks/site.yml",
        inventory="inventories/prod.yml",
        git_commit="424b458",
    )
    running = store.run(run_id)
    assert running is not None and running.status == "running" and running.finished_at is None
    assert running.pid == os.getpid() and running.args["extra_vars"] == {"x": 1}

    store.record_task_result(
        run_id,
        "web1",
        "Install docker",
        "changed",
        duration=2.5,
        location="roles/docker/tasks/main.yml:3",
        diff="-a\n+b\n",
    )
    store.record_task_result(
        run_id, "web2", "Install docker", "failed", stderr="E: no apt", message="apt failed"
    )
    store.record_task_result(run_id, "web1", "Start docker", "ok")
    store.finish_run(run_id, "failed", {"web1": {"changed": 1, "ok": 1}, "web2": {"failed": 1}})

    done = store.run(run_id)
    assert done is not None
    assert (done.status, done.kind, done.playbook, done.git_commit) == (
        "failed",
        "apply",
        "playbooks/site.yml",
        "424b458",
    )
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.summary["web2"] == {"failed": 1}

    results = store.task_results(run_id)
    assert [(r["host_id"], r["task"], r["status"]) for r in results] == [
        ("web1", "Install docker", "changed"),
        ("web2", "Install docker", "failed"),
        ("web1", "Start docker", "ok"),
    ]
    assert results[0]["diff"] == "-a\n+b\n" and results[0]["duration"] == 2.5
    assert results[0]["location"] == "roles/docker/tasks/main.yml:3"
    assert results[0]["started_at"] < results[0]["finished_at"]
    assert [r["task"] for r in store.task_results(run_id, "web1")] == [
        "Install docker",
        "Start docker",
    ]

    second = store.start_run("run", "machineroom run all -- uptime")
    assert [r.id for r in store.runs()] == [second, run_id]
    assert [r.id for r in store.runs(limit=1)] == [second]
    assert store.run(9999) is None


def test_bad_statuses_and_unknown_runs(store: StateStore) -> None:
    run_id = store.start_run("apply", "machineroom apply x.yml")
    with pytest.raises(StateError, match="task status 'done'"):
        store.record_task_result(run_id, "web1", "t", "done")
    with pytest.raises(StateError, match="run status 'running'"):
        store.finish_run(run_id, "running")
    with pytest.raises(StateError, match="unknown run 777"):
        store.finish_run(777, "ok")
    with pytest.raises(StateError, match="unknown run 777"):
        store.record_task_result(777, "web1", "t", "ok")
    with pytest.raises(StateError, match="unknown run 777"):
        store.record_command(777, "web1", "true", 0, 0.1)
    with pytest.raises(StateError, match="must be a word"):
        store.start_run("apply; drop", "x")


def test_audit_log_filters_newest_first(store: StateStore) -> None:
    run_id = store.start_run("run", "machineroom run all -- uptime")
    store.record_command(run_id, "web1", "uptime", 0, 0.05, stdout=" 10:00 up 1 day")
    store.record_command(run_id, "web2", "uptime", 255, 1.5, stderr="refused")
    store.record_command(None, "web1", "docker ps", None, 30.0)
    entries = store.audit()
    assert [(e["host_id"], e["command"]) for e in entries] == [
        ("web1", "docker ps"),
        ("web2", "uptime"),
        ("web1", "uptime"),
    ]
    assert entries[0]["exit_code"] is None and entries[0]["run_id"] is None
    assert entries[0]["user"]
    assert [e["command"] for e in store.audit(host_id="web1")] == ["docker ps", "uptime"]
    assert [e["host_id"] for e in store.audit(run_id=run_id)] == ["web2", "web1"]
    assert [e["command"] for e in store.audit(host_id="web1", run_id=run_id)] == ["uptime"]
    assert len(store.audit(limit=1)) == 1


def test_output_is_capped(store: StateStore) -> None:
    run_id = store.start_run("run", "machineroom run all -- yes")
    big = "START" + "y\n" * 100_000 + "THE END"
    store.record_task_result(run_id, "web1", "yes", "ok", stdout=big)
    store.record_command(run_id, "web1", "yes", 0, 1.0, stdout=big, stderr=big)
    stdout = store.task_results(run_id)[0]["stdout"]
    assert len(stdout) < 70_000 and stdout.startswith("START") and stdout.endswith("THE END")
    assert "characters cut" in stdout
    tail = store.audit()[0]["stdout_tail"]
    assert len(tail) < 5_000 and tail.endswith("THE END") and "characters cut" in tail


def test_secrets_are_masked_everywhere(db_path: Path, store: StateStore) -> None:
    secret = 'hunter2"\\pw'  # a quote and a backslash: must be masked before JSON escaping
    store.add_secret(secret)
    store.add_secret("")  # ignored, not a mask for everything
    store.upsert_server("web1", "10.0.0.1", "root", "env:PW", 22, f"pw is {secret}")
    store.update_res("web1", {"note": f"pw={secret}", "nested": [{secret: secret}]})
    store.set_next_action("web1", {"cmd": f"login {secret}"})
    run_id = store.start_run(
        "run",
        f"machineroom run all -e password={secret}",
        args={"extra_vars": {"password": secret}},
    )
    store.record_task_result(
        run_id,
        "web1",
        f"echo {secret}",
        "failed",
        stdout=secret,
        stderr=f"bad {secret}",
        diff=secret,
        message=f"x {secret}",
    )
    store.record_command(run_id, "web1", f"echo {secret}", 0, 0.1, stdout=secret, stderr=secret)
    store.record_facts("web1", {"env": {"PW": secret}}, run_id)
    store.finish_run(run_id, "failed", {"error": f"auth {secret}"})

    row = store.server("web1")
    assert row is not None and row.res["note"] == "pw=***"
    assert row.res["nested"] == [{"***": "***"}] and row.description == "pw is ***"
    run = store.run(run_id)
    assert run is not None and run.command == "machineroom run all -e password=***"
    assert store.audit()[0]["command"] == "echo ***"
    store.close()
    with raw(db_path) as conn:
        dump = "\n".join(conn.iterdump())
    assert "hunter2" not in dump and "***" in dump
    for name in (db_path.name, f"{db_path.name}-wal"):
        file = db_path.parent / name
        if file.exists():
            assert b"hunter2" not in file.read_bytes()


def test_mark_interrupted_runs(db_path: Path, store: StateStore) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    live = store.start_run("apply", "still running here")
    killed = store.start_run("apply", "was killed")
    elsewhere = store.start_run("apply", "running on another workstation")
    finished = store.start_run("run", "done")
    store.finish_run(finished, "ok")
    with raw(db_path) as conn:
        conn.execute(
            "UPDATE runs SET pid = ?, pid_start = NULL WHERE id IN (?, ?)",
            [dead_pid, killed, finished],
        )
        conn.execute(
            "UPDATE runs SET pid = ?, workstation = 'far-away' WHERE id = ?", [dead_pid, elsewhere]
        )
    assert store.mark_interrupted_runs() == 1
    statuses = {r.id: r.status for r in store.runs()}
    assert statuses == {
        live: "running",
        killed: "interrupted",
        elsewhere: "running",
        finished: "ok",
    }
    interrupted = store.run(killed)
    assert interrupted is not None and interrupted.finished_at is not None
    assert "ended without finishing" in interrupted.summary["reason"]
    assert store.mark_interrupted_runs() == 0


def test_reused_pid_is_not_taken_for_the_run(db_path: Path, store: StateStore) -> None:
    run_id = store.start_run("apply", "x")
    with raw(db_path) as conn:  # our pid, but a different process start time
        conn.execute("UPDATE runs SET pid_start = '1' WHERE id = ?", [run_id])
    if Path("/proc/self/stat").exists():
        assert store.mark_interrupted_runs() == 1


# -- concurrency and interrupts ----------------------------------------------------------------


def test_threads_share_one_store(store: StateStore) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", "", 22)
    run_id = store.start_run("run", "threads")

    def work(n: int) -> None:
        for i in range(50):
            store.update_res("web1", {f"t{n}_{i}": i})
            store.record_command(run_id, "web1", f"cmd {n} {i}", 0, 0.0)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row = store.server("web1")
    assert row is not None and len(row.res) == 400
    assert len(store.audit(run_id=run_id, limit=1000)) == 400


# -- subjects: one connection, one transaction discipline ---------------------------------------


def _collection(host_id: str, at: int, load: float) -> HostCollection:
    return HostCollection(host_id=host_id, at=at, reachable=True, metrics={"load1": load})


def test_subjects_write_in_one_transaction(db_path: Path, store: StateStore) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", "", 22)
    with pytest.raises(RuntimeError), store.transaction():
        store.metrics.record_collections([_collection("web1", 1000, 0.5)])
        store.update_res("web1", {"docker_compose_installed": True})
        with raw(db_path) as other:  # another connection sees none of it before the end
            assert other.execute("SELECT count(*) FROM samples").fetchone()[0] == 0
        raise RuntimeError("changed my mind")
    # Both subjects' writes went: one transaction, on one connection.
    assert store.metrics.host_statuses() == {}
    assert store.metrics.metric_names("web1") == []
    row = store.server("web1")
    assert row is not None and "docker_compose_installed" not in row.res

    with store.transaction():
        # The series ids the rolled-back block made are forgotten, not reused.
        store.metrics.record_collections([_collection("web1", 1060, 0.7)])
        store.update_res("web1", {"docker_compose_installed": True})
    assert store.metrics.metric_series("web1", "load1", 0) == [(1060, 0.7)]
    row = store.server("web1")
    assert row is not None and row.res["docker_compose_installed"] is True


def test_failed_write_inside_a_transaction_undoes_only_itself(store: StateStore) -> None:
    store.upsert_server("web1", "10.0.0.1", "root", "", 22)
    with store.transaction():
        run_id = store.start_run("collect", "machineroom collect")
        with pytest.raises(StateError, match="unknown run 999"):
            store.record_task_result(999, "web1", "t", "ok")
        with pytest.raises(StateError, match="unknown server 'nope'"):
            store.update_res("nope", {"x": 1})
        store.metrics.record_collections([_collection("web1", 1000, 0.5)], run_id=run_id)
    assert store.run(run_id) is not None
    assert store.metrics.host_statuses()["web1"]["run_id"] == run_id
    assert store.task_results(999) == []


def test_closing_the_store_closes_its_subjects(db_path: Path) -> None:
    store = open_state(db_path)
    store.close()
    for read in (
        store.metrics.host_statuses,
        store.alerts.open_alerts,
        store.tokens.all,
        store.schedules.schedule_events,
        store.dashboard.run_page,
    ):
        with pytest.raises(StateError, match=re.escape(str(db_path))):
            read()


def _process_worker(path: str, worker: int, start: Any) -> None:
    store = open_state(path)
    run_id = store.start_run("run", f"worker {worker}")
    start.wait(timeout=60)
    for i in range(200):
        store.update_res("web1", {f"w{worker}_{i}": i})
        store.record_command(run_id, "web1", f"echo {worker} {i}", 0, 0.001, stdout=str(i))
    store.finish_run(run_id, "ok", {"writes": 200})
    store.close()


def test_two_processes_lose_nothing(db_path: Path) -> None:
    with open_state(db_path) as store:
        store.upsert_server("web1", "10.0.0.1", "root", "", 22)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)  # both workers open and start a run, then write at once
    workers = [
        context.Process(target=_process_worker, args=(str(db_path), n, start)) for n in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0

    with open_state(db_path) as store:
        row = store.server("web1")
        assert row is not None
        assert set(row.res) == {f"w{w}_{i}" for w in (1, 2) for i in range(200)}
        assert len(store.audit(limit=10_000)) == 400
        runs = store.runs()
        assert [r.status for r in runs] == ["ok", "ok"]
        for run in runs:
            assert len(store.audit(run_id=run.id, limit=1000)) == 200
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _open_worker(path: str, worker: int, start: Any) -> None:
    start.wait(timeout=60)
    with open_state(path) as store:
        store.upsert_server(f"web{worker}", "10.0.0.1", "root", "", 22)


def test_processes_creating_the_same_new_database_at_once(db_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    workers = [
        context.Process(target=_open_worker, args=(str(db_path), n, start)) for n in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with open_state(db_path) as store:
        assert [s.id for s in store.servers()] == ["web0", "web1", "web2", "web3"]


WRITER = """
import sys
from machineroom.state import open_state
store = open_state(sys.argv[1])
store.upsert_server("web1", "10.0.0.1", "root", "", 22)
run_id = store.start_run("apply", "writer to be killed")
i = 0
while True:
    i += 1
    store.update_res("web1", {"count": i})
    store.record_command(run_id, "web1", f"step {i}", 0, 0.0, stdout="x" * 2000)
    store.record_task_result(run_id, "web1", f"task {i}", "ok", stdout="y" * 2000)
    print(i, flush=True)
"""


def test_sigkill_mid_stream_leaves_a_consistent_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    for line in writer.stdout:
        if int(line) >= 100:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stdout.close()

    with raw(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with open_state(db_path) as store:
        row = store.server("web1")
        assert row is not None
        count = row.res["count"]
        commands = len(store.audit(limit=100_000))
        (run,) = store.runs()
        tasks = len(store.task_results(run.id))
        assert count >= 100
        # Each write is its own transaction: the three counts follow each other in order.
        assert commands in (count - 1, count) and tasks in (commands - 1, commands)
        assert run.status == "running"
        assert store.mark_interrupted_runs() == 1
        after = store.run(run.id)
        assert after is not None and after.status == "interrupted"


# -- layering ----------------------------------------------------------------------------------


def test_only_the_state_package_imports_sqlite() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(sqlite3|sqlite_utils)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "state" not in path.relative_to(PACKAGE).parts[:1] and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_state_package_does_not_import_upper_layers() -> None:
    pattern = re.compile(r"machineroom\.(inventory|connection|cli|executor|report)\b")
    for path in (PACKAGE / "state").glob("*.py"):
        assert not pattern.search(path.read_text()), path


def test_runs_filtered_by_trigger(store: StateStore) -> None:
    by_person = store.start_run("run", "machineroom run all -- uptime")
    for trigger in ("schedule:nightly", "schedule:nightly_x", "web:alice:1f2e"):
        store.start_run("apply", "machineroom apply site.yml --check", trigger=trigger)

    def triggers(which: str) -> list[str | None]:
        return [r.trigger for r in store.runs(trigger=which)]

    assert triggers("cli") == [None] and store.run(by_person) is not None
    assert triggers("schedule") == ["schedule:nightly_x", "schedule:nightly"]
    # `_` is a character, not a LIKE wildcard: nightly does not match nightly_x
    assert triggers("schedule:nightly") == ["schedule:nightly"]
    assert triggers("web") == ["web:alice:1f2e"]
    assert triggers("nothing") == []
