"""The part of running a command that is the same whatever carries it.

`ShellConnection` is the base of every connection type: it wraps a command for become (sudo
or su, the password first on stdin), tags it so it can be killed on the host
(`MACHINEROOM_RUN`), applies the timeout, builds the CommandResult and reports it to the
audit hook (`ConnectOptions.on_command`), hidden while a no_log task runs. A transport (ssh,
local, a future docker exec) subclasses it and only opens its channel or process and moves
bytes: `exec_command()` runs one finished command line, and `open`/`is_alive`/`close` manage
the session. Register the class in connection/registry.py and the pool uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from machineroom.connection.base import (
    Become,
    CommandResult,
    ConnectOptions,
    SessionDropped,
    SudoPlanner,
)
from machineroom.connection.output import OutputSink, Stdin, describe_local_error
from machineroom.errors import CommandTimeout, InputError, Interrupted, MachineroomError
from machineroom.inventory.model import Host

__all__ = [
    "HIDDEN",
    "AuditedCommand",
    "DeadlinePassed",
    "Exited",
    "ShellConnection",
    "acting",
    "hidden_output",
    "hide_output",
    "show_output",
]

HIDDEN = "(hidden: no_log)"  # what the audit log says of a no_log task's command and output

# Who hides this thread's commands right now (no_log tasks, by host id): while not empty,
# they are audited as HIDDEN. A context variable, not a set of host ids shared by the run: a
# delegated task's commands go to another host's connection, which other workers may share,
# yet they belong to this task.
_hidden_by: ContextVar[frozenset[str]] = ContextVar("machineroom_hidden_by", default=frozenset())


def hide_output(owner: str) -> None:
    """From now on, the commands this thread runs are audited as "(hidden: no_log)": that
    they ran, with exit code and duration, not what they were or printed (callers still get
    the real CommandResult). `owner` (a host id) undoes it with `show_output(owner)`."""
    _hidden_by.set(_hidden_by.get() | {owner})


def show_output(owner: str) -> None:
    """Undo `hide_output(owner)` (safe when it was not called)."""
    _hidden_by.set(_hidden_by.get() - {owner})


# What this thread's commands do, as the task wrote it (`command: systemctl restart nginx`):
# set by the executor around a module's step, reported with each command to the audit hook.
_acting: ContextVar[str] = ContextVar("machineroom_acting", default="")


@dataclass(frozen=True)
class AuditedCommand(CommandResult):
    """A CommandResult as the audit hook receives it: with `action`, the module call the
    command carries out (`copy: dest=/etc/motd`), '' for the engine's own commands."""

    action: str = ""


@contextlib.contextmanager
def acting(action: str) -> Iterator[None]:
    """The commands run inside carry out `action` (the audit log shows it beside them)."""
    token = _acting.set(action)
    try:
        yield
    finally:
        _acting.reset(token)


@contextlib.contextmanager
def hidden_output(hide: bool = True) -> Iterator[None]:
    """`hide_output` for the commands run inside (nothing when `hide` is False)."""
    token = _hidden_by.set(_hidden_by.get() | {"(block)"}) if hide else None
    try:
        yield
    finally:
        if token is not None:
            _hidden_by.reset(token)


@dataclass(frozen=True)
class Exited:
    """What a transport saw of one command: its exit code and output (already capped)."""

    exit_code: int
    stdout: str
    stderr: str
    killed: bool = False  # ended by a signal or with no exit status (a stop may have done it)
    lost: str | None = None  # the session died during the command: why
    local_error: OSError | None = None  # the local file given as stdin could not be read


class DeadlinePassed(Exception):
    """Raised by `exec_command` when the command outlives its timeout, after the transport
    let go of the channel or process; the wrapper reports it and kills the command."""


# A command's stdout and stderr sinks (connection/output.py), when the caller reads them live.
Sinks = tuple[OutputSink, OutputSink]


