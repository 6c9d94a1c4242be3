"""What happens during a run, as plain events; reporters and the state recorder subscribe.

The executor emits events from its worker threads; `EventBus.emit` hands each to every
subscriber in order, one event at a time (a lock), so subscribers need no locking of their
own. Subscribers must be quick: the state recorder queues its writes to a thread of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from machineroom.masking import SECRETS, SecretRegistry

TaskStatus = Literal["ok", "changed", "skipped", "failed", "unreachable"]
STATUSES: tuple[TaskStatus, ...] = ("ok", "changed", "skipped", "failed", "unreachable")


@dataclass(frozen=True)
class RunStarted:
    """A run began: which playbook, on which hosts, in which mode."""

    run_id: int | None
    playbook: str
    hosts: tuple[str, ...]
    check: bool = False
    diff: bool = False


@dataclass(frozen=True)
class PlayStarted:
    """A play began on its hosts (after --limit and retired hosts were removed)."""

    name: str
    hosts: tuple[str, ...]
    strategy: str = "free"


@dataclass(frozen=True)
class StageStarted:
    """A host entered a stage."""

    host: str
    stage: str


@dataclass(frozen=True)
class TaskStarted:
    """A task began on a host."""

    host: str
    task_id: str
    task: str
    stage: str
    handler: bool = False  # a handler run by a notification, not a task of the play


@dataclass(frozen=True)
class TaskFinished:
    """A task ended on a host (one event per loop item too, with `item` set, and one for the
    whole loop without it)."""

    host: str
    task_id: str
    task: str
    stage: str
    status: TaskStatus
    duration: float = 0.0
    msg: str = ""
    diff: str = ""
    stdout: str = ""
    stderr: str = ""
    item: str | None = None  # the loop item's label
    ignored: bool = False  # failed but ignore_errors
    location: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] = field(default_factory=dict)  # keys for server_room.res
    handler: bool = False  # a handler run by a notification, not a task of the play


@dataclass(frozen=True)
class HostFinished:
    """A host is done with the play: ok (maybe with changes), failed or unreachable; when it
    failed, `stage` and `task_id` say where (for `next_action` and `--resume`)."""

    host: str
    status: Literal["ok", "failed", "unreachable", "interrupted"]
    stage: str | None = None
    task_id: str | None = None
    reason: str = ""


@dataclass
class HostStats:
    """Per-host counts for the recap."""

    ok: int = 0
    changed: int = 0
    skipped: int = 0
    failed: int = 0
    unreachable: int = 0
    rescued: int = 0
    ignored: int = 0

    def add(self, event: TaskFinished) -> None:
        """Count one task result (loop items are counted by their summary event only)."""
        if event.item is not None:
            return
        if event.ignored:
            self.ignored += 1
            self.ok += 1
            return
        setattr(self, event.status, getattr(self, event.status) + 1)
        if event.status == "changed":
            self.ok += 1  # Ansible counts changed tasks in ok too


@dataclass(frozen=True)
class RunFinished:
    """The run ended: its status and per-host stats."""

    run_id: int | None
    status: Literal["ok", "failed", "unreachable", "interrupted", "error"]
    stats: Mapping[str, HostStats]
    duration: float
    check: bool = False


Event = (
    RunStarted
    | PlayStarted
    | StageStarted
    | TaskStarted
    | TaskFinished
    | HostFinished
    | RunFinished
)
Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers, one at a time, in subscription order.

    Every event is masked first (each secret the process knows becomes `***`), so no
    subscriber, the console, `--json` or the database, ever sees a secret's value.
    """

    def __init__(
        self, subscribers: list[Subscriber] | None = None, secrets: SecretRegistry = SECRETS
    ) -> None:
        self._subscribers = list(subscribers or [])
        self._secrets = secrets
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber; it receives every event emitted from now on."""
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        """Hand `event`, masked, to every subscriber."""
        event = self._secrets.event(event)
        with self._lock:
            for subscriber in self._subscribers:
                subscriber(event)
