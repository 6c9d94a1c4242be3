"""What every connection offers: run a command, get a CommandResult.

Modules and the executor see only this protocol; `ssh.py` and `local.py` implement it on
top of `command.py`'s ShellConnection (the part every type shares), and `registry.py` maps a
host's `connection` to its type. Connections never import the state layer: they report each
command through `on_command`, which the caller wires to the audit log.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from machineroom.connection.output import OutputSink, Stdin
from machineroom.errors import MachineroomError, Unreachable
from machineroom.inventory.model import Host


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one remote command."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float  # seconds, wall clock
    become_user: str | None = None  # the sudo target, when the command ran through sudo

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0


# Called after every command with the host and its result (the audit hook).
CommandHook = Callable[[Host, CommandResult], None]


@dataclass(frozen=True)
class Become:
    """Run as another user through sudo (or su); `password` is sent on stdin, never in the
    command. `flags` go to sudo/su as written (`-H`, `-l`)."""

    user: str = "root"
    password: str | None = field(default=None, repr=False)
    method: str = "sudo"
    flags: str = ""


@dataclass(frozen=True)
class ConnectOptions:
    """How to connect: host-key policy, timeouts, and how to reveal vault secrets."""

    known_hosts_files: tuple[str, ...] = ()  # read, in order; the first is the project's file
    project_known_hosts: str | None = None  # where --accept-new-host-keys records keys
    accept_new_host_keys: bool = False
    # what an unknown host key's message advises (None: the CLI's --accept-new-host-keys)
    unknown_key_advice: str | None = None
    # the path a known_hosts file is named by in messages and recorded refusals, when it is a
    # copy (a cluster worker's copy of the controller's file: the controller's path)
    known_hosts_shown_as: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    command_timeout: float | None = None
    ssh_config_file: str | None = None  # default ~/.ssh/config when it exists
    use_agent: bool = True
    decrypt: Callable[[str], str] | None = None  # vault ciphertext -> plain text
    on_command: CommandHook | None = None
    # key files' contents by expanded path: a cluster worker gets the controller's key files
    # in memory with the run (cluster/shard.py) and never writes them to disk
    key_material: Mapping[str, str] = field(default_factory=dict)
    # Nagle + delayed ACK cost ~45 ms per command on loopback; off only to measure that.
    tcp_nodelay: bool = True


class Connection(Protocol):
    """One open session to one host, reused by every command of a run."""

    host: Host

    def open(self) -> None:
        """Connect and authenticate; raises Unreachable, AuthFailed or HostKeyError."""

    def run(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        become: Become | None = None,
        sinks: tuple[OutputSink, OutputSink] | None = None,
    ) -> CommandResult:
        """Run `command` through the login shell's `sh -c`; stdin is sent then closed.

        `stdin` is bytes or the path of a local file, streamed from disk. What the command
        prints is kept head and tail (connection/output.py): the memory a command costs is
        bounded whatever it prints. `sinks` (stdout, stderr) take the streams as they arrive
        instead; the result then holds what their `text()` says.
        """
        ...

    def is_alive(self) -> bool:
        """Cheap check that the session still works (no remote command)."""
        ...

    def close(self) -> None:
        """Close the session; safe to call twice."""


class BecomeFailed(MachineroomError):
    """sudo refused to run a command as `user` (wrong or missing password, not allowed)."""

    def __init__(self, host: str, user: str, reason: str, method: str = "sudo") -> None:
        self.host = host
        self.user = user
        self.reason = reason
        super().__init__(f"{host}: cannot become {user} with {method}: {reason}")


class SessionDropped(Unreachable):
    """The SSH session died under a command. `started` is False when the command provably
    never started (the channel could not be opened), so running it again is safe."""

    def __init__(self, host: str, reason: str, *, started: bool) -> None:
        self.started = started
        super().__init__(host, reason)


# Runs a command as the login user, with optional stdin, and reports it like any other.
RawRunner = Callable[[str, bytes | None], CommandResult]


class SudoPlanner:
    """Turns a command into its sudo form, once per connection learning what sudo wants.

    sudo reads a password from stdin only when the rule asks for one: sending a password to a
    NOPASSWD rule would hand it to the command as its first stdin line. So the first `become`
    to a user probes `sudo -k -n true` (does it need a password?) and, when it does, checks the
    password once with `true`: a wrong password fails here, clearly, and never has the
    command's real stdin read as further password attempts. `-k` ignores sudo's cached
    credentials, so "needs a password" stays true for the whole connection.
    """

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self._needs_password: dict[str, bool] = {}
        self._lock = threading.Lock()

    def prepare(self, command: str, become: Become, run_raw: RawRunner) -> tuple[str, bytes]:
        """The command to run and the bytes to send before the caller's stdin."""
        key = f"{become.method}:{become.user}"
        with self._lock:
            needs = self._needs_password.get(key)
            if needs is None:
                probe = self._probe_su if become.method == "su" else self._probe
                needs = probe(become, run_raw)
                self._needs_password[key] = needs
        user = shlex.quote(become.user)
        inner = f"sh -c {shlex.quote(command)}"
        flags = f"{become.flags} " if become.flags else ""
        secret = (become.password or "") + "\n"
        if become.method == "su":  # su reads the password line only: the rest is the command's
            wire = f"su {flags}{user} -c {shlex.quote(inner)}"
            return (wire, secret.encode()) if needs else (wire, b"")
        if needs:
            return f"sudo -k -S -p '' {flags}-u {user} -- {inner}", secret.encode()
        return f"sudo -n {flags}-u {user} -- {inner}", b""

    def _probe_su(self, become: Become, run_raw: RawRunner) -> bool:
        """Whether su wants a password (not when root logs in), and that it takes it."""
        user = shlex.quote(become.user)
        free = run_raw(f"su {user} -c true", b"")
        if free.ok:
            return False
        if become.password is None:
            raise BecomeFailed(
                self.host_id,
                become.user,
                "su asks for a password and none was given (set become_password, the "
                f"password of {become.user}) [{_last_line(free.stderr)}]",
                "su",
            )
        check = run_raw(f"su {user} -c true", (become.password + "\n").encode())
        if check.ok:
            return True
        said = _last_line(check.stderr).replace("Password:", "").strip()
        raise BecomeFailed(self.host_id, become.user, f"su rejected the password [{said}]", "su")

    def _probe(self, become: Become, run_raw: RawRunner) -> bool:
        user = shlex.quote(become.user)
        free = run_raw(f"sudo -k -n -u {user} -- true", None)
        if free.ok:
            return False
        if free.exit_code == 127:
            raise BecomeFailed(self.host_id, become.user, "sudo is not installed on the host")
        if become.password is None:
            raise BecomeFailed(
                self.host_id,
                become.user,
                f"sudo asks for a password and none was given (set become_password) "
                f"[{_last_line(free.stderr)}]",
            )
        check = run_raw(f"sudo -k -S -p '' -u {user} -- true", (become.password + "\n").encode())
        if check.ok:
            return True
        said = _last_line(check.stderr)
        if "incorrect password" in check.stderr or "Sorry, try again" in check.stderr:
            raise BecomeFailed(self.host_id, become.user, f"sudo rejected the password [{said}]")
        raise BecomeFailed(self.host_id, become.user, said or f"sudo exited {check.exit_code}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
