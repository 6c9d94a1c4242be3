"""What every connection offers: run a command, get a CommandResult.

Modules and the executor see only this protocol; `ssh.py` and `local.py` implement it.
Connections never import the state layer: they report each command through `on_command`,
which the caller wires to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from machineroom.inventory.model import Host


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one remote command."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float  # seconds, wall clock

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0


# Called after every command with the host and its result (the audit hook).
CommandHook = Callable[[Host, CommandResult], None]


@dataclass(frozen=True)
class Become:
    """Run as another user through sudo; `password` is sent on stdin, never in the command."""

    user: str = "root"
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ConnectOptions:
    """How to connect: host-key policy, timeouts, and how to reveal vault secrets."""

    known_hosts_files: tuple[str, ...] = ()  # read, in order; the first is the project's file
    project_known_hosts: str | None = None  # where --accept-new-host-keys records keys
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    command_timeout: float | None = None
    ssh_config_file: str | None = None  # default ~/.ssh/config when it exists
    use_agent: bool = True
    decrypt: Callable[[str], str] | None = None  # vault ciphertext -> plain text
    on_command: CommandHook | None = None


class Connection(Protocol):
    """One open session to one host, reused by every command of a run."""

    host: Host

    def open(self) -> None:
        """Connect and authenticate; raises Unreachable, AuthFailed or HostKeyError."""

    def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        become: Become | None = None,
    ) -> CommandResult:
        """Run `command` through the login shell's `sh -c`; stdin is sent then closed."""
        ...

    def is_alive(self) -> bool:
        """Cheap check that the session still works (no remote command)."""
        ...

    def close(self) -> None:
        """Close the session; safe to call twice."""
