"""Schema versions of the state database, applied forward, in order, never edited once released.

`PRAGMA user_version` holds how many migrations a file has had. Each migration is a function of
the store's `sqlite.Database`; `migrate` runs the missing ones and bumps `user_version` inside one
`BEGIN IMMEDIATE` transaction (SQLite DDL is transactional), so a process killed mid-migration
leaves the file at its previous version and the next open simply tries again.

To change the schema, append a function to `MIGRATIONS` and describe it in docs/database.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from machineroom.errors import StateError

Migration = Callable[[Any], None]


def _execute_all(db: Any, script: str) -> None:
    # One statement at a time through db.execute: sqlite3's executescript() would COMMIT the
    # surrounding transaction first and break the all-or-nothing migration.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1_server_room(db: Any) -> None:
    """The MachineRoom document's table, column for column (TEXT for its CHAR/BLOB types)."""
    _execute_all(
        db,
        """
        CREATE TABLE server_room (
            id TEXT PRIMARY KEY NOT NULL,
            host TEXT NOT NULL,
            user TEXT NOT NULL,
            pass TEXT NOT NULL,          -- '' | 'vault' | 'env:NAME', never a password
            port INTEGER NOT NULL,
            description TEXT,
            res TEXT NOT NULL,           -- JSON object
            next_action TEXT NOT NULL    -- JSON object
        );
        """,
    )


