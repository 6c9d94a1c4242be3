"""StateStore: one state database, its core subject (servers, runs and their results) and its
fleet subjects (metrics, alerts, tokens, schedules, the dashboard's queries).

The store owns the connection (a DatabaseHandle: the lock, transactions, masking, closing) and
hands it to one object per fleet subject: `store.metrics`, `store.alerts`, `store.tokens`,
`store.schedules` and `store.dashboard`. The core subject's methods stay on the store itself
(`store.servers()`, `store.start_run(...)`, `store.record_task_result(...)`): every command
that touches a host records through them, servers and runs share transactions (`record_facts`
appends a facts row and merges it into the server's `res`), and `store.servers()` and
`store.runs()` are already the natural names, which subject attributes of the same names
would take away. The fleet subjects are used by the fleet, the dashboard and
their commands only, so `store.metrics.record_collections(...)` says whose table is touched.

Every write is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock before reading,
so read-modify-write operations (merging into `res`) cannot lose another process's update, and
waiting for the lock goes through the busy timeout instead of failing on a lock upgrade.
`store.transaction()` groups writes of several subjects into one. WAL lets readers
(`machineroom ls`, `history`) run while a writer works. A killed process leaves either the
whole transaction or none of it.

Only this package imports sqlite3; callers pass primitives, never model objects.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from machineroom.errors import StateError
from machineroom.state.alerts import AlertStore
from machineroom.state.base import DatabaseHandle
from machineroom.state.dashboard import DashboardStore
from machineroom.state.forget import Forgotten, forget_hosts, known_host_ids
from machineroom.state.last_apply import LastApply, last_applies
from machineroom.state.metrics import MetricsStore
from machineroom.state.records import (
    AUDIT_TAIL_LIMIT,
    FINAL_RUN_STATUSES,
    MESSAGE_LIMIT,
    PASS_REF,
    TASK_OUTPUT_LIMIT,
    TASK_STATUSES,
    RunRow,
    ServerRow,
    cap_lines_head,
    cap_middle,
    cap_tail,
    dump_json,
    iso,
    load_object,
    process_alive,
    process_start,
    run_row,
    server_row,
    sql_where,
    utc_now,
)
from machineroom.state.schedules import ScheduleStore
from machineroom.state.tokens import TokenStore


class StateStore:
    """Servers, runs, task results, facts and the audit log of one state database, and its
    fleet subjects as attributes (see DatabaseHandle for the locking)."""

    metrics: MetricsStore
    """Metric samples and each host's latest collection."""
    alerts: AlertStore
    """Alerts opened and resolved, and their notifications."""
    tokens: TokenStore
    """The dashboard's and the API's access tokens."""
    schedules: ScheduleStore
    """What the scheduler did."""
    dashboard: DashboardStore
    """Read-only queries shaped for the dashboard's pages and the JSON API."""

    def __init__(self, db: Any, path: Path) -> None:
        """Wrap an open, migrated `sqlite.Database` (`open_state` is the way in)."""
        self._handle = DatabaseHandle(db, path)
        self.metrics = MetricsStore(self._handle)
        self.alerts = AlertStore(self._handle)
        self.tokens = TokenStore(self._handle)
        self.schedules = ScheduleStore(self._handle)
        self.dashboard = DashboardStore(self._handle)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._handle.path

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, for the store and all its subjects; the WAL is checkpointed by
        SQLite when the last connection to the file closes."""
        self._handle.close()

    def add_secret(self, value: str) -> None:
        """Mask `value` as `***` in every text written from now on (commands, output, res)."""
        self._handle.add_secret(value)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes, of any subjects, into one transaction: all of them land or none.

        Other threads' writes wait until the block ends; a write inside it that fails undoes
        only its own statements (and raises), an exception leaving the block undoes them all.
        """
        with self._handle.write():
            yield

    # -- server_room ----------------------------------------------------------------------------

    def upsert_server(
        self,
        id: str,
        host: str,
        user: str,
        pass_ref: str,
        port: int,
        description: str | None = None,
    ) -> None:
        """Insert or update a server's connection fields, keeping its `res` and `next_action`.

        `pass_ref` must be '', 'vault' or 'env:NAME': the `pass` column never holds a password.
        """
        if not isinstance(pass_ref, str) or not PASS_REF.fullmatch(pass_ref):
            # The value is left out of the message on purpose: it may be a password.
            raise StateError(
                f"server {id!r}: the pass column takes a reference, not a password; "
                "expected '', 'vault' or 'env:NAME'"
            )
        if not id or not host or not user:
            raise StateError(f"server {id!r}: id, host and user must not be empty")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise StateError(f"server {id!r}: port {port!r} is not between 1 and 65535")
        desc = None if description is None else self._handle.mask(description)
        with self._handle.write() as db:
            db.execute(
                "INSERT INTO server_room (id, host, user, pass, port, description, res,"
                " next_action) VALUES (?, ?, ?, ?, ?, ?, '{}', '{}')"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, user = excluded.user,"
                " pass = excluded.pass, port = excluded.port, description = excluded.description",
                [id, self._handle.mask(host), self._handle.mask(user), pass_ref, port, desc],
            )

    def servers(self, include_retired: bool = True) -> list[ServerRow]:
        """Every server, by id; retired ones left out when `include_retired` is False."""
        with self._handle.read() as db:
            rows = [server_row(row) for row in db.query("SELECT * FROM server_room ORDER BY id")]
        return [row for row in rows if include_retired or not row.retired]

    def server(self, id: str) -> ServerRow | None:
        """The server `id`, or None."""
        with self._handle.read() as db:
            rows = list(db.query("SELECT * FROM server_room WHERE id = ?", [id]))
        return server_row(rows[0]) if rows else None

    def update_res(self, id: str, updates: dict[str, Any]) -> dict[str, Any]:
        """Merge `updates` into the server's `res` (top-level keys replaced) atomically; return
        the merged object. An unknown id is a StateError naming close ids."""
        with self._handle.write() as db:
            return self._merge_res(db, id, updates)

    def _merge_res(self, db: Any, id: str, updates: dict[str, Any]) -> dict[str, Any]:
        row = db.execute("SELECT res FROM server_room WHERE id = ?", [id]).fetchone()
        if row is None:
            raise _unknown_server(db, id)
        res = load_object(row[0], f"server_room {id!r} res")
        res.update(self._handle.mask_data(updates))
        db.execute("UPDATE server_room SET res = ? WHERE id = ?", [dump_json(res), id])
        return res

    def set_next_action(self, id: str, value: dict[str, Any]) -> None:
        """Replace what is pending for the server (`{}` when nothing is)."""
        with self._handle.write() as db:
            cursor = db.execute(
                "UPDATE server_room SET next_action = ? WHERE id = ?",
                [dump_json(self._handle.mask_data(value)), id],
            )
            if cursor.rowcount == 0:
                raise _unknown_server(db, id)

    def retire(self, id: str) -> None:
        """Mark the server retired (`res.retired`, `res.retired_at`); later commands skip it."""
        with self._handle.write() as db:
            current = db.execute("SELECT res FROM server_room WHERE id = ?", [id]).fetchone()
            if current is None:
                raise _unknown_server(db, id)
            res = load_object(current[0], f"server_room {id!r} res")
            if not res.get("retired"):  # retiring twice keeps the first date
                self._merge_res(db, id, {"retired": True, "retired_at": iso(utc_now())})

    def forget_servers(self, ids: Sequence[str], dry_run: bool = False) -> list[Forgotten]:
        """Remove hosts from the database in one transaction: the `server_room` row (with its
        `next_action`), facts, metric series and samples, the latest collection and alerts.
        Task results and the audit log stay (run history). An unknown id is an InputError
        naming close ids, and then nothing is removed. `dry_run`: what would go, nothing
        removed."""
        with self._handle.write():
            forgotten = forget_hosts(self._handle, ids, dry_run)
            for item in [] if dry_run else forgotten:
                self.metrics.forget_host_metrics(item.id)
        return forgotten

    def known_host_ids(self) -> set[str]:
        """Every host id the database holds anything about (servers, collections, metric
        series, facts, alerts; not the run history)."""
        with self._handle.read() as db:
            return known_host_ids(db)

    def last_applies(self, host_ids: Iterable[str] | None = None) -> dict[str, LastApply]:
        """The newest apply (not in check mode) of each host of `host_ids` (None: all): the
        run and the host's counts in it, by host id (state/last_apply.py)."""
        with self._handle.read() as db:
            return last_applies(db, host_ids)

    # -- runs and their results -----------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        command: str,
        *,
        args: dict[str, Any] | None = None,
        playbook: str | None = None,
        inventory: str | None = None,
        git_commit: str | None = None,
        trigger: str | None = None,
    ) -> int:
        """Record a run as 'running' by this process and return its id. `trigger` says what
        started it (the scheduler: `schedule:NAME`, the dashboard: `web:TOKEN-NAME:NONCE`,
        from their RunRequest's trigger; None: a person). Nothing is read from the
        environment."""
        if not kind or not kind.replace("-", "").replace("_", "").isalnum():
            raise StateError(f"run kind {kind!r} must be a word such as apply, run, facts")
        pid = os.getpid()
        record = {
            "kind": kind,
            "command": self._handle.mask(command),
            "user": self._handle.user,
            "workstation": self._handle.workstation,
            "pid": pid,
            "pid_start": process_start(pid),
            "started_at": iso(utc_now()),
            "finished_at": None,
            "status": "running",
            "playbook": None if playbook is None else self._handle.mask(playbook),
            "inventory": None if inventory is None else self._handle.mask(inventory),
            "git_commit": git_commit,
            "args": dump_json(self._handle.mask_data(args or {})),
            "summary": "{}",
            "trigger": trigger or None,
        }
        with self._handle.write() as db:
            return int(db["runs"].insert(record).last_pk)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any] | None = None) -> None:
        """Close a run with its final status and summary (e.g. the per-host recap)."""
        if status not in FINAL_RUN_STATUSES:
            raise StateError(
                f"run status {status!r} is not one of {', '.join(sorted(FINAL_RUN_STATUSES))}"
            )
        with self._handle.write() as db:
            cursor = db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
                [status, iso(utc_now()), dump_json(self._handle.mask_data(summary or {})), run_id],
            )
            if cursor.rowcount == 0:
                raise StateError(f"unknown run {run_id}")

    def reclaim_wal(self) -> None:
        """Copy the write-ahead log into the database and empty it. On a full disk this gives
        the log's space back (usually more than the database grows by), so that a last small
        write, such as a run's final status, can still land."""
        self._handle.checkpoint()

    def mark_interrupted_runs(self) -> int:
        """Mark 'interrupted' the runs left 'running' on this workstation by a process that no
        longer exists (killed, crashed, power cut); return how many. Runs of other
        workstations are left alone: their pids mean nothing here."""
        with self._handle.write() as db:
            rows = db.execute(
                "SELECT id, pid, pid_start, summary FROM runs"
                " WHERE status = 'running' AND workstation = ?",
                [self._handle.workstation],
            ).fetchall()
            now = iso(utc_now())
            count = 0
            for run_id, pid, pid_start, summary in rows:
                if process_alive(int(pid), pid_start):
                    continue
                merged = load_object(summary, f"runs {run_id} summary")
                merged.setdefault("reason", f"process {pid} ended without finishing the run")
                db.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ?, summary = ?"
                    " WHERE id = ?",
                    [now, dump_json(merged), run_id],
                )
                count += 1
            return count

    def record_task_result(
        self,
        run_id: int,
        host_id: str,
        task: str,
        status: str,
        *,
        location: str | None = None,
        duration: float = 0.0,
        stdout: str = "",
        stderr: str = "",
        diff: str = "",
        message: str = "",
        ignored: bool = False,
    ) -> None:
        """Record one task's outcome on one host (output masked, then capped); `ignored`: a
        failure the task ignores (`ignore_errors`)."""
        if status not in TASK_STATUSES:
            raise StateError(
                f"task status {status!r} is not one of {', '.join(sorted(TASK_STATUSES))}"
            )
        finished = utc_now()
        record = {
            "run_id": run_id,
            "host_id": host_id,
            "task": self._handle.mask(task),
            "location": None if location is None else self._handle.mask(location),
            "status": status,
            "duration": float(duration),
            "stdout": cap_middle(self._handle.mask(stdout), TASK_OUTPUT_LIMIT),
            "stderr": cap_middle(self._handle.mask(stderr), TASK_OUTPUT_LIMIT),
            "diff": cap_middle(self._handle.mask(diff), TASK_OUTPUT_LIMIT),
            "message": cap_middle(self._handle.mask(message), MESSAGE_LIMIT),
            "ignored": int(bool(ignored) and status == "failed"),
            "started_at": iso(finished - timedelta(seconds=max(duration, 0.0))),
            "finished_at": iso(finished),
        }
        with self._handle.write() as db:
            try:
                _insert(db, "task_results", record)
            except sqlite3.IntegrityError:
                raise StateError(f"unknown run {run_id}") from None

    def record_command(
        self,
        run_id: int | None,
        host_id: str,
        command: str,
        exit_code: int | None,
        duration: float,
        stdout: str = "",
        stderr: str = "",
        action: str = "",
    ) -> None:
        """Add a command run on a host to the audit log; `at` is when it started; `action`
        is the module call it carries out, as the task wrote it."""
        finished = utc_now()
        record = {
            "run_id": run_id,
            "host_id": host_id,
            "at": iso(finished - timedelta(seconds=max(duration, 0.0))),
            "user": self._handle.user,
            "command": self._handle.mask(command),
            "exit_code": exit_code,
            "duration": float(duration),
            "stdout_tail": cap_tail(self._handle.mask(stdout), AUDIT_TAIL_LIMIT),
            "stderr_tail": cap_tail(self._handle.mask(stderr), AUDIT_TAIL_LIMIT),
            "action": cap_lines_head(self._handle.mask(action), AUDIT_TAIL_LIMIT),
        }
        with self._handle.write() as db:
            try:
                _insert(db, "audit_log", record)
            except sqlite3.IntegrityError:
                raise StateError(f"unknown run {run_id}") from None

    def record_facts(self, host_id: str, facts: dict[str, Any], run_id: int | None = None) -> None:
        """Append facts to the host's history and, if the host is in server_room, make them
        its latest: `res.facts`, `res.facts_at`, `res.last_seen`, `res.reachable`."""
        now = iso(utc_now())
        masked = self._handle.mask_data(facts)
        with self._handle.write() as db:
            try:
                db["facts"].insert(
                    {
                        "host_id": host_id,
                        "run_id": run_id,
                        "collected_at": now,
                        "facts": dump_json(masked),
                    }
                )
            except sqlite3.IntegrityError:
                raise StateError(f"unknown run {run_id}") from None
            known = db.execute("SELECT 1 FROM server_room WHERE id = ?", [host_id]).fetchone()
            if known:
                self._merge_res(
                    db,
                    host_id,
                    {"facts": masked, "facts_at": now, "last_seen": now, "reachable": True},
                )

    # -- reading history ------------------------------------------------------------------------

    def runs(self, limit: int = 20, trigger: str | None = None) -> list[RunRow]:
        """The latest runs, newest first. `trigger` keeps those a trigger started: `cli`
        (a person), `schedule` / `web` (any schedule, the dashboard), or a prefix such as
        `schedule:nightly`."""
        where, params = "", []
        if trigger == "cli":
            where = " WHERE trigger IS NULL"
        elif trigger:
            where = " WHERE trigger = ? OR trigger LIKE ? ESCAPE '\\'"
            escaped = trigger.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params = [trigger, escaped + ":%"]
        with self._handle.read() as db:
            rows = list(
                db.query(f"SELECT * FROM runs{where} ORDER BY id DESC LIMIT ?", [*params, limit])
            )
        return [run_row(row) for row in rows]

    def run(self, run_id: int) -> RunRow | None:
        """The run `run_id`, or None."""
        with self._handle.read() as db:
            rows = list(db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        return run_row(rows[0]) if rows else None

    def task_results(self, run_id: int, host_id: str | None = None) -> list[dict[str, Any]]:
        """A run's task results in the order they were recorded, optionally for one host."""
        sql = "SELECT * FROM task_results WHERE run_id = ?"
        params: list[Any] = [run_id]
        if host_id is not None:
            sql += " AND host_id = ?"
            params.append(host_id)
        with self._handle.read() as db:
            return list(db.query(sql + " ORDER BY id", params))

    def audit(
        self, host_id: str | None = None, run_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The latest audit-log entries, newest first, filtered by host and/or run."""
        where, params = sql_where(("host_id = ?", host_id), ("run_id = ?", run_id))
        with self._handle.read() as db:
            return list(
                db.query(
                    f"SELECT * FROM audit_log{where} ORDER BY id DESC LIMIT ?", [*params, limit]
                )
            )

    def facts_history(self, host_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The host's collected facts, newest first, each with `facts` parsed."""
        with self._handle.read() as db:
            rows = list(
                db.query(
                    "SELECT * FROM facts WHERE host_id = ? ORDER BY id DESC LIMIT ?",
                    [host_id, limit],
                )
            )
        return [{**row, "facts": load_object(row["facts"], f"facts {row['id']}")} for row in rows]


def _unknown_server(db: Any, server_id: str) -> StateError:
    ids = [row[0] for row in db.execute("SELECT id FROM server_room").fetchall()]
    close = difflib.get_close_matches(server_id, ids, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    if not ids:
        hint = " (the database has no servers yet; `machineroom import` adds them)"
    return StateError(f"unknown server {server_id!r}{hint}")


def _insert(db: Any, table: str, record: dict[str, Any]) -> None:
    """A plain INSERT for the per-command and per-task hot paths.

    No `db[table]` object per row: the table and column names here are our own constants
    (sqlite-utils' `insert`, used before, re-read the schema on every call: most of the
    controller's CPU at 50 hosts).
    """
    columns = ", ".join(f'"{name}"' for name in record)
    marks = ", ".join("?" for _ in record)
    db.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', list(record.values()))
