"""A fake connection for tests of pure executor logic: it answers only what it was told.

Like invoke's `MockContext`: a `FakeConnection` is built with the commands it expects (a
piece of the script, a regular expression, or a predicate) and the canned result of each
(exit code, stdout, stderr; or an error to raise, or a function of the command). Any other
command raises `UnexpectedCommand`, naming it, so a test never passes by accident. Every
command it ran is kept in `commands`, in order.

`FakePool` hands the executor these connections by host id (the two calls the executor makes
on a pool: `get` and `stop_commands`); a host given as unreachable raises `Unreachable` when
its connection is asked for. Use it as `RunShared(pool=FakePool({...}), ...)`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from machineroom.connection.base import Become, CommandResult
from machineroom.connection.command import Sinks
from machineroom.connection.output import Stdin
from machineroom.errors import Interrupted, MachineroomError, Unreachable
from machineroom.inventory.model import Host

__all__ = ["FakeConnection", "FakePool", "Reply", "UnexpectedCommand", "expect"]


@dataclass(frozen=True)
class Reply:
    """A canned result of one command. `delay`: seconds the command takes (for ordering
    tests); `raises`: an error to raise instead (ConnectionFailure, CommandTimeout, ...)."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    delay: float = 0.0
    raises: BaseException | None = None


# What a command is matched by: a piece of it, a regular expression, or a predicate.
Matcher = str | re.Pattern[str] | Callable[[str], bool]
# The answer: a Reply, or a function of the command (and its stdin) giving one.
Answer = Reply | Callable[[str, bytes | None], Reply]


@dataclass(frozen=True)
class Expectation:
    """One command a fake connection answers, and how."""

    matcher: Matcher
    answer: Answer
    label: str = ""

    def matches(self, command: str) -> bool:
        """Whether `command` is this one (a str matcher: the command contains it)."""
        if isinstance(self.matcher, str):
            return self.matcher in command
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.search(command) is not None
        return bool(self.matcher(command))

    def describe(self) -> str:
        """How the expectation reads in an error message."""
        if self.label:
            return self.label
        if isinstance(self.matcher, str):
            return f"containing {self.matcher!r}"
        if isinstance(self.matcher, re.Pattern):
            return f"matching /{self.matcher.pattern}/"
        return getattr(self.matcher, "__name__", "a predicate")


def expect(matcher: Matcher, answer: Answer | None = None, *, label: str = "") -> Expectation:
    """An expectation: `matcher` answered by `answer` (default: exit 0, no output)."""
    return Expectation(matcher, answer if answer is not None else Reply(), label)


class UnexpectedCommand(MachineroomError):
    """A fake connection was sent a command nobody told it to expect."""

    def __init__(self, host: str, command: str, expected: Iterable[str]) -> None:
        self.host = host
        self.command = command
        shown = command if len(command) <= 400 else command[:400] + " ..."
        wanted = "; ".join(expected) or "nothing"
        super().__init__(f"{host}: unexpected command: {shown!r} (expected: {wanted})")


@dataclass(frozen=True)
class SentCommand:
    """A command the fake ran: what, with which stdin and become."""

    command: str
    stdin: bytes | None
    become: Become | None


class FakeConnection:
    """A Connection that answers only the commands given to it (first match wins)."""

    def __init__(
        self,
        host: Host,
        expected: Iterable[Expectation] | Mapping[str, Answer] = (),
    ) -> None:
        self.host = host
        if isinstance(expected, Mapping):
            expected = [expect(key, value) for key, value in expected.items()]
        self.expected: list[Expectation] = list(expected)
        self.commands: list[SentCommand] = []
        self.unexpected: list[str] = []  # commands it refused: a test asserts none
        self.opened = False
        self.closed = False
        self.stopped = threading.Event()  # set by stop_commands(): a delayed reply ends early
        self._lock = threading.Lock()

    def open(self) -> None:
        """Nothing to open."""
        self.opened = True

    def run(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        become: Become | None = None,
        sinks: Sinks | None = None,
    ) -> CommandResult:
        """The canned result of the first expectation `command` matches; UnexpectedCommand
        when none does. Interrupted when the run stopped while the command was 'running'.
        `sinks` get the canned output, and the result what they make of it."""
        data = stdin if isinstance(stdin, bytes) or stdin is None else _read(stdin)
        with self._lock:
            self.commands.append(SentCommand(command, data, become))
        for expectation in self.expected:
            if expectation.matches(command):
                answer = expectation.answer
                reply = answer if isinstance(answer, Reply) else answer(command, data)
                break
        else:
            with self._lock:
                self.unexpected.append(command)
            raise UnexpectedCommand(self.host.id, command, (e.describe() for e in self.expected))
        started = time.monotonic()
        if reply.delay and self.stopped.wait(reply.delay):
            raise Interrupted(f"{self.host.id}: command killed by the run's stop")
        if reply.raises is not None:
            raise reply.raises
        stdout, stderr = reply.stdout, reply.stderr
        if sinks is not None:
            sinks[0].add(stdout.encode())
            sinks[1].add(stderr.encode())
            stdout, stderr = sinks[0].text(), sinks[1].text()
        return CommandResult(
            command=command,
            exit_code=reply.exit_code,
            stdout=stdout,
            stderr=stderr,
            duration=time.monotonic() - started,
            become_user=become.user if become else None,
        )

    def ran(self, matcher: Matcher) -> list[str]:
        """The commands run so far that `matcher` matches."""
        probe = expect(matcher)
        return [sent.command for sent in self.commands if probe.matches(sent.command)]

    def is_alive(self) -> bool:
        """Alive until closed."""
        return not self.closed

    def stop_commands(self) -> None:
        """The run is stopping: a command 'running' now (a delayed reply) ends Interrupted."""
        self.stopped.set()

    def close(self) -> None:
        """Closed; safe to call twice."""
        self.closed = True


def _read(stdin: object) -> bytes:
    with open(stdin, "rb") as file:  # type: ignore[call-overload]
        data: bytes = file.read()
    return data


@dataclass
class FakePool:
    """Fake connections by host id, for `RunShared.pool`: `get(host)` returns the host's
    connection (UnexpectedCommand-style error when the test gave none), or raises
    Unreachable for a host listed in `unreachable` (id -> reason)."""

    connections: dict[str, FakeConnection] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    stopping: bool = False
    asked: list[str] = field(default_factory=list)  # host ids, in the order get() was called

    def add(self, connection: FakeConnection) -> FakeConnection:
        """Register a host's fake connection; returns it."""
        self.connections[connection.host.id] = connection
        return connection

    def get(self, host: Host) -> FakeConnection:
        """The host's fake connection (Unreachable for an unreachable host, Interrupted once
        the pool is stopping)."""
        self.asked.append(host.id)
        if self.stopping:
            raise Interrupted(f"{host.id}: the run is stopping: nothing more is started")
        if host.id in self.unreachable:
            raise Unreachable(host.id, self.unreachable[host.id])
        connection = self.connections.get(host.id)
        if connection is None:
            raise UnexpectedCommand(host.id, "(a connection)", ["no fake connection for it"])
        connection.open()
        return connection

    def stop_commands(self) -> None:
        """No command starts from now on; delayed replies end Interrupted."""
        self.stopping = True
        for connection in self.connections.values():
            connection.stop_commands()

    def close_all(self) -> None:
        """Close every fake connection."""
        for connection in self.connections.values():
            connection.close()
