"""`connection: sim`: a simulated host, for capacity planning (benchmarks/cluster.py).

No network and no shell: opening costs `sim_handshake_ms` of this process's CPU (what an SSH
handshake's crypto costs the controller or worker) and one `sim_latency` wait; each command
costs `sim_command_ms` of CPU and waits `sim_latency` seconds, then succeeds with no output
(enough for `command`, `shell` and `raw` tasks with programs off: `--no-programs`). The
commands go to the audit log as real ones do, so the state database's load is real too.
Host variables set the costs (defaults: a LAN: 1 ms, 30 ms handshake, 1 ms a command).
"""

from __future__ import annotations

import threading
import time

from machineroom.connection.base import Become, CommandResult, ConnectOptions
from machineroom.connection.command import Sinks
from machineroom.connection.output import Stdin
from machineroom.errors import Interrupted
from machineroom.inventory.model import Host


def _burn(ms: float) -> None:
    """Spend `ms` milliseconds of this thread's CPU time."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


class SimConnection:
    """A host that answers every command after a configured latency and CPU cost."""

    def __init__(self, host: Host, options: ConnectOptions) -> None:
        self.host = host
        self.options = options
        values = host.vars
        self.latency = float(values.get("sim_latency", 0.001))
        self.handshake_ms = float(values.get("sim_handshake_ms", 30))
        self.command_ms = float(values.get("sim_command_ms", 1))
        self._stopped = threading.Event()
        self._open = False

    def open(self) -> None:
        """The handshake's cost and one round trip."""
        _burn(self.handshake_ms)
        time.sleep(self.latency)
        self._open = True

    def run(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        become: Become | None = None,
        sinks: Sinks | None = None,
    ) -> CommandResult:
        """Succeeds with no output after the command's cost and latency."""
        started = time.monotonic()
        _burn(self.command_ms)
        if self._stopped.wait(self.latency):
            raise Interrupted(f"{self.host.id}: command killed by the run's stop")
        result = CommandResult(
            command=command,
            exit_code=0,
            stdout="",
            stderr="",
            duration=time.monotonic() - started,
            become_user=become.user if become else None,
        )
        if self.options.on_command is not None:
            self.options.on_command(self.host, result)
        return result

    def is_alive(self) -> bool:
        """Alive once opened."""
        return self._open

    def stop_commands(self) -> None:
        """A command 'running' now ends Interrupted."""
        self._stopped.set()

    def close(self) -> None:
        """Nothing to close."""
        self._open = False
