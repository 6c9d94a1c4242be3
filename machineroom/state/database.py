"""Opening the state database: private file modes, connection settings, WAL, migration.

`open_state` is the one way in; whatever goes wrong opening the file (not SQLite, damaged,
unwritable, from a newer machineroom) comes out as a StateError that names the path.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from machineroom.errors import StateError
from machineroom.state.migrations import migrate
from machineroom.state.sqlite import Database
from machineroom.state.store import StateStore

DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction


def open_state(
    path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> StateStore:
    """Open (creating if needed) the state database at `path` and migrate it to the latest schema.

    A new parent folder gets mode 700 and a `.gitignore` of `*` (the database is not for the
    repo); a new file gets mode 600. A file that is not SQLite, is damaged, or comes from a newer
    machineroom raises StateError naming the path.
    """
    file = Path(path)
    _create_private(file)
    try:
        conn = sqlite3.connect(
            str(file),
            timeout=busy_timeout,
            # One connection shared by the threads of a process, guarded by StateStore._lock.
            check_same_thread=False,
            # We issue BEGIN IMMEDIATE / COMMIT ourselves; no implicit deferred transactions.
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        raise StateError(f"{file}: cannot open the state database: {exc}") from None
    try:
        db = Database(conn)
        _configure(conn, busy_timeout)
        migrate(db, str(file))
    except StateError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise StateError(f"{file}: not a usable machineroom state database: {exc}") from None
    return StateStore(db, file)


def _create_private(file: Path) -> None:
    """Create the folder (700) and the empty file (600) before SQLite does, with our modes."""
    folder = file.parent
    try:
        if not folder.exists():
            try:
                folder.mkdir(mode=0o700, parents=True)
            except FileExistsError:
                pass  # another process opening the same new database made it first
            else:
                folder.chmod(0o700)  # mkdir's mode is filtered by the umask
                (folder / ".gitignore").write_text("# machineroom state: not for the repo\n*\n")
        if not file.exists():
            fd = os.open(file, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            file.chmod(0o600)
    except OSError as exc:
        raise StateError(f"{file}: cannot create the state database: {exc.strerror}") from None


def _configure(conn: sqlite3.Connection, busy_timeout: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # NORMAL is safe in WAL mode: a killed process loses nothing (the OS has the pages); only a
    # power cut may drop the last commits, never corrupt the file. FULL would fsync every commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    deadline = time.monotonic() + busy_timeout
    while True:
        # Switching a new file to WAL needs a moment of exclusive access; another process
        # opening the same new file at once can make it fail with "locked": retry.
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode})")
