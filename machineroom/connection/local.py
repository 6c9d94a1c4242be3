"""`connection: local`: commands run on the workstation itself with `sh -c`, no SSH.

Same contract as the SSH connection: a CommandResult, a timeout that kills the whole command
(its process group, not only the shell), become through sudo, every command reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from machineroom.connection.base import Become, CommandResult, ConnectOptions, SudoPlanner
from machineroom.errors import CommandTimeout
from machineroom.inventory.model import Host

__all__ = ["LocalConnection"]


class LocalConnection:
    """Runs commands on this machine; `open`, `is_alive` and `close` have nothing to do."""

    def __init__(self, host: Host, options: ConnectOptions | None = None) -> None:
        self.host = host
        self.options = options or ConnectOptions()
        self._sudo = SudoPlanner(host.id)

    def open(self) -> None:
        """Nothing to open: the workstation is always there."""

    def is_alive(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Nothing to close."""

    def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        become: Become | None = None,
    ) -> CommandResult:
        """Run `command` with `sh -c` here; with `become`, through `sudo -u USER -- sh -c`."""
        if timeout is None:
            timeout = self.options.command_timeout
        if become is None:
            return self._exec(["sh", "-c", command], stdin or b"", timeout, command, None)
        wire, prefix = self._sudo.prepare(command, become, self._run_raw)
        return self._exec(
            ["sh", "-c", wire], prefix + (stdin or b""), timeout, command, become.user
        )

    def _run_raw(self, command: str, stdin: bytes | None) -> CommandResult:
        return self._exec(
            ["sh", "-c", command], stdin or b"", self.options.command_timeout, command, None
        )

    def _exec(
        self,
        argv: list[str],
        data: bytes,
        timeout: float | None,
        shown: str,
        become_user: str | None,
    ) -> CommandResult:
        start = time.monotonic()
        # A session of its own: the timeout kills every process the command started, and the
        # command cannot read the workstation's terminal (sudo would prompt there otherwise).
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            self._report(shown, -1, "", f"timed out after {timeout:g}s", start, become_user)
            assert timeout is not None
            raise CommandTimeout(self.host.id, shown, timeout) from None
        return self._report(
            shown,
            proc.returncode,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
            start,
            become_user,
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
