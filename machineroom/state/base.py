"""StoreBase: one SQLite connection, its lock, write/read transactions and secret masking.

The state store is split by subject (servers and runs in store.py, metrics in metrics.py,
alerts, tokens, schedules in files of their own); each part subclasses this base.
"""

from __future__ import annotations

import contextlib
import difflib
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from machineroom.errors import StateError
from machineroom.masking import SECRETS
from machineroom.state.records import login_name


class StoreBase:
    """The connection to one state database and its transactions.

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
        self._user = login_name()
        self._workstation = socket.gethostname()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

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
        """Close the connection; the WAL is checkpointed by SQLite when the last one closes."""
        with self._lock:
            self._db.conn.close()

    def add_secret(self, value: str) -> None:
        """Mask `value` as `***` in every text written from now on (commands, output, res)."""
        self._masker.add(value)

    # -- transactions ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StateError(f"state database {self._path}: {_cause(exc)}") from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        with self._lock, self._translate():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                # Also on KeyboardInterrupt: nothing half-written stays behind.
                if self._db.conn.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.conn.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        with self._lock, self._translate():
            yield self._db

    def _mask(self, text: str) -> str:
        return self._masker.text(text)

    def _unknown_server(self, db: Any, server_id: str) -> StateError:
        ids = [row[0] for row in db.execute("SELECT id FROM server_room").fetchall()]
        close = difflib.get_close_matches(server_id, ids, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        if not ids:
            hint = " (the database has no servers yet; `machineroom import` adds them)"
        return StateError(f"unknown server {server_id!r}{hint}")


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
