"""What the executor keeps per host during a run, and what it shares between hosts."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from machineroom.connection.pool import ConnectionPool
from machineroom.events import EventBus
from machineroom.inventory.model import Host, Inventory
from machineroom.playbook.model import Play
from machineroom.templating import Templar


@dataclass(frozen=True)
class RunOptions:
    """How the user asked the run to go (from the command line)."""

    check: bool = False
    diff: bool = False
    forks: int = 50
    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    extra_var_sources: Mapping[str, str] = field(default_factory=dict)
    stages: frozenset[str] = frozenset()  # --stage: only these (empty: all)
    start_stage: Mapping[str, str] = field(default_factory=dict)  # --resume: host -> stage
    verbosity: int = 0
    force_handlers: bool = False  # --force-handlers: a failed host still runs its handlers


@dataclass
class HostState:
    """One host's progress: its facts, registered results, pending handlers, failure."""

    host: Host
    facts: dict[str, Any] = field(default_factory=dict)  # set_fact and gathered facts
    registered: dict[str, Any] = field(default_factory=dict)
    # include_vars' variables: above task vars, below set_fact; templates in them stay live
    included: dict[str, Any] = field(default_factory=dict)
    notified: list[str] = field(default_factory=list)  # handler names/topics, in order
    failed: bool = False
    unreachable: bool = False
    ended: bool = False  # meta: end_host / end_play
    interrupted: bool = False  # a task of it was cut short by the run's stop
    stage: str | None = None
    failed_task: str | None = None
    failed_result: dict[str, Any] = field(default_factory=dict)  # for ansible_failed_result
    errors_cleared: bool = False  # meta: clear_host_errors ran (in the current always:)
    reason: str = ""
    res: dict[str, Any] = field(default_factory=dict)  # the host's server_room.res, kept current

    @property
    def done(self) -> bool:
        """True when the host will run no more tasks in this play."""
        return self.failed or self.unreachable or self.ended


@dataclass
class RunShared:
    """What every host worker of a run shares: settings, inventory, pool, events, stop flag."""

    options: RunOptions
    inventory: Inventory
    pool: ConnectionPool
    bus: EventBus
    templar: Templar
    decrypt: Any = None  # vault ciphertext -> text, for become passwords
    playbook_dir: str = "."
    stop: threading.Event = field(default_factory=threading.Event)
    server_res: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    vault_in_vars: bool = False  # decrypt vault values found in variables, as they are used
    # hosts running a no_log task right now: their commands' output stays out of the audit log
    quiet_hosts: set[str] = field(default_factory=set)
    error: str | None = None  # why the run stopped on an error of ours (a failed state write)
    added_hosts: set[str] = field(default_factory=set)  # by add_host (inventory_changes.py)

    def stop_run(self, error: str | None = None) -> None:
        """Stop the run: no task starts from now on, and the commands running now are killed
        on their hosts (their tasks end failed, their hosts interrupted). `error`: the run
        stops because of it and ends as 'error'. Safe from any thread, and to call twice."""
        if error is not None and self.error is None:
            self.error = error
        first = not self.stop.is_set()
        self.stop.set()
        if first:
            self.pool.stop_commands()


@dataclass
class PlayShared:
    """What the hosts of one play share: the play, its hosts' states, the lock-step gate."""

    play: Play
    hosts: list[HostState]
    gate: LockStep | None = None  # strategy linear
    abort: threading.Event = field(default_factory=threading.Event)  # any_errors_fatal etc.
    magic: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    _gather: bool | None = None
    batch: list[HostState] = field(default_factory=list)  # this `serial` batch's hosts
    # run_once (executor/once.py): a slot per task and pass, the hosts whose walk ended,
    # each host's passes by task id; `turns` guards them and wakes the hosts that wait
    once: dict[tuple[str, int], Any] = field(default_factory=dict)
    walked: set[str] = field(default_factory=set)
    passes: dict[tuple[str, str], int] = field(default_factory=dict)
    turns: threading.Condition = field(default_factory=threading.Condition)
    throttles: dict[str, threading.Semaphore] = field(default_factory=dict)  # by task id
    # strategy linear: each host's current top-level item, and the gate it waits at
    at: dict[str, tuple[int, int]] = field(default_factory=dict)
    parked: dict[str, tuple[int, int]] = field(default_factory=dict)

    def park(self, host_id: str, position: tuple[int, int] | None) -> None:
        """The host waits at the gate of `position` (None: it passed it); wakes the hosts
        waiting for a run_once runner, which may now be another host."""
        with self.turns:
            if position is None:
                self.parked.pop(host_id, None)
            else:
                self.parked[host_id] = position
            self.turns.notify_all()

    def host_walked(self, host_id: str) -> None:
        """The host's walk of the play ended: hosts waiting on it for a run_once go on."""
        with self.turns:
            self.walked.add(host_id)
            self.turns.notify_all()

    def throttle(self, task_id: str, limit: int) -> threading.Semaphore:
        """The semaphore that lets `limit` hosts at once run the task `task_id`."""
        with self.turns:
            return self.throttles.setdefault(task_id, threading.Semaphore(max(1, limit)))

    def gathers_facts(self, playbook_dir: str) -> bool:
        """`gather_facts` as written, else whether the play could read a fact (decided once)."""
        if self.play.gather_facts is not None:
            return self.play.gather_facts
        if self._gather is None:
            from machineroom.executor.facts_needed import play_needs_facts

            self._gather = play_needs_facts(self.play, [h.host for h in self.hosts], playbook_dir)
        return self._gather


class LockStep:
    """Strategy linear: no host starts item N+1 of a stage before every live host finished N.

    Hosts call `arrive(position)` before each top-level item; `leave()` when they are done
    (failed, unreachable or finished) so that the others do not wait for them.
    """

    def __init__(self, parties: int) -> None:
        self._cond = threading.Condition()
        self._live = parties
        self._arrived: dict[tuple[int, int], int] = {}

    def arrive(self, position: tuple[int, int], stop: threading.Event) -> None:
        """Wait until every live host has arrived at `position` (or the run stops)."""
        with self._cond:
            self._arrived[position] = self._arrived.get(position, 0) + 1
            self._cond.notify_all()
            while self._arrived[position] < self._live and not stop.is_set():
                self._cond.wait(0.5)

    def leave(self) -> None:
        """A host is done: nobody waits for it any more."""
        with self._cond:
            self._live -= 1
            self._cond.notify_all()
