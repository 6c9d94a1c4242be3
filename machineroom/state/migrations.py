"""Schema versions of the state database, applied forward, in order, never edited once released.

`PRAGMA user_version` holds how many migrations a file has had. Each migration is a function of
the sqlite-utils `Database`; `migrate` runs the missing ones and bumps `user_version` inside one
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


# Index i holds the migration from version i to version i + 1. Append only.
MIGRATIONS: list[Migration] = [_v1_server_room, _v2_history]
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
