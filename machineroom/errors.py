"""The error tree, source locations and exit codes.

Library code raises these; only `machineroom.cli` prints them and picks the exit code.
Each error builds its message from the data it carries, so callers never format text twice.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """One meaning per code, as ansible-playbook documents them (minus its double 4)."""

    OK = 0
    ERROR = 1
    HOSTS_FAILED = 2
    UNREACHABLE = 3
    INVALID_INPUT = 4
    USAGE = 5
    INTERRUPTED = 99
    BUG = 250


@dataclass(frozen=True)
class Location:
    """A place in a user's file: `file:line:col` (line and col are 1-based, optional)."""

    file: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
            if self.col is not None:
                text += f":{self.col}"
        return text


class MachineroomError(Exception):
    """Base of every error machineroom raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(MachineroomError):
    """Something a user wrote is wrong: names where, what is wrong and what was expected."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(
        self,
        problem: str,
        location: Location | None = None,
        expected: str | None = None,
    ) -> None:
        self.problem = problem
        self.location = location
        self.expected = expected
        text = f"{location}: {problem}" if location else problem
        if expected:
            text += f"; expected {expected}"
        super().__init__(text)


class InputErrors(InputError):
    """Several input errors found in one pass, reported together."""

    def __init__(self, errors: Iterable[InputError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(e.message for e in self.errors))
        self.message = "\n".join(e.message for e in self.errors)


class UsageError(MachineroomError):
    """Bad command-line options or arguments."""

    exit_code = ExitCode.USAGE


class VaultError(MachineroomError):
    """A vault value cannot be decrypted or encrypted (wrong password, damaged data)."""

    exit_code = ExitCode.ERROR


class StateError(MachineroomError):
    """The state database cannot be opened, migrated or written."""

    exit_code = ExitCode.ERROR


class ConnectionFailure(MachineroomError):
    """A host could not be reached or logged into; the host is then 'unreachable'."""

    exit_code = ExitCode.UNREACHABLE

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class Unreachable(ConnectionFailure):
    """No SSH session: refused, timed out, name not resolved, dropped."""


class AuthFailed(ConnectionFailure):
    """The server answered but refused every credential we had."""


class HostKeyError(ConnectionFailure):
    """The host's key is unknown (and not to be accepted) or has changed. `offered` says what
    the server presented, as plain data a run records (connection/hostkeys.py: `name`,
    `key_type`, `key` in base64, `fingerprint`, `state`: unknown, changed or revoked)."""

    def __init__(self, host: str, reason: str, offered: dict[str, str] | None = None) -> None:
        super().__init__(host, reason)
        self.offered = offered or {}


class CommandTimeout(MachineroomError):
    """A remote command ran past its timeout."""

    def __init__(self, host: str, command: str, timeout: float) -> None:
        self.host = host
        self.command = command
        self.timeout = timeout
        super().__init__(f"{host}: command timed out after {timeout:g}s: {command}")


class Interrupted(MachineroomError):
    """The user pressed Ctrl-C."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