def _v2_history(db: Any) -> None:
    """Runs, per-task results, facts history and the command audit log."""
    _execute_all(
        db,
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            command TEXT NOT NULL,
            user TEXT NOT NULL,
            workstation TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_start TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            playbook TEXT,
            inventory TEXT,
            git_commit TEXT,
            args TEXT NOT NULL,
            summary TEXT NOT NULL
        );
        CREATE INDEX runs_started_at ON runs (started_at);
        CREATE INDEX runs_status ON runs (status);

        CREATE TABLE task_results (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            host_id TEXT NOT NULL,
            task TEXT NOT NULL,
            location TEXT,
            status TEXT NOT NULL,
            duration REAL NOT NULL,
            stdout TEXT NOT NULL,
            stderr TEXT NOT NULL,
            diff TEXT NOT NULL,
            message TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL
        );
        CREATE INDEX task_results_run_host ON task_results (run_id, host_id);
        CREATE INDEX task_results_host_time ON task_results (host_id, finished_at);

        CREATE TABLE facts (
            id INTEGER PRIMARY KEY,
            host_id TEXT NOT NULL,
            run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
            collected_at TEXT NOT NULL,
            facts TEXT NOT NULL
        );
        CREATE INDEX facts_host_time ON facts (host_id, collected_at);

        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
            host_id TEXT NOT NULL,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            command TEXT NOT NULL,
            exit_code INTEGER,
            duration REAL NOT NULL,
            stdout_tail TEXT NOT NULL,
            stderr_tail TEXT NOT NULL
        );
        CREATE INDEX audit_log_host_time ON audit_log (host_id, at);
        CREATE INDEX audit_log_run ON audit_log (run_id);
        CREATE INDEX audit_log_at ON audit_log (at);
        """,
    )


def _v3_fleet(db: Any) -> None:
    """Fleet operations: metric samples, each host's latest collection, alerts, access tokens,
    schedule events, and who or what started a run."""
    _execute_all(
        db,
        """
        ALTER TABLE runs ADD COLUMN trigger TEXT;  -- NULL: a person at the CLI

        -- One row per (host, metric): samples refer to it by a small integer, so a month of
        -- 5-minute samples costs ~20 bytes a sample instead of repeating both names.
        CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            host_id TEXT NOT NULL,
            metric TEXT NOT NULL,
            UNIQUE (host_id, metric)
        );
        CREATE TABLE samples (
            series_id INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
            at INTEGER NOT NULL,         -- unix seconds, UTC
            value REAL NOT NULL,
            PRIMARY KEY (series_id, at)
        ) WITHOUT ROWID;
        CREATE VIEW metrics AS
            SELECT series.host_id AS host_id, series.metric AS metric, samples.value AS value,
                   samples.at AS at
            FROM samples JOIN series ON series.id = samples.series_id;

        CREATE TABLE host_status (
            host_id TEXT PRIMARY KEY NOT NULL,
            reachable INTEGER NOT NULL,
            last_attempt TEXT NOT NULL,
            last_seen TEXT,
            failures INTEGER NOT NULL,   -- consecutive collections that failed
            error TEXT NOT NULL,
            run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
            metrics TEXT NOT NULL,       -- JSON {metric: value} of the latest collection
            containers TEXT NOT NULL,    -- JSON [{name, image, state, status}]
            counters TEXT NOT NULL       -- JSON raw counters, for rates between collections
        );

        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            rule TEXT NOT NULL,
            host_id TEXT NOT NULL,
            subject TEXT NOT NULL,       -- what on the host: a mount, a container, '' for the host
            severity TEXT NOT NULL,
            state TEXT NOT NULL,         -- open | resolved
            opened_at TEXT NOT NULL,
            resolved_at TEXT,
            value REAL,
            message TEXT NOT NULL,
            notified_open_at TEXT,
            notified_resolved_at TEXT,
            notify_error TEXT NOT NULL DEFAULT ''
        );
        CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, host_id, subject)
            WHERE state = 'open';
        CREATE INDEX alerts_host_time ON alerts (host_id, opened_at);
        CREATE INDEX alerts_opened ON alerts (opened_at);

        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,          -- viewer | operator | admin
            hash TEXT NOT NULL UNIQUE,   -- sha256 of the token (the token itself is never kept)
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            last_used_at TEXT,
            expires_at TEXT,
            revoked_at TEXT
        );

        CREATE TABLE schedule_events (
            id INTEGER PRIMARY KEY,
            schedule TEXT NOT NULL,
            due_at TEXT NOT NULL,
            at TEXT NOT NULL,
            event TEXT NOT NULL,         -- started | finished | skipped | missed
            run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX schedule_events_schedule ON schedule_events (schedule, id);
        """,
    )


def _v4_audit_action(db: Any) -> None:
    """What each audited command carries out, as the task wrote it (`copy: dest=/etc/motd`),
    beside the command as sent; '' for rows written before and for the engine's own."""
    db.execute("ALTER TABLE audit_log ADD COLUMN action TEXT NOT NULL DEFAULT ''")


def _v5_results_ignored(db: Any) -> None:
    """`task_results.ignored`: 1 for a failure the task ignored (`ignore_errors`), which the
    recap counts as ok; rows written before are marked from the "(ignored)" their message
    ends with. And an index of the changed results alone, newest first for /changes."""
    _execute_all(
        db,
        """
        ALTER TABLE task_results ADD COLUMN ignored INTEGER NOT NULL DEFAULT 0;
        UPDATE task_results SET ignored = 1
            WHERE status = 'failed' AND message LIKE '%(ignored)';
        CREATE INDEX task_results_changed ON task_results (id) WHERE status = 'changed';
        """,
    )


# Index i holds the migration from version i to version i + 1. Append only.
MIGRATIONS: list[Migration] = [
    _v1_server_room,
    _v2_history,
    _v3_fleet,
    _v4_audit_action,
    _v5_results_ignored,
]
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(db: Any) -> int:
    """The schema version recorded in the file (0 for a new, empty file)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Any, path: str, target: int | None = None) -> int:
    """Bring the database at `path` up to `target` (default: the latest); return its version.

    Safe when several processes open a new file at once: the version is read again after the
    write lock is held, so only the first one migrates and the others find nothing to do.
    """
    goal = SCHEMA_VERSION if target is None else target
    version = user_version(db)
    _check_not_newer(version, path)
    if version >= goal:
        return version
    db.execute("BEGIN IMMEDIATE")
    try:
        version = user_version(db)
        _check_not_newer(version, path)
        if version == 0:
            _check_no_foreign_tables(db, path)
        for number in range(version, goal):
            MIGRATIONS[number](db)
        if goal > version:
            # PRAGMA does not take parameters; goal is our own int.
            db.execute(f"PRAGMA user_version = {int(goal)}")
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise
    return max(goal, version)


def _check_not_newer(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path}: the state database has schema version {version}, newer than this "
            f"machineroom understands ({SCHEMA_VERSION}); upgrade machineroom to use it"
        )


def _check_no_foreign_tables(db: Any, path: str) -> None:
    # A file with tables but no version was not made by us (e.g. the original tool's cache.db,
    # whose `pass` column holds plaintext): adopting it silently would keep those passwords.
    tables = [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    ]
    if tables:
        raise StateError(
            f"{path}: not a machineroom state database (it has tables {', '.join(tables)} but "
            "no machineroom schema version); bring its servers in with `machineroom import` "
            "and give the state database a path of its own"
        )
