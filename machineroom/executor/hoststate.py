"""What the executor keeps per host during a run, and what it shares between hosts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from machineroom.connection.base import Connection
from machineroom.events import EventBus
from machineroom.executor.coordinator import Coordinator, Flag, LocalCoordinator
from machineroom.executor.program import Program
from machineroom.inventory.model import Host, Inventory
from machineroom.playbook.model import Play
from machineroom.templating import Templar


class Connections(Protocol):
    """Where the executor gets hosts' connections: connection/pool.py's ConnectionPool (or
    connection/fake.py's FakePool in tests)."""

    def get(self, host: Host) -> Connection:
        """The host's open connection; raises ConnectionFailure when it cannot be had."""
        ...

    def stop_commands(self) -> None:
        """No command starts from now on; the running ones are killed on their hosts."""


@dataclass(frozen=True)
class RunOptions:
    """How the user asked the run to go (from the command line)."""

    check: bool = False
    diff: bool = False
    forks: int = 50
    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    # where each -e value came from ("-e argument 1 (key=...)", "vars.yml:3"): provenance
    extra_var_sources: Mapping[str, str] = field(default_factory=dict)
    stages: frozenset[str] = frozenset()  # --stage: only these (empty: all)
    start_stage: Mapping[str, str] = field(default_factory=dict)  # --resume: host -> stage
    verbosity: int = 0
    force_handlers: bool = False  # --force-handlers: a failed host still runs its handlers
    # per-host programs: runs of independent tasks go to a host as one command (program.py)
    programs: bool = True


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
    walked_through: bool = False  # it reached the end of its latest play before any stop
    lost: str = ""  # why it stopped walking: its cluster worker was lost (cluster/runner.py)
    stage: str | None = None
    failed_task: str | None = None
    failed_result: dict[str, Any] = field(default_factory=dict)  # for ansible_failed_result
    errors_cleared: bool = False  # meta: clear_host_errors ran (in the current always:)
    reason: str = ""
    # The host's `server_room.res` (what `record` tasks and stages keep for it across runs):
    # the database's at the start, updated by each task's `record`, passed to `record`.
    server_res: dict[str, Any] = field(default_factory=dict)
    # the tasks sent ahead to the host as one program, taken as the walker reaches them
    program: Program | None = None

    @property
    def done(self) -> bool:
        """True when the host will run no more tasks in this play."""
        return self.failed or self.unreachable or self.ended or bool(self.lost)


@dataclass
class RunShared:
    """What every host of a run shares: settings, inventory, pool, events, coordination.

    `coordinator` holds what hosts share while they walk (stop and abort flags, lock-step
    gate, run_once, throttles: executor/coordinator.py); the default keeps it in this process.
    """

    options: RunOptions
    inventory: Inventory
    pool: Connections
    bus: EventBus
    templar: Templar
    decrypt: Any = None  # vault ciphertext -> text, for become passwords
    playbook_dir: str = "."
    server_res: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    vault_in_vars: bool = False  # decrypt vault values found in variables, as they are used
    error: str | None = None  # why the run stopped on an error of ours (a failed state write)
    added_hosts: set[str] = field(default_factory=set)  # by add_host (inventory_changes.py)
    coordinator: Coordinator = field(default_factory=LocalCoordinator)

    @property
    def stop(self) -> Flag:
        """The run's stop flag (`stop.is_set()`): set once the run stops."""
        return self.coordinator.stop

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
    """What the walkers of one `serial` batch of a play keep in common in this process: the
    play, its hosts' states (for `hostvars`, `delegate_facts`, add_host), cached magic
    variables. What they coordinate on is the run's Coordinator."""

    play: Play
    hosts: list[HostState]
    batch: list[HostState] = field(default_factory=list)  # this `serial` batch's hosts
    magic: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    # run_once: how many times each host met each task in this batch, by (host, task id)
    once_passes: dict[tuple[str, str], int] = field(default_factory=dict)
    _gather: bool | None = None
    _ids: list[str] | None = None

    def host_ids(self) -> list[str]:
        """The play's host ids, one list every host's magic variables share (read-only)."""
        if self._ids is None or len(self._ids) != len(self.hosts):  # add_host adds hosts
            self._ids = [h.host.id for h in self.hosts]
        return self._ids

    def gathers_facts(self, playbook_dir: str) -> bool:
        """`gather_facts` as written, else whether the play could read a fact (decided once)."""
        if self.play.gather_facts is not None:
            return self.play.gather_facts
        if self._gather is None:
            from machineroom.executor.facts_needed import play_needs_facts

            self._gather = play_needs_facts(self.play, [h.host for h in self.hosts], playbook_dir)
        return self._gather
