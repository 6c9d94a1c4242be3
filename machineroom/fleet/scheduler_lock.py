"""One scheduler per state database: an exclusive lock held for the scheduler's lifetime.

"Never two runs of one schedule at once" holds inside one scheduler; a second scheduler on
the same database (a systemd unit plus someone's foreground `machineroom scheduler`) would
start every schedule twice. The lock is an flock on a file beside the database, so the
kernel releases it when the process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from machineroom.errors import UsageError


@contextlib.contextmanager
def scheduler_lock(state_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold `<state>.scheduler.lock` (mode 600) while the block runs; a UsageError naming the
    holder's pid when another scheduler holds it."""
    path = Path(f"{state_path}.scheduler.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(
                f"another scheduler already runs on {state_path} (pid {holder}; lock "
                f"{path}): stop it first, one scheduler per state database"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the flock
