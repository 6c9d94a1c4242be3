"""Which of the tasks ahead of a host can go to it as one program, and their steps.

A run of consecutive tasks joins one program (executor/program.py) while no task's inputs can
depend on what an earlier one of the run does: each is a plain module call whose module
declares `in_programs` (a deterministic script, failure only with a non-zero exit, no facts
set), without loop, retries, delegation, run_once, throttle, async, timeout or no_log, under
the same become, reading no name an earlier task of the run registers, and calling nothing
whose value changes between two renderings (lookups, now(), random). The run ends before
the first task that breaks a rule, and after a task with `failed_when` (whether it failed is
decided here, not by its exit code). Plays that make hosts wait for each other (strategy
linear, max_fail_percentage, any_errors_fatal) get no programs: their hosts must not run
ahead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from machineroom.connection.base import Become
from machineroom.errors import MachineroomError
from machineroom.executor.delegation import task_become
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.module_call import TaskCall, render_call, task_environment
from machineroom.executor.program import Program, ProgramStep
from machineroom.executor.step import exports
from machineroom.executor.task_result import holds
from machineroom.executor.variables import Scope, task_vars
from machineroom.modules import get_module
from machineroom.playbook.keywords import resolve_flags
from machineroom.playbook.model import Item, Task
from machineroom.playbook.tags import tags_allow
from machineroom.templating import Where

# Most tasks a program holds, and most bytes of input it sends (files stream alone).
MAX_STEPS = 64
MAX_STDIN = 8 << 20
# Template calls that may give another value each time they are rendered.
_UNSTABLE = re.compile(r"\b(?:lookup|query|q|now|random|shuffle|password_hash|uuid\w*)\b")
# Keywords whose templated value could make a task leave the program's rules.
_RULE_KEYWORDS = {"run_once", "no_log", "any_errors_fatal", "timeout", "throttle"}


def programs_allowed(play_state: PlayShared, run: RunShared) -> bool:
    """Whether this play's hosts may run ahead of each other in programs."""
    play = play_state.play
    return (
        run.options.programs
        and play.strategy == "free"
        and play.max_fail_percentage is None
        and not play.any_errors_fatal
    )


def start_program(
    items: Sequence[Item],
    start: int,
    state: HostState,
    play_state: PlayShared,
    run: RunShared,
    scope: Scope,
) -> Program | None:
    """Plan the program that begins with `items[start]` and send it to the host; None when
    fewer than two tasks would join (one task goes alone, as always)."""
    steps: list[ProgramStep] = []
    registered: set[str] = set()
    become: Become | None = None
    stdin_bytes = 0
    for item in items[start:]:
        if len(steps) >= MAX_STEPS or not isinstance(item, Task) or not _joinable(item):
            break
        if registered and _reads(item, registered):
            break
        if not tags_allow(item.tags | scope.tags, run.options.tags, run.options.skip_tags):
            continue  # the walker skips it too
        try:
            prepared = _prepare(item, state, play_state, run, scope)
        except (MachineroomError, OSError):
            break  # the walker meets the same error and reports it
        if item.register:
            registered.add(item.register)
        if prepared is None:
            continue  # its `when` is false: the walker skips it
        step, step_become = prepared
        if steps and step_become != become:
            break
        stdin_bytes += len(step.stdin or b"")
        if stdin_bytes > MAX_STDIN:
            break
        become = step_become
        steps.append(step)
        if item.failed_when is not None:
            break
    if len(steps) < 2:
        return None
    program = Program(steps, become)
    connection = run.pool.get(state.host)
    timeout = getattr(connection, "command_timeout", None)
    program.start(connection, None if timeout is None else timeout * len(steps))
    return program


def _joinable(task: Task) -> bool:
    """The rules a task must meet as written (before its host's values are known)."""
    module = get_module(task.module)
    return (
        module is not None
        and module.in_programs
        and task.kind == "module"
        and task.deferred is None
        and task.loop is None
        and task.loop_with is None
        and not task.until
        and task.retries is None
        and task.delegate_to is None
        and task.connection is None
        and task.remote_user is None
        and task.port is None
        and not task.run_once
        and task.throttle is None
        and task.async_seconds is None
        and task.timeout is None
        and not task.no_log
        and not task.any_errors_fatal
        and not _RULE_KEYWORDS & set(task.templated)
        and not _UNSTABLE.search(_written(task))
    )


def _written(task: Task) -> str:
    """Everything of the task a template could sit in, as text to search."""
    return repr(
        (
            task.args,
            task.when,
            task.vars,
            task.environment,
            task.changed_when,
            task.failed_when,
            task.become_user,
            task.become_method,
            task.become_flags,
            task.templated,
        )
    )


def _reads(task: Task, names: set[str]) -> bool:
    """Whether the task mentions one of `names` (a register of an earlier task)."""
    text = _written(task)
    return any(re.search(rf"\b{re.escape(name)}\b", text) for name in names)


def _prepare(
    task: Task, state: HostState, play_state: PlayShared, run: RunShared, scope: Scope
) -> tuple[ProgramStep, Become | None] | None:
    """The task's step as the walker would send it, or None when its `when` is false."""
    where = Where(task.location, task.display_name, state.host.id)
    variables = task_vars(task, state, play_state, run, scope)
    if task.templated:
        task = resolve_flags(task, lambda t: run.templar.render(t, variables, where))
    conditions = (*scope.when, *task.when)
    if conditions and not holds(conditions, variables, run, where):
        return None
    module = get_module(task.module)
    assert module is not None
    call = TaskCall(task, state, play_state, run, scope)
    args, target, ctx = render_call(call, module, variables, where)
    if target.host is not state.host or module.converse(args, ctx) is not None:
        raise _NotJoinable(task.id)
    step = module.build(args, ctx)
    if step is None or step.timeout is not None:
        raise _NotJoinable(task.id)
    become = task_become(
        task, scope.become, scope.become_user, target.host, play_state, run, variables, where
    )
    environment = task_environment(task, variables, run, where)
    stdin = step.stdin
    if stdin is not None and not isinstance(stdin, bytes):
        path = Path(os.fspath(stdin))
        if path.stat().st_size > MAX_STDIN:
            raise _NotJoinable(task.id)
        stdin = path.read_bytes()
    go_on = bool(task.ignore_errors or scope.ignore_errors)
    script = exports(environment) + step.script
    return ProgramStep(task.id, script, stdin, go_on, args, ctx, target), become


class _NotJoinable(MachineroomError):
    """The task turned out, on this host, to need a command of its own."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"{task_id}: runs alone")