class ShellConnection(ABC):
    """A Connection whose commands run through `sh -c` on the far side of a transport.

    Subclasses implement `open`, `is_alive`, `close` and `exec_command`; `kill_command`
    has a default for any Linux host (it runs a killer through the same transport).
    Safe to share between threads: the sudo probe is locked, running commands are tracked
    under a lock.
    """

    def __init__(self, host: Host, options: ConnectOptions | None = None) -> None:
        self.host = host
        self.options = options or ConnectOptions()
        settings = host.connection_settings
        self.connect_timeout = settings.connect_timeout or self.options.connect_timeout
        self.command_timeout = settings.command_timeout or self.options.command_timeout
        self._sudo = SudoPlanner(host.id)
        self._running: dict[str, Become | None] = {}  # tag -> become, of commands running now
        self._running_lock = threading.Lock()
        self._stopping = False  # stop_commands() was called: nothing more starts

    # ------------------------------------------------------------------ the transport part

    @abstractmethod
    def open(self) -> None:
        """Connect; raises Unreachable, AuthFailed or HostKeyError."""

    @abstractmethod
    def is_alive(self) -> bool:
        """Cheap check that the session still works (no remote command)."""

    @abstractmethod
    def close(self) -> None:
        """Close the session; safe to call twice."""

    def ensure_open(self) -> None:  # noqa: B027 (a hook: most transports need nothing)
        """Called before each command: open a session never opened (default: nothing)."""

    # True when exec_command takes `sinks` and fills them as output arrives; otherwise the
    # shared part fills them once the command ended (a transport written without them).
    streams_output = False

    @abstractmethod
    def exec_command(
        self,
        wire: str,
        prefix: bytes,
        stdin: Stdin,
        timeout: float | None,
        tag: str | None,
        sinks: Sinks | None = None,
    ) -> Exited:
        """Run the shell command line `wire` as the login user, send `prefix` then `stdin`
        on its stdin and close it, keep its output head and tail (output.py), or, for a
        transport with `streams_output`, feed it to `sinks` (stdout, stderr) as it arrives.

        `tag` (None for helper commands) names the command for `kill_command`. Raise
        DeadlinePassed past `timeout` seconds, SessionDropped(started=False) when the
        command could not start, Interrupted when `self.stopping` is already set.
        """

    def kill_command(self, tag: str, run: Callable[[str], object]) -> None:
        """Kill the command tagged `tag` and everything it started (best effort; it may have
        ended already). `run(line)` runs a shell line on the host as the command's user.

        The default finds the processes by the tag in their environment (it survives exec
        and sudo -> sh -c, and every child inherits it, `cmd &` ones too) and the shells
        above them by their command line. `[x]yz` keeps the killer's own line from matching.
        """
        pattern = f"MACHINEROOM_RUN=[{tag[0]}]{tag[1:]}"
        run(
            f"{{ grep -lzx '{pattern}' /proc/[0-9]*/environ;"
            f" grep -lz '{pattern}' /proc/[0-9]*/cmdline; }} 2>/dev/null"
            f" | cut -d/ -f3 | sort -u | xargs -r kill -KILL 2>/dev/null; true"
        )

    # ------------------------------------------------------------------ the shared part

    @property
    def stopping(self) -> bool:
        """True once `stop_commands()` was called: no command starts any more."""
        return self._stopping

    def run(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        become: Become | None = None,
        sinks: Sinks | None = None,
    ) -> CommandResult:
        """Run `command` through the login shell's `sh -c`; stdin (bytes, or a local file
        streamed from disk) is sent then closed; output is kept head and tail (output.py),
        or fed to `sinks` (stdout, stderr) as it arrives.

        With `become`, the command runs as `sudo -u USER -- sh -c COMMAND` (or su), the
        password (when asked for) going first on stdin. Raises CommandTimeout past `timeout`
        (default: the host's or the options' command_timeout), SessionDropped when the
        session dies, BecomeFailed when sudo refuses, Interrupted once the run is stopping.
        """
        if self._stopping:
            raise Interrupted(f"{self.host.id}: the run is stopping: command not started")
        self.ensure_open()
        if timeout is None:
            timeout = self.command_timeout
        # A command past its timeout, or of a run being stopped, must die on the host too.
        # Closing a channel does not kill it (no pty, no SIGHUP), and sshd refuses "signal"
        # requests for root logins, so every command carries a tag in its environment by
        # which `kill_command` finds it.
        tag = secrets.token_hex(8)
        body = f"export MACHINEROOM_RUN={tag}; {command}"
        if become is None:
            wire, prefix = body, b""
        else:
            wire, prefix = self._sudo.prepare(body, become, self._run_raw)
        with self._running_lock:  # checked again here: a stop may have come meanwhile
            if self._stopping:
                raise Interrupted(f"{self.host.id}: the run is stopping: command not started")
            self._running[tag] = become
        user = become.user if become else None
        try:
            return self._execute(wire, prefix, stdin, timeout, command, user, tag, sinks)
        except CommandTimeout:
            self._kill(tag, become, "(kill the timed-out command)")
            raise
        finally:
            with self._running_lock:
                self._running.pop(tag, None)

    def stop_commands(self) -> None:
        """Kill on the host every command of ours running now (the run is being stopped);
        their `run()` calls raise Interrupted, and so does every later one. Best effort."""
        with self._running_lock:
            self._stopping = True
            running = list(self._running.items())
        for tag, become in running:
            self._kill(tag, become, "(kill the command: the run is stopping)")

    def _kill(self, tag: str, become: Become | None, shown: str) -> None:
        def run_as(line: str) -> None:
            prefix = b""
            if become is not None:
                line, prefix = self._sudo.prepare(line, become, self._run_raw)
            self._execute(line, prefix, None, self.connect_timeout, shown, None, None)

        # twice: on a loaded host the kill's own channel may time out, and a command left
        # running keeps its run waiting on it (a `sleep 1000` would hold a stop that long)
        with acting(""):  # the engine's own command, not the task's module call
            for _ in range(2):
                try:
                    self.kill_command(tag, run_as)
                    return
                except MachineroomError:
                    continue

    def _run_raw(self, command: str, stdin: bytes | None) -> CommandResult:
        """A helper command (the sudo probe) as the login user, reported like any other
        (with no task action: it is the engine's own)."""
        with acting(""):
            return self._execute(command, b"", stdin, self.command_timeout, command, None, None)

    def _execute(
        self,
        wire: str,
        prefix: bytes,
        stdin: Stdin,
        timeout: float | None,
        shown: str,
        become_user: str | None,
        tag: str | None,
        sinks: Sinks | None = None,
    ) -> CommandResult:
        """Exec `wire` through the transport and report it; `shown` is what results and the
        audit log say the command was."""
        start = time.monotonic()
        try:
            if sinks is None:
                done = self.exec_command(wire, prefix, stdin, timeout, tag)
            elif self.streams_output:
                done = self.exec_command(wire, prefix, stdin, timeout, tag, sinks)
            else:
                done = self.exec_command(wire, prefix, stdin, timeout, tag)
                sinks[0].add(done.stdout.encode())
                sinks[1].add(done.stderr.encode())
                done = dataclasses.replace(done, stdout=sinks[0].text(), stderr=sinks[1].text())
        except DeadlinePassed:
            assert timeout is not None
            self._report(shown, -1, "", f"timed out after {timeout:g}s", start, become_user)
            raise CommandTimeout(self.host.id, shown, timeout) from None
        if done.local_error is not None:
            raise InputError(describe_local_error(stdin, done.local_error))
        if done.lost is not None:
            err = done.stderr + "\n(connection lost)"
            self._report(shown, -1, done.stdout, err, start, become_user)
            raise SessionDropped(self.host.id, done.lost, started=True)
        result = self._report(shown, done.exit_code, done.stdout, done.stderr, start, become_user)
        if self._stopping and done.killed:
            raise Interrupted(f"{self.host.id}: the run was stopped: command killed on the host")
        return result

    def _report(
        self, shown: str, code: int, out: str, err: str, start: float, become_user: str | None
    ) -> CommandResult:
        result = CommandResult(shown, code, out, err, time.monotonic() - start, become_user)
        hook = self.options.on_command
        if hook is not None:
            action = _acting.get()
            audited = AuditedCommand(**dataclasses.asdict(result), action=action)
            if _hidden_by.get():  # a no_log task: that it ran, not what or its output
                module = action.split(":", 1)[0]
                hidden = f"{module}: {HIDDEN}" if module else ""
                audited = dataclasses.replace(
                    audited, command=HIDDEN, stdout=HIDDEN, stderr="", action=hidden
                )
            hook(self.host, audited)
        return result
