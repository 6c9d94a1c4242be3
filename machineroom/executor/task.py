"""Running one task on one host: when, loop, templating, the module, retries, register.

Everything a task keyword means is decided here and in the files beside it (module_call.py:
one call of the module; loops.py: a loop's items; task_result.py: events and what a result
changes on the host); the module itself only builds a script and reads its output. One
remote command per module call (per loop item).
"""

from __future__ import annotations

from typing import Any

from machineroom.errors import InputError
from machineroom.events import TaskStatus
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.loops import loop_items, run_loop
from machineroom.executor.module_call import TaskCall, call_module
from machineroom.executor.task_result import (
    TaskReport,
    apply_outcome,
    capped,
    holds,
    register,
    status_of,
    text_of,
)
from machineroom.executor.variables import Scope, origin_note, task_vars
from machineroom.playbook.keywords import resolve_flags
from machineroom.playbook.model import Task
from machineroom.templating import TemplateError, Where

__all__ = ["loop_items", "run_task"]


def run_task(
    task: Task, state: HostState, play_state: PlayShared, run: RunShared, scope: Scope
) -> TaskStatus:
    """Run `task` on the host; emit its events; return its status (`failed` only when the
    failure was not ignored: the caller then goes to `rescue` or stops the host)."""
    report = TaskReport(task, state, scope, run)
    where = Where(task.location, task.display_name, state.host.id)
    conditions = (*scope.when, *task.when)
    try:
        base_vars = task_vars(task, state, play_state, run, scope)  # may need the vault: can fail
        if task.templated:  # `no_log: "{{ hide }}"` and friends: their value on this host
            task = resolve_flags(task, lambda t: run.templar.render(t, base_vars, where))
            report.task = task
        report.title = _title(task, base_vars, run, where)
        items = _items_if_it_runs(task, base_vars, conditions, run, where)
    except _Skipped:
        register(state, task, {"changed": False, "skipped": True, "skip_reason": "when"})
        return report.finish("skipped", msg="condition false")
    except InputError as exc:
        message = str(exc) + origin_note(exc, task, state, play_state, run, scope)
        if task.ignore_errors or scope.ignore_errors:  # Ansible ignores these failures too
            report.finish("failed", msg=message, ignored=True)
            return "ok"
        state.reason = message
        state.failed_result = {"failed": True, "msg": message}
        return report.finish("failed", msg=message)
    report.start()
    call = TaskCall(task, state, play_state, run, scope)
    if items is not None:
        return run_loop(call, items, base_vars, conditions, where, report)
    return _run_once_here(call, base_vars, where, report)


def _title(task: Task, variables: dict[str, Any], run: RunShared, where: Where) -> str:
    """The task's name as shown and recorded: `Write {{ app }}.conf` with this host's
    variables, as Ansible templates a name; kept as written when it cannot be rendered yet
    (`{{ item }}` before the loop, a variable registered later)."""
    name = task.display_name
    if "{{" not in name and "{%" not in name:
        return name
    try:
        rendered = run.templar.render(name, variables, where)
    except Exception:  # a name is a label: never a reason to fail the task
        return name
    return str(rendered) if isinstance(rendered, str) and rendered.strip() else name


class _Skipped(Exception):
    """The task's `when` is false on this host."""


def _items_if_it_runs(
    task: Task,
    base_vars: dict[str, Any],
    conditions: tuple[Any, ...],
    run: RunShared,
    where: Where,
) -> list[Any] | None:
    """The task's loop items (None: no loop); raises _Skipped when its `when` is false.

    As Ansible: an undefined loop runs the task without items; a false `when` skips it,
    otherwise (or when `when` itself needs the item) the loop's error stands. A loop's
    `when` is judged per item (loops.py)."""
    loop_error: TemplateError | None = None
    try:
        items = loop_items(task, base_vars, run, where)
    except TemplateError as exc:
        if not exc.variable:
            raise
        items, loop_error = None, exc
    try:
        runs = items is not None or holds(conditions, base_vars, run, where)
    except InputError:
        if loop_error is not None:
            raise loop_error from None
        raise
    if not runs:
        raise _Skipped
    if loop_error is not None:
        raise loop_error
    return items


def _run_once_here(
    call: TaskCall, variables: dict[str, Any], where: Where, report: TaskReport
) -> TaskStatus:
    """A task without a loop: one module call, its result registered and reported."""
    task, state = call.task, call.state
    outcome, result = call_module(call, variables, where)
    status = status_of(outcome, result)
    if status == "unreachable":
        state.unreachable = True
        state.reason = outcome.msg
        return report.finish("unreachable", msg=outcome.msg, result=capped(result))
    register(state, task, result)
    apply_outcome(task, state, outcome, call.run, status)
    if status == "failed":
        state.failed_result = dict(result)  # rescue's ansible_failed_result
        if task.ignore_errors or call.scope.ignore_errors:
            return report.ignored(outcome, result)
    return report.finish(
        status,
        msg=outcome.msg,
        diff=outcome.diff,
        stdout=text_of(result.get("stdout")),
        stderr=text_of(result.get("stderr")),
        result=capped(result),
        record=dict(outcome.record),
    )
