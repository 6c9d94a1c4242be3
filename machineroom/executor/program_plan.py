"""Which of the tasks ahead of a host can go to it as one program, and their steps.

A run of consecutive tasks joins one program (executor/program.py) while no task's inputs can
depend on what an earlier one of the run does: each is a plain module call whose module
declares `in_programs` (a deterministic script, failure only with a non-zero exit, no facts
set), without loop, retries, delegation, run_once, throttle, async, timeout or no_log, under
the same become, reading no name an earlier task of the run registers, and calling nothing
whose value changes between two renderings (lookups, now(), random). The run ends before
the first task that breaks a rule, and after a task with `failed_when` or a `changed_when`
that is not a constant (whether it failed is decided here, not by its exit code). A task that
reads, through a variable or a template file, a name an earlier step registers (or a fact,
after the gathering step) ends the program too: its plan-time rendering fails on purpose.
Plays that make hosts wait for each other (strategy linear, max_fail_percentage,
any_errors_fatal) get no programs: their hosts must not run ahead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from machineroom.connection.base import Become
from machineroom.errors import MachineroomError
from machineroom.executor.action_text import describe_call
from machineroom.executor.delegation import task_become
from machineroom.executor.facts_needed import FACT_MENTION
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
    lead: tuple[Task, Scope] | None = None,
) -> Program | None:
    """Plan the program that begins with `items[start]` (after `lead`, a task the walker
    runs first whatever its tags: fact gathering) and send it to the host; None when fewer
    than two tasks would join (one task goes alone, as always)."""
    plan = _Plan(state, play_state, run)
    if lead is not None and not plan.add(*lead):
        return None
    for item in items[start:]:
        if not isinstance(item, Task) or not _joinable(item) or plan.reads_earlier(item):
            break
        if not tags_allow(item.tags | scope.tags, run.options.tags, run.options.skip_tags):
            continue  # the walker skips it too
        if not plan.add(item, scope) or _decided_here(item):
            break
    if len(plan.steps) < 2:
        return None
    program = Program(plan.steps, plan.become)
    try:
        connection = run.pool.get(state.host)
    except MachineroomError as exc:  # unreachable: the first task says so, as it would alone
        program.not_started(exc)
        return program
    default = getattr(connection, "command_timeout", None)
    timeouts = [step.timeout or default for step in plan.steps]
    program.start(connection, None if None in timeouts else sum(t or 0 for t in timeouts))
    return program


class _Plan:
    """The steps of a program being planned, and what they set that later tasks may read."""

    def __init__(self, state: HostState, play_state: PlayShared, run: RunShared) -> None:
        self.state, self.play_state, self.run = state, play_state, run
        self.steps: list[ProgramStep] = []
        self.become: Become | None = None
        self.registered: set[str] = set()
        self.sets_facts = False
        self.stdin_bytes = 0

    def reads_earlier(self, task: Task) -> bool:
        """Whether `task` may read what an earlier step registers or the facts it gathers."""
        text = _written(task)
        if self.sets_facts and FACT_MENTION.search(text):
            return True
        return any(re.search(rf"\b{re.escape(name)}\b", text) for name in self.registered)

    def _set_earlier(self, name: str) -> bool:
        """Whether an earlier step sets `name` (registers it, or gathers it as a fact)."""
        if name in self.registered:
            return True
        return self.sets_facts and FACT_MENTION.fullmatch(name) is not None

    def add(self, task: Task, scope: Scope) -> bool:
        """Add the task's step (none when its `when` is false); False: the program ends
        before it."""
        if len(self.steps) >= MAX_STEPS:
            return False
        try:
            prepared = _prepare(
                task, self.state, self.play_state, self.run, scope, self.sets_facts,
                self._set_earlier if self.registered or self.sets_facts else None,
            )  # fmt: skip
        except Exception:
            return False
        if task.register:
            self.registered.add(task.register)
        if prepared is None:
            return True  # its `when` is false: the walker skips it
        step, become = prepared
        if self.steps and become != self.become:
            return False
        self.stdin_bytes += len(step.stdin or b"")
        if self.stdin_bytes > MAX_STDIN:
            return False
        self.become = become
        self.steps.append(step)
        self.sets_facts = self.sets_facts or step.sets_facts
        return True


def _decided_here(task: Task) -> bool:
    """Whether the task's outcome is decided on the controller from its result (failed_when,
    a changed_when that is not a constant: it may fail), so the program must stop after it."""
    if task.failed_when is not None:
        return True
    constant = (True, False, "true", "false", "True", "False")
    return task.changed_when is not None and not all(
        isinstance(c, bool | str) and c in constant for c in task.changed_when
    )


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


def _prepare(
    task: Task,
    state: HostState,
    play_state: PlayShared,
    run: RunShared,
    scope: Scope,
    after_facts: bool = False,
    set_earlier: Callable[[str], bool] | None = None,
) -> tuple[ProgramStep, Become | None] | None:
    """The task's step as the walker would send it, or None when its `when` is false.
    `after_facts`: facts are gathered earlier in the program, so a template file (which
    could read one) cannot be rendered yet. `set_earlier(name)`: an earlier step sets that
    variable, so the task cannot be rendered now if it reads it, however indirectly."""
    where = Where(task.location, task.display_name, state.host.id)
    variables = task_vars(task, state, play_state, run, scope)
    if set_earlier is not None:  # a copy that guards its lookups, only when there is a need
        variables = _Guarded(variables, set_earlier, task.id)
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
    built_with = replace(ctx, render_template=_refuse(task.id)) if after_facts else ctx
    step = module.build(args, built_with)
    if step is None:
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
    step_data = ProgramStep(task.id, script, stdin, go_on, args, ctx, target)
    action = describe_call(module.name, args, module.free_form)
    step_data = replace(step_data, timeout=step.timeout, sets_facts=module.sets_facts)
    return replace(step_data, action=action), become


class _Guarded(dict[str, Any]):
    """A task's variables as its templates look them up: reading one that an earlier step of
    the program sets raises, so that the task waits for the value the host gives it (a
    variable or template file reading a registered result, a loop's earlier pass)."""

    def __init__(self, values: dict[str, Any], forbidden: Callable[[str], bool], task_id: str):
        super().__init__(values)
        self._forbidden = forbidden
        self._task_id = task_id

    def __getitem__(self, key: str) -> Any:
        if self._forbidden(key):
            raise _NotJoinable(self._task_id)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - through __getitem__


def _refuse(task_id: str) -> Callable[..., str]:
    """A template renderer that says the task must run alone."""

    def render(src: str, **options: object) -> str:
        raise _NotJoinable(task_id)

    return render


class _NotJoinable(MachineroomError):
    """The task turned out, on this host, to need a command of its own."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"{task_id}: runs alone")
