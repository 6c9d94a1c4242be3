"""What the hosts of a run share while they walk, behind one interface: the `Coordinator`.

Hosts walk a play independently (executor/walker.py); they meet only here:
- the run's stop flag (Ctrl-C, a failed state write): no task starts once it is set;
- a batch's abort flag (`any_errors_fatal`, `max_fail_percentage`, `end_play`);
- strategy linear's lock-step gate: no host starts top-level item N+1 of a stage before every
  live host finished item N, and at most `forks` tasks run at once;
- `run_once` slots: one host of the batch runs the task, the others wait and take its result;
- `throttle`: at most N hosts run a task at once.

Walkers name hosts by id and hand over plain data (positions, `OnceResult`), never a lock or
an Event, so another implementation can keep the same state elsewhere (e.g. Dask's Event,
Semaphore and Variable for hosts walking on other machines). `LocalCoordinator` keeps it in
this process, for `ThreadRunner` (executor/runner.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from machineroom.events import TaskStatus

# A top-level item of a play: (stage index, item index in the stage).
Position = tuple[int, int]
# A pass of a run_once task: (task id, how many times this host met it in the batch).
OnceKey = tuple[str, int]

WAKE_EVERY = 0.5  # seconds: a waiting host rechecks the stop and abort flags this often


class Flag(Protocol):
    """A flag every host can read (threading.Event and Dask's Event have this shape)."""

    def set(self) -> None:
        """Raise the flag; it stays raised."""

    def is_set(self) -> bool:
        """Whether the flag is raised."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is raised or `timeout` passed; whether it is raised."""
        ...


@dataclass(frozen=True)
class OnceResult:
    """What the host that ran a run_once task leaves for the others of its batch: plain data."""

    runner: str
    status: TaskStatus
    msg: str = ""
    # new or changed values by store ("registered", "facts", "included")
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    notified: tuple[str, ...] = ()


@dataclass(frozen=True)
class OnceClaim:
    """The answer to a host meeting a run_once task: `run` it (it is the batch's runner),
    `take` the runner's `result`, or `skip` it (the run or play stopped meanwhile)."""

    action: Literal["run", "take", "skip"]
    result: OnceResult | None = None


class Coordinator(Protocol):
    """The state hosts share during a run; hosts are named by id.

    One batch of one play runs at a time: `begin_batch` starts a fresh gate, abort flag,
    run_once slots and throttles; the stop flag lasts the whole run.
    """

    stop: Flag

    def begin_batch(
        self,
        hosts: Sequence[str],
        *,
        lock_step: bool,
        forks: int,
        max_fail_percentage: float | None = None,
    ) -> None:
        """A `serial` batch of a play starts with `hosts` (in inventory order). `lock_step`:
        strategy linear's gate, and at most `forks` tasks at once. `max_fail_percentage`: the
        play aborts as soon as more than that share of the batch failed."""

    def abort_play(self) -> None:
        """Stop the current play for every host of the batch."""

    def play_aborted(self) -> bool:
        """Whether the current play was aborted."""
        ...

    def arrive(self, host: str, position: Position) -> None:
        """`host` is about to run top-level item `position`; strategy linear waits here until
        every live host of the batch arrived (or the run stops)."""

    def host_done(self, host: str, *, failed: bool) -> None:
        """`host` runs no more tasks in this play (failed, unreachable or ended)."""

    def walk_ended(self, host: str, *, failed: bool) -> None:
        """`host` finished its walk: nobody waits for it at a gate or a run_once any more."""

    def task_slot(self) -> AbstractContextManager[None]:
        """Held while a task runs: strategy linear lets `forks` tasks run at once."""
        ...

    def throttle(self, task_id: str, limit: int) -> AbstractContextManager[None]:
        """Held while a task with `throttle: limit` runs: at most `limit` hosts at once."""
        ...

    def claim_once(self, host: str, key: OnceKey) -> OnceClaim:
        """`host` met pass `key` of a run_once task: wait until it is the batch's runner
        (the first host still walking) or the runner left a result."""
        ...

    def finish_once(self, key: OnceKey, result: OnceResult) -> None:
        """The runner of pass `key` is done: the hosts waiting for it take `result`."""


@dataclass
class _OnceSlot:
    runner: str | None = None
    result: OnceResult | None = None


class _Gate:
    """Strategy linear's lock-step: every live host arrives at a position before any passes."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.live = set(hosts)  # the batch's hosts still walking
        self.arrived: dict[Position, set[str]] = {}

    def open_at(self, position: Position) -> bool:
        """Whether every live host has arrived at `position`."""
        return self.live <= self.arrived.get(position, set())


class LocalCoordinator:
    """The Coordinator of hosts walking in threads of this process."""

    def __init__(self) -> None:
        self.stop: Flag = threading.Event()
        self._abort = threading.Event()
        # one condition guards the batch's state and wakes every host waiting on it
        self._turns = threading.Condition()
        self._hosts: tuple[str, ...] = ()
        self._gate: _Gate | None = None
        self._slots: threading.Semaphore | None = None
        self._max_fail: float | None = None
        self._failed: set[str] = set()
        self._done: set[str] = set()
        self._walked: set[str] = set()
        self._at: dict[str, Position] = {}  # each host's current top-level item
        self._parked: dict[str, Position] = {}  # hosts waiting at a gate, and which
        self._once: dict[OnceKey, _OnceSlot] = {}
        self._throttles: dict[str, threading.Semaphore] = {}

    def begin_batch(
        self,
        hosts: Sequence[str],
        *,
        lock_step: bool,
        forks: int,
        max_fail_percentage: float | None = None,
    ) -> None:
        """See Coordinator.begin_batch."""
        with self._turns:
            self._abort = threading.Event()
            self._hosts = tuple(hosts)
            self._gate = _Gate(hosts) if lock_step else None
            self._slots = threading.Semaphore(max(1, forks)) if lock_step else None
            self._max_fail = max_fail_percentage
            self._failed = set()
            self._done = set()
            self._walked = set()
            self._at = {}
            self._parked = {}
            self._once = {}
            self._throttles = {}

    def abort_play(self) -> None:
        """See Coordinator.abort_play."""
        self._abort.set()
        with self._turns:
            self._turns.notify_all()

    def play_aborted(self) -> bool:
        """See Coordinator.play_aborted."""
        return self._abort.is_set()

    def arrive(self, host: str, position: Position) -> None:
        """See Coordinator.arrive. A host waiting at a gate is marked parked there, so that a
        run_once of an item before it does not wait for this host."""
        with self._turns:
            self._at[host] = position
            gate = self._gate
            if gate is None:
                return
            self._parked[host] = position
            gate.arrived.setdefault(position, set()).add(host)
            self._turns.notify_all()
            try:
                while not gate.open_at(position) and not self.stop.is_set():
                    self._turns.wait(WAKE_EVERY)
            finally:
                self._parked.pop(host, None)
                self._turns.notify_all()

    def host_done(self, host: str, *, failed: bool) -> None:
        """See Coordinator.host_done."""
        with self._turns:
            self._done.add(host)
            if failed:
                self._failed.add(host)
            self._check_fail_limit()
            self._turns.notify_all()

    def walk_ended(self, host: str, *, failed: bool) -> None:
        """See Coordinator.walk_ended."""
        with self._turns:
            if failed:
                self._failed.add(host)
            self._check_fail_limit()
            self._walked.add(host)
            if self._gate is not None:
                self._gate.live.discard(host)
            self._turns.notify_all()

    def forget(self, host: str) -> None:
        """`host` vanished mid-walk (its cluster worker was lost): it counts at no gate, and a
        run_once pass it was running goes to the next host that meets it."""
        with self._turns:
            self._walked.add(host)
            self._parked.pop(host, None)
            if self._gate is not None:
                self._gate.live.discard(host)
                for arrived in self._gate.arrived.values():
                    arrived.discard(host)
            for slot in self._once.values():
                if slot.runner == host and slot.result is None:
                    slot.runner = None
            self._turns.notify_all()

    def _check_fail_limit(self) -> None:
        if self._max_fail is None or not self._hosts:
            return
        if len(self._failed) * 100 / len(self._hosts) > self._max_fail:
            self._abort.set()

    @contextmanager
    def task_slot(self) -> Iterator[None]:
        """See Coordinator.task_slot."""
        slots = self._slots
        if slots is None:
            yield
            return
        with slots:
            yield

    @contextmanager
    def throttle(self, task_id: str, limit: int) -> Iterator[None]:
        """See Coordinator.throttle."""
        with self._turns:
            semaphore = self._throttles.setdefault(task_id, threading.Semaphore(max(1, limit)))
        with semaphore:
            yield

    def claim_once(self, host: str, key: OnceKey) -> OnceClaim:
        """See Coordinator.claim_once."""
        with self._turns:
            slot = self._once.setdefault(key, _OnceSlot())
            while slot.result is None:
                if slot.runner is None:  # nobody runs it (yet, or its runner vanished)
                    if self._first_walking(host) == host:
                        slot.runner = host
                        return OnceClaim("run")
                    if self._abort.is_set():
                        return OnceClaim("skip")
                if self.stop.is_set():
                    return OnceClaim("skip")
                self._turns.wait(WAKE_EVERY)
            return OnceClaim("take", slot.result)

    def finish_once(self, key: OnceKey, result: OnceResult) -> None:
        """See Coordinator.finish_once."""
        with self._turns:
            self._once.setdefault(key, _OnceSlot(runner=result.runner)).result = result
            self._turns.notify_all()

    def _first_walking(self, me: str) -> str | None:
        """The host that runs the next run_once task: the first of the batch still walking,
        leaving out a host parked at a lock-step gate of another item (it went past this task
        without reaching it: a handler or include only some hosts run)."""
        here = self._at.get(me)
        for host in self._hosts:
            if host in self._done or host in self._walked:
                continue
            if host in self._parked and self._parked[host] != here:
                continue
            return host
        return None
