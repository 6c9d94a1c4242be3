"""DatabaseHandle: one SQLite connection, its lock, transactions, secret masking and the
translation of sqlite3 errors, shared by the state store and each of its subjects.

The store is split by subject (servers and runs in store.py; metrics, alerts, tokens, schedules
and the dashboard's queries in files of their own). Each subject is handed the same handle: the
subjects do not inherit from one another, and a write of one subject can join a transaction
another part of the store opened (see `DatabaseHandle.write`).
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from machineroom.errors import StateError
from machineroom.masking import SECRETS
from machineroom.state.records import login_name


class DatabaseHandle:
    """The connection to one state database, its transactions and masking.

    Thread safety: one sqlite3 connection guarded by one lock. SQLite allows one writer at a
    time anyway, so per-thread connections would only trade the lock for busy-timeout polling
    between threads (sleep-and-retry, slower and unfair); one connection also keeps a
    transaction from interleaving with another thread's statements.
    """

    def __init__(self, db: Any, path: Path) -> None:
        self._db = db
        self._path = path
        self._lock = threading.RLock()
        self._masker = SECRETS  # the process's secrets: one registry for every sink
        self._depth = 0  # write() blocks open on this connection (the thread holding the lock)
        self._on_rollback: list[Callable[[], None]] = []
        self.user = login_name()
        self.workstation = socket.gethostname()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def connection(self) -> sqlite3.Connection:
        """The sqlite3 connection (for PRAGMA checks; writes go through `write`)."""
        conn: sqlite3.Connection = self._db.conn
        return conn

    def close(self) -> None:
        """Close the connection; the WAL is checkpointed by SQLite when the last one closes."""
        with self._lock:
            self._db.conn.close()

    def add_secret(self, value: str) -> None:
        """Mask `value` as `***` in every text written from now on (commands, output, res)."""
        self._masker.add(value)

    def mask(self, text: str) -> str:
        """`text` with every known secret written as `***`."""
        return self._masker.text(text)

    def mask_data(self, value: Any) -> Any:
        """A copy of a JSON-like value with every known secret in its texts written as `***`."""
        return self._masker.data(value)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever a write is rolled back (a subject's cache of rows that
        the rollback undid, such as metric series ids, must be forgotten)."""
        self._on_rollback.append(callback)

    # -- transactions ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def translate(self) -> Iterator[None]:
        """Turn a sqlite3 error into a StateError that names the database and the cause."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StateError(f"state database {self._path}: {_cause(exc)}") from None

    @contextlib.contextmanager
    def write(self) -> Iterator[Any]:
        """A write transaction: all of the block's statements or none of them.

        The outermost block is a `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock
        before reading, so a read-modify-write cannot lose another process's update, and
        waiting for the lock goes through the busy timeout instead of failing on a lock
        upgrade. A block inside another one (two subjects' writes grouped by
        `StateStore.transaction`) is a savepoint: its failure undoes only its own statements,
        and nothing is committed before the outermost block ends.
        """
        with self._lock, self.translate():
            nested = self._depth > 0
            self._db.execute("SAVEPOINT inner" if nested else "BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                # Also on KeyboardInterrupt: nothing half-written stays behind.
                self._depth -= 1
                self._rollback(nested)
                raise
            self._depth -= 1
            try:
                self._db.execute("RELEASE inner" if nested else "COMMIT")
            except BaseException:
                self._rollback(nested)
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        """The database for reading, under the lock (so no other thread's transaction is
        half-way through this connection)."""
        with self._lock, self.translate():
            yield self._db

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database and truncate it."""
        with self._lock, self.translate():
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _rollback(self, nested: bool) -> None:
        if self._db.conn.in_transaction:
            if nested:
                self._db.execute("ROLLBACK TO inner")
                self._db.execute("RELEASE inner")
            else:
                self._db.execute("ROLLBACK")
        for callback in self._on_rollback:
            callback()


# What SQLite's result codes mean to whoever has to act on them; SQLite's own words follow.
_CAUSES = {
    "SQLITE_FULL": "disk full",
    "SQLITE_BUSY": "locked by another process past the busy timeout",
    "SQLITE_LOCKED": "locked",
    "SQLITE_READONLY": "read-only",
    "SQLITE_IOERR": "I/O error",
    "SQLITE_CORRUPT": "damaged",
    "SQLITE_CANTOPEN": "cannot be opened",
    "SQLITE_PERM": "permission denied",
}


def _cause(exc: sqlite3.Error) -> str:
    """`disk full (database or disk is full)`: what happened, then SQLite's message."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    cause = _CAUSES.get("_".join(name.split("_")[:2]))  # SQLITE_IOERR_WRITE: SQLITE_IOERR
    return f"{cause} ({exc})" if cause else str(exc)
