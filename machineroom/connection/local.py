"""`connection: local`: commands run on the workstation itself with `sh -c`, no SSH.

Same contract as the SSH connection (the shared part is command.py's ShellConnection): a
CommandResult, a timeout that kills the whole command (its process group, not only the
shell), become through sudo, every command reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from machineroom.connection.base import ConnectOptions
from machineroom.connection.command import DeadlinePassed, Exited, ShellConnection, Sinks
from machineroom.connection.output import CappedOutput, OutputSink, Stdin, pump
from machineroom.errors import Interrupted
from machineroom.inventory.model import Host

__all__ = ["LocalConnection"]


class LocalConnection(ShellConnection):
    """Runs commands on this machine; `open`, `is_alive` and `close` have nothing to do.

    The transport part only: a process per command; become, timeouts and auditing are
    ShellConnection's (command.py).
    """

    def __init__(self, host: Host, options: ConnectOptions | None = None) -> None:
        super().__init__(host, options)
        self._groups: dict[str, int] = {}  # tag -> process group, of the commands running now
        self._start_lock = threading.Lock()  # a command starts, or a kill sees it: not both

    def open(self) -> None:
        """Nothing to open: the workstation is always there."""

    def is_alive(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Nothing to close."""

    def kill_command(self, tag: str, run: Callable[[str], object]) -> None:
        """Kill the command's whole process group (no /proc scan: the workstation may not be
        Linux). A command being started now is either seen here or sees `stopping`."""
        with self._start_lock:
            pgid = self._groups.get(tag)
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    streams_output = True

    def exec_command(
        self,
        wire: str,
        prefix: bytes,
        stdin: Stdin,
        timeout: float | None,
        tag: str | None,
        sinks: Sinks | None = None,
    ) -> Exited:
        """`sh -c WIRE` in a session of its own; past `timeout` its process group is killed."""
        with self._start_lock:
            if self.stopping:
                raise Interrupted(f"{self.host.id}: the run is stopping: command not started")
            # A session of its own: the timeout kills every process the command started, and
            # the command cannot read the workstation's terminal (sudo would prompt there).
            proc = subprocess.Popen(
                ["sh", "-c", wire],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            if tag is not None:
                self._groups[tag] = proc.pid
        io = _Streams(proc, prefix, stdin, sinks)
        try:
            io.finish(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            io.finish(None)
            raise DeadlinePassed from None
        finally:
            if tag is not None:
                with self._start_lock:
                    self._groups.pop(tag, None)
        code = proc.returncode
        return Exited(code, io.out.text(), io.err.text(), code < 0, None, io.local_error)

    def __repr__(self) -> str:
        return f"<LocalConnection {self.host.id}>"


class _Streams:
    """A process's stdin fed and its stdout and stderr read by threads, in bounded memory
    (what `Popen.communicate` does, keeping everything)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], prefix: bytes, stdin: Stdin, sinks: Sinks | None
    ) -> None:
        self.proc = proc
        self.out, self.err = sinks or (CappedOutput(), CappedOutput())
        self.local_error: OSError | None = None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._feed, args=(proc.stdin, prefix, stdin), daemon=True),
            threading.Thread(target=self._read, args=(proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def finish(self, timeout: float | None) -> None:
        """Wait for the process (TimeoutExpired past `timeout`), then for the streams."""
        self.proc.wait(timeout)
        for thread in self._threads:
            thread.join()

    def _feed(self, pipe: IO[bytes], prefix: bytes, stdin: Stdin) -> None:
        try:
            self.local_error = pump(prefix, stdin, pipe.write)
        except OSError:
            pass  # the command exited without reading it all; its exit code says why
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    @staticmethod
    def _read(pipe: IO[bytes], into: OutputSink) -> None:
        with pipe:
            while piece := pipe.read1(65536):  # type: ignore[attr-defined]
                into.add(piece)
