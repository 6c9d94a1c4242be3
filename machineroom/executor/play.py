"""Running a playbook: plays in order, hosts in parallel, batches, failure limits, Ctrl-C.

Strategy `free` (the default): each host walks its own stages without waiting for others, at
most `--forks` hosts at once. Strategy `linear`: every host runs top-level item N of a stage
before any starts N+1 (a gate), at most `--forks` tasks at once. `serial` runs the play on
batches of hosts, one batch after the other; `max_fail_percentage` and `any_errors_fatal`
stop the play for every host, counting unreachable hosts as failed.

Hosts walk through a Runner (executor/runner.py: threads by default) and meet only through
the run's Coordinator (executor/coordinator.py: gate, abort, stop, run_once, throttles).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from machineroom.events import HostFinished, HostStats, PlayStarted, RunFinished, RunStarted
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.runner import Runner, ThreadRunner
from machineroom.executor.walker import HostWalker
from machineroom.inventory.model import Host
from machineroom.playbook.model import Play, Playbook


def batches(hosts: Sequence[Host], serial: Sequence[int | str]) -> list[list[Host]]:
    """Split hosts into `serial` batches (sizes or percentages; the last size repeats)."""
    if not serial:
        return [list(hosts)] if hosts else []
    result: list[list[Host]] = []
    rest = list(hosts)
    step = 0
    while rest:
        spec = serial[min(step, len(serial) - 1)]
        if isinstance(spec, str) and spec.endswith("%"):
            size = max(1, math.floor(len(hosts) * float(spec[:-1]) / 100))
        else:
            size = max(1, int(spec))
        result.append(rest[:size])
        rest = rest[size:]
        step += 1
    return result


def run_playbook(
    playbook: Playbook,
    play_hosts: Sequence[Sequence[Host]],
    run: RunShared,
    run_id: int | None = None,
    runner: Runner | None = None,
) -> RunFinished:
    """Run every play on its hosts (`play_hosts[i]` for play i, already limited); return the
    final event (also emitted). Ctrl-C (and SIGTERM, SIGHUP: the CLI turns them into it):
    no task starts any more and the commands running now are killed on their hosts.
    `runner` walks the hosts of each batch (default: threads of this process); it works with
    `run.coordinator`."""
    runner = runner or ThreadRunner()
    started = time.monotonic()
    everyone = sorted({h.id for hosts in play_hosts for h in hosts})
    run.bus.emit(
        RunStarted(run_id, playbook.path, tuple(everyone), run.options.check, run.options.diff)
    )
    states: dict[str, HostState] = {}
    stats: dict[str, HostStats] = {h: HostStats() for h in everyone}
    run.bus.subscribe(lambda e: _count(stats, e))
    interrupted = False
    original = run.inventory
    chosen = {h.id: h for hosts in play_hosts for h in hosts}
    last_play_ran = False  # the stop (if any) came during the playbook's last play
    try:
        for number, (play, hosts) in enumerate(zip(playbook.plays, play_hosts, strict=True)):
            last_play_ran = number == len(playbook.plays) - 1
            if run.inventory is not original:  # add_host / group_by ran in an earlier play
                hosts = later_hosts(play, hosts, run, chosen)
                for host in hosts:
                    if host.id not in stats:  # a host add_host made: counted from now on
                        stats[host.id] = HostStats()
                        everyone.append(host.id)
            live = [
                states.setdefault(h.id, HostState(h, server_res=dict(run.server_res.get(h.id, {}))))
                for h in hosts
            ]
            live = [s for s in live if not (s.failed or s.unreachable or s.lost)]
            for state in live:
                state.ended = False  # end_play / end_host last only for their play
                state.walked_through = False
            _run_play(play, live, run, runner)
            if run.stop.is_set():
                break
    except KeyboardInterrupt:
        run.stop_run()
        interrupted = True
    interrupted = interrupted or run.stop.is_set()
    for host_id in everyone:
        if host_id in states:
            state = states[host_id]
            # a host that had walked to the end of the last play is done, stop or not
            stopped = interrupted and not (last_play_ran and state.walked_through)
            run.bus.emit(_host_finished(state, stopped))
    status = "error" if run.error is not None else _run_status(states, interrupted)
    finished = RunFinished(run_id, status, stats, time.monotonic() - started, run.options.check)
    run.bus.emit(finished)
    return finished


def _host_finished(state: HostState, interrupted: bool) -> HostFinished:
    """How the host's run ended, for its HostFinished event."""
    host_id = state.host.id
    if state.lost:  # its cluster worker left: resumable from the stage it was in
        return HostFinished(host_id, "interrupted", state.stage, None, state.lost)
    if state.unreachable:
        return HostFinished(host_id, "unreachable", state.stage, state.failed_task, state.reason)
    if interrupted and state.interrupted:
        return HostFinished(host_id, "interrupted", state.stage, state.failed_task, "interrupted")
    if state.failed:
        return HostFinished(host_id, "failed", state.stage, state.failed_task, state.reason)
    if interrupted:
        return HostFinished(host_id, "interrupted", state.stage, None, "interrupted")
    return HostFinished(host_id, "ok")


