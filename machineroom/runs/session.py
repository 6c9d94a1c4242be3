"""A recorded run: the one way every command reaches hosts.

`run_prepared` takes a validated playbook (a real one, or the one-task play of `run`,
`facts`, `scan-docker`, `collect`), opens the run's row in the state database, builds the
connection pool and the event bus (state recorder first, then the caller's reporters), runs
the executor, and closes everything in an order that survives signals: Ctrl-C, SIGTERM or
SIGHUP stop the run (commands on hosts killed, run recorded `interrupted`); a second one
ends it at once, after marking the run interrupted (`RunAborted`). A state write that fails
stops the run too. What happened comes back as a plain `RunResult`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from machineroom.runs.request import RunResult
from machineroom.runs.stops import RunAborted

if TYPE_CHECKING:
    from machineroom.connection.base import CommandResult
    from machineroom.events import Event, RunFinished
    from machineroom.executor.hoststate import RunOptions, RunShared
    from machineroom.inventory.model import Host
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.prepare import Prepared
    from machineroom.runs.workspace import Workspace
    from machineroom.state import StateStore


Subscriber = Callable[["Event"], None]


@dataclass(frozen=True)
class RunRecord:
    """What the run's row in the database says about how it was started."""

    kind: str
    label: str  # the playbook, or what stands in for it (`-m ping`, `(gather facts)`)
    args: Mapping[str, Any] = field(default_factory=dict)
    trigger: str | None = None  # schedule:NAME, web:TOKEN:NONCE; None: a person
    command_line: str = ""


def command_line() -> str:
    """This process's command line, as a person would type it."""
    return " ".join(["machineroom", *(shlex.quote(a) for a in sys.argv[1:])])


def start_run_row(
    workspace: Workspace, store: StateStore, record: RunRecord, playbook: str | None = None
) -> int:
    """Open the run's row ('running'), the inventory's hosts written first; `playbook` gives
    its commit. `run_prepared` does it; a command opens it earlier when it must show as
    running at once (a collection the dashboard may cut short within a second)."""
    from machineroom.runs.prepare import git_commit
    from machineroom.runs.workspace import sync_servers

    sync_servers(store, list(workspace.inventory.hosts.values()))
    return store.start_run(
        record.kind,
        record.command_line or command_line(),
        args=dict(record.args),
        playbook=record.label,
        inventory=",".join(workspace.inventory_paths),
        git_commit=None if playbook is None else git_commit(playbook),
        trigger=record.trigger,
    )


def run_prepared(
    workspace: Workspace,
    store: StateStore,
    prepared: Prepared,
    record: RunRecord,
    run_options: RunOptions,
    connect: ConnectSettings,
    subscribers: Sequence[Subscriber] = (),
    *,
    audit_label: str | None = None,
    resumable: bool = True,
    run_id: int | None = None,
) -> RunResult:
    """Run a prepared playbook, recorded and reported; every command lands in the audit log
    (`audit_label` stands in for a long built-in script and its output). `resumable`: False
    for a run `apply --resume` cannot continue (hosts' `next_action` is left alone).
    `run_id`: the row `start_run_row` already opened (else one is opened here). The store
    stays open (the caller closes it)."""
    from machineroom.executor.play import run_playbook
    from machineroom.runs.stops import held, ignore_stops

    _raise_open_file_limit(len(workspace.inventory.hosts))
    runner = None
    if connect.cluster:  # hosts walk on a cluster's workers: checked before the run exists
        from machineroom.runs.cluster_run import open_cluster_runner

        try:
            runner = open_cluster_runner(workspace, connect, prepared)
        except Exception as exc:
            if run_id is not None:  # a row opened early (collect): it ends, saying why
                store.finish_run(run_id, "error", {"reason": str(exc).splitlines()[0]})
            raise
    try:
        if run_id is None:
            run_id = start_run_row(workspace, store, record, prepared.playbook.path)
        parts = _RunParts(workspace, store, prepared, run_id, run_options, connect, resumable)
        shared = parts.open(subscribers, audit_label)
        if runner is not None:
            runner.on_command = parts.pool.options.on_command
            parts.lost = runner.lost
    except BaseException:
        if runner is not None:
            runner.close()
        raise
    finished = None
    try:
        finished = run_playbook(prepared.playbook, prepared.play_hosts, shared, run_id, runner)
    except KeyboardInterrupt:
        # a second stop signal: stop at once, but leave the database consistent; no
        # connection is closed (a worker reconnecting holds it for its whole timeout)
        ignore_stops()
        if runner is not None:
            runner.abandon()  # the workers kill their commands and drop their shards
        _close_subscribers(subscribers)
        parts.recorder.abort()
        store.close()
        raise RunAborted() from None
    finally:
        if not isinstance(sys.exc_info()[1], KeyboardInterrupt | RunAborted):
            with held():  # let the last writes land
                if runner is not None:
                    runner.close()
                _close_subscribers(subscribers)
                parts.pool.close_all()
                parts.recorder.close(unfinished_status="error")
    assert finished is not None
    return parts.result(finished)


