"""`run_once`: a task runs on one host of the batch and every host of it gets the result.

As ansible-core: the first host of the batch (in inventory order) that is still in the play
runs the task; the others wait for it (hosts advance independently here, so they wait at the
task, in a per-play slot, without holding a fork), then take what it produced: the registered
result, the facts it set, the handlers it notified. Only the host that ran it reports the
task, so the recap counts it once. When it failed (not ignored), every host of the batch
fails there, as in Ansible, and goes to its `rescue` if it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from machineroom.events import TaskFinished, TaskStatus
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.playbook.model import Task

WAKE_EVERY = 0.5  # seconds: a waiting host rechecks even if no one woke it (a host failed)


@dataclass
class OnceSlot:
    """One pass of a run_once task: who runs it, and what it left for the others."""

    runner: str | None = None
    done: bool = False
    status: TaskStatus = "ok"
    msg: str = ""
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    notified: list[str] = field(default_factory=list)


def run_once(
    task: Task,
    hs: HostState,
    ps: PlayShared,
    rs: RunShared,
    stage: str,
    run: Callable[[], TaskStatus],
) -> TaskStatus:
    """Run the task through `run` if this host is the batch's runner, else wait for the
    runner and take its result."""
    host = hs.host.id
    count = ps.passes.get((host, task.id), 0) + 1
    ps.passes[(host, task.id)] = count  # a task met again (an include in a loop): a new slot
    key = (task.id, count)
    with ps.turns:
        slot: OnceSlot = ps.once.setdefault(key, OnceSlot())
        while not slot.done and slot.runner is None:
            if _first_in_play(ps, host) == host:
                slot.runner = host
                break
            if rs.stop.is_set() or ps.abort.is_set():
                return "skipped"
            ps.turns.wait(WAKE_EVERY)
        while not slot.done and slot.runner != host:
            if rs.stop.is_set():
                return "skipped"
            ps.turns.wait(WAKE_EVERY)
    if slot.runner == host and not slot.done:
        return _run_as_runner(slot, hs, ps, run)
    return _take(slot, task, hs, rs, stage)


def _first_in_play(ps: PlayShared, me: str) -> str | None:
    """The host that runs the next run_once task: the first of the batch still walking,
    leaving out a host parked at a lock-step gate of another item (it went past this task
    without reaching it: a handler or include only some hosts run)."""
    here = ps.at.get(me)
    for state in ps.batch or ps.hosts:
        host = state.host.id
        if state.done or host in ps.walked:
            continue
        if host in ps.parked and ps.parked[host] != here:
            continue
        return host
    return None


def _run_as_runner(
    slot: OnceSlot, hs: HostState, ps: PlayShared, run: Callable[[], TaskStatus]
) -> TaskStatus:
    before = {name: dict(values) for name, values in _stores(hs).items()}
    notified = list(hs.notified)
    status: TaskStatus = "failed"
    try:
        status = run()
    finally:
        with ps.turns:
            slot.status = status
            slot.msg = hs.reason
            slot.changes = {
                name: {k: v for k, v in values.items() if before[name].get(k) is not v}
                for name, values in _stores(hs).items()
            }
            slot.notified = [n for n in hs.notified if n not in notified]
            slot.done = True
            ps.turns.notify_all()
    return status


def _stores(hs: HostState) -> dict[str, dict[str, Any]]:
    return {"registered": hs.registered, "facts": hs.facts, "included": hs.included}


def _take(slot: OnceSlot, task: Task, hs: HostState, rs: RunShared, stage: str) -> TaskStatus:
    """A waiting host takes the runner's result; fails as it failed."""
    if slot.status in ("failed", "unreachable"):
        msg = f"run_once: the task failed on {slot.runner}" + (f": {slot.msg}" if slot.msg else "")
        hs.reason = msg
        rs.bus.emit(
            TaskFinished(
                host=hs.host.id,
                task_id=task.id,
                task=task.display_name,
                stage=stage,
                status="failed",
                msg=msg,
                location=str(task.location) if task.location else None,
            )
        )
        return "failed"
    for name, values in _stores(hs).items():
        values.update(slot.changes.get(name, {}))
    for name in slot.notified:
        if name not in hs.notified:
            hs.notified.append(name)
    return slot.status
