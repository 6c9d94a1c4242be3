"""Running a playbook: plays in order, hosts in parallel, batches, failure limits, Ctrl-C.

Strategy `free` (the default): each host walks its own stages without waiting for others, at
most `--forks` hosts at once. Strategy `linear`: every host runs top-level item N of a stage
before any starts N+1 (a gate), at most `--forks` tasks at once. `serial` runs the play on
batches of hosts, one batch after the other; `max_fail_percentage` and `any_errors_fatal`
stop the play for every host, counting unreachable hosts as failed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Literal

from machineroom.events import HostFinished, HostStats, PlayStarted, RunFinished, RunStarted
from machineroom.executor.hoststate import HostState, LockStep, PlayShared, RunShared
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
    rs: RunShared,
    run_id: int | None = None,
) -> RunFinished:
    """Run every play on its hosts (`play_hosts[i]` for play i, already limited); return the
    final event (also emitted). Ctrl-C (and SIGTERM, SIGHUP: the CLI turns them into it):
    no task starts any more and the commands running now are killed on their hosts."""
    started = time.monotonic()
    everyone = sorted({h.id for hosts in play_hosts for h in hosts})
    rs.bus.emit(
        RunStarted(run_id, playbook.path, tuple(everyone), rs.options.check, rs.options.diff)
    )
    states: dict[str, HostState] = {}
    stats: dict[str, HostStats] = {h: HostStats() for h in everyone}
    rs.bus.subscribe(lambda e: _count(stats, e))
    interrupted = False
    original = rs.inventory
    chosen = {h.id: h for hosts in play_hosts for h in hosts}
    try:
        for play, hosts in zip(playbook.plays, play_hosts, strict=True):
            if rs.inventory is not original:  # add_host / group_by ran in an earlier play
                hosts = later_hosts(play, hosts, rs, chosen)
                for host in hosts:
                    if host.id not in stats:  # a host add_host made: counted from now on
                        stats[host.id] = HostStats()
                        everyone.append(host.id)
            live = [
                states.setdefault(h.id, HostState(h, res=dict(rs.server_res.get(h.id, {}))))
                for h in hosts
            ]
            live = [hs for hs in live if not (hs.failed or hs.unreachable)]
            for state in live:
                state.ended = False  # end_play / end_host last only for their play
            _run_play(play, live, rs)
            if rs.stop.is_set():
                break
    except KeyboardInterrupt:
        rs.stop_run()
        interrupted = True
    interrupted = interrupted or rs.stop.is_set()
    for host_id in everyone:
        if host_id not in states:
            continue
        hs = states[host_id]
        if hs.unreachable:
            event = HostFinished(host_id, "unreachable", hs.stage, hs.failed_task, hs.reason)
        elif interrupted and hs.interrupted:
            event = HostFinished(host_id, "interrupted", hs.stage, hs.failed_task, "interrupted")
        elif hs.failed:
            event = HostFinished(host_id, "failed", hs.stage, hs.failed_task, hs.reason)
        elif interrupted:
            event = HostFinished(host_id, "interrupted", hs.stage, None, "interrupted")
        else:
            event = HostFinished(host_id, "ok")
        rs.bus.emit(event)
    status = "error" if rs.error is not None else _run_status(states, interrupted)
    finished = RunFinished(run_id, status, stats, time.monotonic() - started, rs.options.check)
    rs.bus.emit(finished)
    return finished


def later_hosts(
    play: Play, hosts: Sequence[Host], rs: RunShared, chosen: Mapping[str, Host]
) -> list[Host]:
    """A play's hosts once add_host / group_by changed the inventory: those chosen before the
    run, plus the hosts its pattern now names among those added and those the run was
    allowed (`--limit`, retired hosts still apply)."""
    from machineroom.errors import InputError
    from machineroom.inventory.patterns import select_hosts

    try:
        selected = select_hosts(rs.inventory, play.hosts)
    except InputError:
        return list(hosts)
    known = {h.id for h in hosts}
    extra = [
        chosen.get(h.id, h)
        for h in selected
        if h.id not in known and (h.id in chosen or h.id in rs.added_hosts)
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
    if interrupted:
        return "interrupted"
    if any(hs.unreachable for hs in states.values()):
        return "unreachable"
    if any(hs.failed for hs in states.values()):
        return "failed"
    return "ok"


def _run_play(play: Play, hosts: list[HostState], rs: RunShared) -> None:
    rs.bus.emit(
        PlayStarted(play.name or play.hosts, tuple(h.host.id for h in hosts), play.strategy)
    )
    for batch in batches([hs.host for hs in hosts], play.serial):
        members = [hs for hs in hosts if hs.host in batch]
        ps = PlayShared(play=play, hosts=hosts, batch=members)
        _run_batch(members, ps, rs)
        failed = sum(1 for hs in members if hs.failed or hs.unreachable)
        limit = play.max_fail_percentage
        if play.serial and limit is None and failed == len(members) and members:
            ps.abort.set()  # Ansible: a whole failed batch stops the play
        if limit is not None and members and failed * 100 / len(members) > limit:
            ps.abort.set()
        if ps.abort.is_set() or rs.stop.is_set():
            for hs in hosts:
                if hs not in members and not hs.done:
                    hs.ended = True  # hosts of later batches never start
            break


def _run_batch(members: list[HostState], ps: PlayShared, rs: RunShared) -> None:
    if not members:
        return
    walkers = [HostWalker(hs, ps, rs) for hs in members]
    limit = ps.play.max_fail_percentage

    def watch() -> None:
        # max_fail_percentage within a batch: stop everyone as soon as it is exceeded
        if limit is None:
            return
        failed = sum(1 for hs in members if hs.failed or hs.unreachable)
        if failed * 100 / len(members) > limit:
            ps.abort.set()

    if ps.play.strategy == "linear":
        ps.gate = LockStep(len(members))
        slots = threading.Semaphore(rs.options.forks)
        for walker in walkers:
            walker.slots = slots
        workers = len(members)
    else:
        workers = min(rs.options.forks, len(members))

    def walk(walker: HostWalker) -> None:
        walker.walk()
        watch()

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="host")
    futures = [pool.submit(walk, w) for w in walkers]
    try:
        for future in futures:
            while True:
                try:
                    future.result(timeout=0.2)
                    break
                except TimeoutError:
                    continue
    except KeyboardInterrupt:
        # first Ctrl-C (or SIGTERM, SIGHUP): no new task starts; running commands are killed
        rs.stop_run()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
