"""`run_once`: a task runs on one host of the batch and every host of it gets the result.

As ansible-core: the first host of the batch (in inventory order) that is still in the play
runs the task; the others wait for it (hosts advance independently here, so they wait at the
task, in a slot of the run's Coordinator, without holding a fork), then take what it produced:
the registered result, the facts it set, the handlers it notified. Only the host that ran it
reports the task, so the recap counts it once. When it failed (not ignored), every host of the
batch fails there, as in Ansible, and goes to its `rescue` if it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from machineroom.events import TaskFinished, TaskStatus
from machineroom.executor.coordinator import OnceResult
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.variables import Scope
from machineroom.playbook.model import Task


def run_once(
    task: Task,
    state: HostState,
    play_state: PlayShared,
    run: RunShared,
    scope: Scope,
    execute: Callable[[], TaskStatus],
) -> TaskStatus:
    """Run the task through `execute` if this host is the batch's runner, else wait for the
    runner and take its result."""
    host = state.host.id
    count = play_state.once_passes.get((host, task.id), 0) + 1
    # a task met again (an include in a loop): a new slot
    play_state.once_passes[(host, task.id)] = count
    key = (task.id, count)
    claim = run.coordinator.claim_once(host, key)
    if claim.action == "skip":
        return "skipped"
    if claim.action == "run":
        return _run_as_runner(key, state, run, execute)
    assert claim.result is not None
    return _take(claim.result, task, state, run, scope)


def _run_as_runner(
    key: tuple[str, int], state: HostState, run: RunShared, execute: Callable[[], TaskStatus]
) -> TaskStatus:
    before = {name: dict(values) for name, values in _stores(state).items()}
    notified = list(state.notified)
    status: TaskStatus = "failed"
    try:
        status = execute()
    finally:
        # always leave a result: the hosts waiting for this one must not wait forever
        changes = {
            name: {k: v for k, v in values.items() if before[name].get(k) is not v}
            for name, values in _stores(state).items()
        }
        result = OnceResult(
            runner=state.host.id,
            status=status,
            msg=state.reason,
            changes=changes,
            notified=tuple(n for n in state.notified if n not in notified),
        )
        run.coordinator.finish_once(key, result)
    return status


def _stores(state: HostState) -> dict[str, dict[str, Any]]:
    return {"registered": state.registered, "facts": state.facts, "included": state.included}


def _take(
    result: OnceResult, task: Task, state: HostState, run: RunShared, scope: Scope
) -> TaskStatus:
    """A waiting host takes the runner's result; fails as it failed."""
    if result.status in ("failed", "unreachable"):
        msg = f"run_once: the task failed on {result.runner}" + (
            f": {result.msg}" if result.msg else ""
        )
        state.reason = msg
        run.bus.emit(
            TaskFinished(
                host=state.host.id,
                task_id=task.id,
                task=task.display_name,
                stage=scope.stage,
                status="failed",
                msg=msg,
                location=str(task.location) if task.location else None,
                handler=scope.handler,
            )
        )
        return "failed"
    for name, values in _stores(state).items():
        values.update(result.changes.get(name, {}))
    for name in result.notified:
        if name not in state.notified:
            state.notified.append(name)
    return result.status
