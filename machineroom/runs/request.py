"""What to run and what came of it, as plain data: a `RunRequest` goes in, a `RunResult` comes
out. Both cross a process boundary as JSON (the scheduler and the dashboard hand a request to
a child process; a cluster runner will hand it further)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from machineroom.errors import ExitCode, UsageError
from machineroom.events import HostStats
from machineroom.runs.connect import ConnectSettings

# every kind of run a command records, and what its `target` is
KINDS = {
    "apply": "playbook",
    "run": "pattern",
    "facts": "pattern",
    "scan-docker": "pattern",
    "collect": "pattern",
    "collector-install": "pattern",
    "add-cert": "pattern",
}


@dataclass(frozen=True)
class RunRequest:
    """One run, as asked: which kind, on what, with which options and connection settings."""

    kind: str
    target: str  # the playbook (apply) or the host pattern (every other kind)
    inventory_paths: tuple[str, ...] = ()
    state_path: str | None = None
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    extra_vars: tuple[str, ...] = ()  # as given to -e: key=value, JSON or @file
    check: bool = False
    diff: bool = False
    resume: bool = False
    verbosity: int = 0
    command: str | None = None  # run: the shell command
    module: str | None = None  # run -m: the module, and its -a arguments
    module_args: str | None = None
    become: bool = False
    become_user: str | None = None
    habits: Mapping[str, Any] = field(default_factory=dict)  # ansible-playbook's flags
    options: Mapping[str, Any] = field(default_factory=dict)  # the kind's own (collect: ...)
    connect: ConnectSettings = field(default_factory=ConnectSettings)
    # True: where the run happens, it takes the project's settings (forks, timeouts, the
    # vault password's source), as a command typed there would; `connect` then holds only
    # what the requester names beside them (extra known_hosts files, a vault password
    # file, the unknown-key advice: runs/execute.py's `settled`)
    connect_from_settings: bool = False
    trigger: str | None = None  # what started it: `schedule:NAME`, `web:TOKEN:NONCE`
    command_line: str = ""  # as a person would type it; recorded as the run's command

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown kind of run '{self.kind}' (known: {', '.join(KINDS)})")

    def to_json(self) -> str:
        """The request as one JSON document."""
        data = asdict(self)
        data["connect"] = self.connect.to_dict()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        """The request `to_json` wrote; a malformed one is a UsageError naming the field."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"run request: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError("run request: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"run request: unknown field(s): {', '.join(unknown)}")
        for name in ("inventory_paths", "tags", "skip_tags", "stages", "extra_vars"):
            if name in data:
                data[name] = tuple(data[name])
        data["connect"] = ConnectSettings.from_dict(data.get("connect") or {})
        _check_habits(data.get("habits") or {})
        try:
            return cls(**data)
        except TypeError as exc:
            raise UsageError(f"run request: {exc}") from None


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its status word, each host's, the recap counts, and notes for the
    person who started it (why it stopped, what is left to do)."""

    run_id: int | None
    status: str  # ok, failed, unreachable, interrupted, error
    hosts: Mapping[str, str] = field(default_factory=dict)  # host -> its final status
    stats: Mapping[str, HostStats] = field(default_factory=dict)
    duration: float = 0.0
    notes: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)  # the kind's own (facts, containers)

    @property
    def exit_code(self) -> int:
        """The process exit status of a command that made this run (STYLE.md's codes)."""
        return int(EXIT_CODES.get(self.status, ExitCode.ERROR))


EXIT_CODES = {
    "ok": ExitCode.OK,
    "failed": ExitCode.HOSTS_FAILED,
    "unreachable": ExitCode.UNREACHABLE,
    "interrupted": ExitCode.INTERRUPTED,
    "error": ExitCode.ERROR,
}


def _check_habits(habits: object) -> None:
    """A request's ansible-playbook flags must be ones machineroom knows."""
    from machineroom.runs.habits import AnsibleHabits

    if not isinstance(habits, dict):
        raise UsageError("run request: habits: expected an object")
    known = {f.name for f in fields(AnsibleHabits)}
    unknown = sorted(set(habits) - known)
    if unknown:
        raise UsageError(
            f"run request: habits: unknown flag(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