class _RunParts:
    """What one recorded run is made of: the state recorder, the connection pool (its
    commands audited), the event bus and what the executor's hosts share."""

    def __init__(
        self,
        workspace: Workspace,
        store: StateStore,
        prepared: Prepared,
        run_id: int,
        run_options: RunOptions,
        connect: ConnectSettings,
        resumable: bool,
    ) -> None:
        from machineroom.state.recorder import StateRecorder

        self.workspace = workspace
        self.store = store
        self.prepared = prepared
        self.run_id = run_id
        self.run_options = run_options
        self.connect = connect
        self.finals: dict[str, str] = {}  # each host's final status word
        self.recorder = StateRecorder(
            store,
            run_id,
            check=run_options.check,
            playbook=os.path.realpath(prepared.playbook.path),
            on_error=self.stop_on_write_error,
            resumable=resumable,
        )
        self.recorder.stop_reason = self.stop_reason
        self.shared: RunShared | None = None
        self.lost: Mapping[str, str] = {}  # host -> why its cluster worker lost it

    def stop_reason(self) -> str:
        """Why the run ended interrupted: a signal, or workers of its cluster lost."""
        from machineroom.runs.stops import received_stop, stop_reason

        if self.lost and not received_stop():
            by_reason: dict[str, list[str]] = {}
            for host, why in self.lost.items():
                by_reason.setdefault(why, []).append(host)
            return "; ".join(
                f"interrupted: {why} ({_some(sorted(hosts))}; "
                "`machineroom apply --resume` continues them)"
                for why, hosts in by_reason.items()
            )
        return stop_reason()

    def stop_on_write_error(self, message: str) -> None:
        """Results would go unrecorded from now on: stop rather than carry on blind."""
        if self.shared is not None:
            self.shared.stop_run(error=message)

    def open(self, subscribers: Sequence[Subscriber], audit_label: str | None) -> RunShared:
        """The pool, the bus (recorder first), and the hosts' shared state it returns."""
        from machineroom.connection.command import HIDDEN
        from machineroom.connection.pool import ConnectionPool
        from machineroom.events import EventBus, HostFinished
        from machineroom.executor.hoststate import RunShared
        from machineroom.runs.connect import connect_options
        from machineroom.templating import Templar

        def audit(host: Host, result: CommandResult) -> None:
            # a no_log task's commands arrive hidden already ("(hidden: no_log)", command.py);
            # a built-in script is audited as its name, exit code and stderr
            if audit_label is not None and result.command != HIDDEN:
                result = dataclasses.replace(result, command=audit_label, stdout="")
            self.recorder.record_command(host.id, result)

        def note_host(event: Event) -> None:
            if isinstance(event, HostFinished):
                self.finals[event.host] = event.status

        options = connect_options(self.workspace, self.connect, on_command=audit)
        self.pool = ConnectionPool(options, self.workspace.inventory.tunnels)
        shared = self.shared = RunShared(
            options=self.run_options,
            inventory=self.workspace.inventory,
            pool=self.pool,
            bus=EventBus([self.recorder, note_host, *subscribers]),
            templar=Templar(),
            decrypt=options.decrypt,  # every value it decrypts is masked from then on
            playbook_dir=self.prepared.playbook_dir,
            server_res=self.prepared.server_res,
            vault_in_vars=self.prepared.vault_in_vars,
        )
        if self.recorder.failure is not None:
            shared.stop_run(error=self.recorder.failure)  # failed before the run existed
        return shared

    def result(self, finished: RunFinished) -> RunResult:
        """The RunResult of the finished run, with notes for the person who started it."""

        notes: list[str] = []
        status: str = finished.status
        if self.recorder.failure is not None:
            notes.append(f"error: {self.recorder.failure}")
            if not self.recorder.end_recorded:
                notes.append(
                    f"error: run {self.run_id} is still marked 'running' in {self.store.path}: "
                    f"the next machineroom command that can write there marks it interrupted"
                )
            status = "error"
        elif finished.status == "interrupted":
            notes.append(self.stop_reason())
        return RunResult(
            run_id=self.run_id,
            status=status,
            hosts=self.finals,
            stats=dict(finished.stats),
            duration=finished.duration,
            notes=tuple(notes),
        )


def _some(hosts: Sequence[str], shown: int = 5) -> str:
    """`hosts a, b` or `hosts a, b, c, d, e and 95 more`."""
    more = f" and {len(hosts) - shown} more" if len(hosts) > shown else ""
    return f"hosts {', '.join(hosts[:shown])}{more}"


def _raise_open_file_limit(hosts: int) -> None:
    """Lift the soft limit on open files towards the hard one when the run needs it: each
    host holds a socket and its channels' pipes, and a desktop's default soft limit of 1024
    runs out at a few hundred hosts ("Too many open files" in the middle of a run)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 256 + 8 * hosts
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _close_subscribers(subscribers: Sequence[Subscriber]) -> None:
    for subscriber in subscribers:
        close = getattr(subscriber, "close", None)
        if callable(close):
            close()