def later_hosts(
    play: Play, hosts: Sequence[Host], run: RunShared, chosen: Mapping[str, Host]
) -> list[Host]:
    """A play's hosts once add_host / group_by changed the inventory: those chosen before the
    run, plus the hosts its pattern now names among those added and those the run was
    allowed (`--limit`, retired hosts still apply)."""
    from machineroom.errors import InputError
    from machineroom.inventory.patterns import select_hosts

    try:
        selected = select_hosts(run.inventory, play.hosts)
    except InputError:
        return list(hosts)
    known = {h.id for h in hosts}
    extra = [
        chosen.get(h.id, h)
        for h in selected
        if h.id not in known and (h.id in chosen or h.id in run.added_hosts)
    ]
    if play.connection == "local":
        extra = [replace(h, connection="local") for h in extra]
    return [*hosts, *extra]


def _count(stats: dict[str, HostStats], event: object) -> None:
    from machineroom.events import TaskFinished

    if isinstance(event, TaskFinished) and event.host in stats:
        stats[event.host].add(event)


def _run_status(
    states: dict[str, HostState], interrupted: bool
) -> Literal["ok", "failed", "unreachable", "interrupted"]:
    if interrupted or any(hs.lost for hs in states.values()):
        return "interrupted"
    if any(hs.unreachable for hs in states.values()):
        return "unreachable"
    if any(hs.failed for hs in states.values()):
        return "failed"
    return "ok"


def _run_play(play: Play, hosts: list[HostState], run: RunShared, runner: Runner) -> None:
    run.bus.emit(
        PlayStarted(play.name or play.hosts, tuple(h.host.id for h in hosts), play.strategy)
    )
    coordinator = run.coordinator
    for batch in batches([state.host for state in hosts], play.serial):
        in_batch = {host.id for host in batch}  # by id: a list of Hosts made this O(n^2)
        members = [state for state in hosts if state.host.id in in_batch]
        if not members:
            continue
        play_state = PlayShared(play=play, hosts=hosts, batch=members)
        lock_step = play.strategy == "linear"
        coordinator.begin_batch(
            [state.host.id for state in members],
            lock_step=lock_step,
            forks=run.options.forks,
            max_fail_percentage=play.max_fail_percentage,
        )
        walkers = [HostWalker(state, play_state, run) for state in members]
        # linear: every host walks at once (they wait for each other at the gate) and the
        # coordinator lets `forks` tasks run at once; free: `forks` hosts walk at once
        at_once = len(members) if lock_step else min(run.options.forks, len(members))
        runner.run_walks(walkers, at_once=at_once, interrupt=run.stop_run)
        failed = sum(1 for state in members if state.failed or state.unreachable)
        limit = play.max_fail_percentage
        if play.serial and limit is None and failed == len(members):
            coordinator.abort_play()  # Ansible: a whole failed batch stops the play
        if limit is not None and failed * 100 / len(members) > limit:
            coordinator.abort_play()
        if coordinator.play_aborted() or run.stop.is_set():
            for state in hosts:
                if state not in members and not state.done:
                    state.ended = True  # hosts of later batches never start
            break
