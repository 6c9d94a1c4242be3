"""`connection: local`: commands run on the workstation itself with `sh -c`, no SSH.

Same contract as the SSH connection: a CommandResult, a timeout that kills the whole command
(its process group, not only the shell), become through sudo, every command reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import IO

from machineroom.connection.base import Become, CommandResult, ConnectOptions, SudoPlanner
from machineroom.connection.output import (
    CappedOutput,
    Stdin,
    describe_local_error,
    pump,
)
from machineroom.errors import CommandTimeout, InputError, Interrupted
from machineroom.inventory.model import Host

__all__ = ["LocalConnection"]


class LocalConnection:
    """Runs commands on this machine; `open`, `is_alive` and `close` have nothing to do."""

    def __init__(self, host: Host, options: ConnectOptions | None = None) -> None:
        self.host = host
        self.options = options or ConnectOptions()
        self._sudo = SudoPlanner(host.id)
        self._running: set[int] = set()  # process groups of the commands running now
        self._stopping = False  # stop_commands() was called: nothing more starts
        self._lock = threading.Lock()  # a command starts, or stop_commands() sees it: not both

    def open(self) -> None:
        """Nothing to open: the workstation is always there."""

    def is_alive(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Nothing to close."""

    def stop_commands(self) -> None:
        """Kill every command running now, with its process group (the run is stopping);
        their `run()` calls raise Interrupted, and so does every later one."""
        with self._lock:
            self._stopping = True
            running = list(self._running)
        for pgid in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    def run(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        become: Become | None = None,
    ) -> CommandResult:
        """Run `command` with `sh -c` here; with `become`, through `sudo -u USER -- sh -c`.
        stdin (bytes or a local file) is streamed in; output is kept head and tail."""
        if timeout is None:
            timeout = self.options.command_timeout
        if become is None:
            return self._exec(["sh", "-c", command], b"", stdin, timeout, command, None)
        wire, prefix = self._sudo.prepare(command, become, self._run_raw)
        return self._exec(["sh", "-c", wire], prefix, stdin, timeout, command, become.user)

    def _run_raw(self, command: str, stdin: bytes | None) -> CommandResult:
        return self._exec(
            ["sh", "-c", command], b"", stdin, self.options.command_timeout, command, None
        )

    def _exec(
        self,
        argv: list[str],
        prefix: bytes,
        stdin: Stdin,
        timeout: float | None,
        shown: str,
        become_user: str | None,
    ) -> CommandResult:
        start = time.monotonic()
        with self._lock:
            if self._stopping:
                raise Interrupted(f"{self.host.id}: the run is stopping: command not started")
            # A session of its own: the timeout kills every process the command started, and
            # the command cannot read the workstation's terminal (sudo would prompt there).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self._running.add(proc.pid)
        io = _Streams(proc, prefix, stdin)
        try:
            io.finish(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            io.finish(None)
            self._report(shown, -1, "", f"timed out after {timeout:g}s", start, become_user)
            assert timeout is not None
            raise CommandTimeout(self.host.id, shown, timeout) from None
        finally:
            self._running.discard(proc.pid)
        if self._stopping and (proc.returncode or 0) < 0:  # killed by stop_commands
            raise Interrupted(f"{self.host.id}: the run was stopped: command killed")
        if io.local_error is not None:
            raise InputError(describe_local_error(stdin, io.local_error))
        return self._report(
            shown, proc.returncode, io.out.text(), io.err.text(), start, become_user
        )

    def _report(
        self, shown: str, code: int, out: str, err: str, start: float, become_user: str | None
    ) -> CommandResult:
        result = CommandResult(shown, code, out, err, time.monotonic() - start, become_user)
        if self.options.on_command is not None:
            self.options.on_command(self.host, result)
        return result

    def __repr__(self) -> str:
        return f"<LocalConnection {self.host.id}>"


class _Streams:
    """A process's stdin fed and its stdout and stderr read by threads, in bounded memory
    (what `Popen.communicate` does, keeping everything)."""

    def __init__(self, proc: subprocess.Popen[bytes], prefix: bytes, stdin: Stdin) -> None:
        self.proc = proc
        self.out, self.err = CappedOutput(), CappedOutput()
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
    def _read(pipe: IO[bytes], into: CappedOutput) -> None:
        with pipe:
            while piece := pipe.read1(65536):  # type: ignore[attr-defined]
                into.add(piece)
