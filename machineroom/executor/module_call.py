"""Calling a task's module once for a host (or a loop item): arguments rendered and checked,
the target host (delegation), become, the module run over the host's connection (or async,
or a reboot), then `changed_when`/`failed_when`, all under `retries`/`until`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from machineroom.connection.command import acting, hide_output, show_output
from machineroom.errors import (
    CommandTimeout,
    ConnectionFailure,
    HostKeyError,
    InputError,
    Location,
    MachineroomError,
)
from machineroom.executor.action_text import describe_call
from machineroom.executor.async_job import run_async
from machineroom.executor.delegation import Target, delegate_state, task_become, task_target
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.inventory_changes import INVENTORY_MODULES, apply_change
from machineroom.executor.program import ProgramStep, claim_step
from machineroom.executor.reboot import run_reboot
from machineroom.executor.step import run_module
from machineroom.executor.variables import Scope, origin_note
from machineroom.inventory.model import Host
from machineroom.masking import GUARD_MIN, MIN_INFERRED, SECRETS, is_secret_name
from machineroom.modules import get_module
from machineroom.modules.base import (
    NO_LOG_VAR,
    RES_VAR,
    VERBOSITY_VAR,
    Module,
    ModuleContext,
    Outcome,
)
from machineroom.modules.reboot import RebootModule
from machineroom.playbook.args import prepare_args
from machineroom.playbook.keywords import ENVIRONMENT_TEMPLATE
from machineroom.playbook.model import Task
from machineroom.templating import OMIT, Where, mark_unsafe


@dataclass(frozen=True)
class TaskCall:
    """Who calls the module: the task, on which host, in which play, run and scope."""

    task: Task
    state: HostState
    play_state: PlayShared
    run: RunShared
    scope: Scope


def call_module(
    call: TaskCall, variables: dict[str, Any], where: Where
) -> tuple[Outcome, dict[str, Any]]:
    """Call the task's module once for this host (or loop item): its attempts under
    `retries`/`until`, then changed_when/failed_when. Returns the outcome and the result as
    `register` will store it. (Not the `run_once` keyword: that is executor/once.py.)"""
    task, run = call.task, call.run
    if task.deferred is not None:  # a load-time warning (behind a condition) reached here
        return _deferred_failure(task, variables, run, where)
    module = get_module(task.module)
    if module is None:  # validation catches this before the run; this is a safety net
        return Outcome("failed", msg=f"unknown module '{task.module}'"), {"failed": True}
    attempts = 0
    retries = task.retries if task.retries is not None else (3 if task.until else 0)
    while True:
        attempts += 1
        attempt = _attempt(call, module, variables, where)
        if attempt.unreachable is not None:
            return attempt.unreachable
        outcome, result = attempt.outcome, attempt.result
        if not task.until:
            break
        until_vars = {**variables, **({task.register: result} if task.register else {})}
        try:
            done = bool(run.templar.evaluate(task.until, until_vars, where))
        except InputError as exc:
            return Outcome("failed", msg=str(exc)), {"failed": True, "msg": str(exc)}
        if done or attempts > retries or run.stop.is_set():
            if not done:
                result["failed"] = True
                result["msg"] = f"gave up after {attempts} attempts: {result.get('msg', '')}"
            break
        time.sleep(max(0.0, float(task.delay)))
    result["attempts"] = attempts
    status = "failed" if result.get("failed") else "changed" if result.get("changed") else "ok"
    final = Outcome(
        status,  # type: ignore[arg-type]
        msg=str(result.get("msg", "")),
        diff=outcome.diff,
        result=outcome.result,
        facts=outcome.facts,
        record=outcome.record,
    )
    if task.delegate_facts and outcome.facts:
        # the facts are the delegated host's (`delegate_facts: true`), not this one's
        other = delegate_state(call.play_state, attempt.target.delegate if attempt.target else None)
        if other is not None:
            store = other.registered if task.module == "set_fact" else other.facts
            store.update(mark_unsafe(dict(outcome.facts)))
        final = replace(final, facts={})
    return final, result


@dataclass
class Attempt:
    """One attempt's outcome and registered result; `unreachable`: the whole call's answer
    when the host could not be reached (no retry helps)."""

    outcome: Outcome
    result: dict[str, Any]
    target: Target | None = None
    unreachable: tuple[Outcome, dict[str, Any]] | None = None


def _attempt(call: TaskCall, module: Module, variables: dict[str, Any], where: Where) -> Attempt:
    """Render the arguments, pick the target, run the module once, judge the result."""
    task, state, run = call.task, call.state, call.run
    args: dict[str, Any] = {}
    target: Target | None = None
    step = claim_step(state, task.id)  # part of a per-host program sent already?
    try:
        if step is not None:
            args, target = dict(step.args), step.target
            outcome = _from_program(call, module, step, variables, where)
        else:
            args, target, ctx = render_call(call, module, variables, where)
            if module.name == "assert":
                args = _evaluate_assert(args, variables, run, where)
            elif module.name == "include_vars":  # the files are read here: modules do no I/O
                from machineroom.executor.varfiles import load_var_files

                role = task.role or call.scope.role
                args = load_var_files(args, task, role, run.playbook_dir)
            outcome = _run_on_target(call, module, args, ctx, target, variables, where)
    except ConnectionFailure as exc:
        failure: dict[str, Any] = {"unreachable": True, "msg": exc.reason}
        if isinstance(exc, HostKeyError) and exc.offered:
            failure["host_key"] = dict(exc.offered)  # recorded with the run (the dashboard)
        unreachable = Outcome("failed", msg=exc.reason), failure
        return Attempt(unreachable[0], unreachable[1], target, unreachable=unreachable)
    except CommandTimeout as exc:
        outcome = Outcome("failed", msg=f"timed out after {exc.timeout:g}s")
    except MachineroomError as exc:
        # include_vars' failures also say it under `message`, as Ansible's action does
        extra = {"message": str(exc)} if module.name == "include_vars" else {}
        message = str(exc) + origin_note(exc, task, state, call.play_state, run, call.scope)
        outcome = Outcome("failed", msg=message, result=extra)
    result = _result_of(outcome)
    if task.no_log:
        _register_no_log(module.name, args, result)
    result["module"] = module.name  # the recorder tells gathered facts from set_fact
    try:
        result = _apply_overrides(task, result, variables, run, where)
    except InputError as exc:  # changed_when/failed_when that cannot be evaluated
        result = {**result, "failed": True, "msg": str(exc)}
    return Attempt(outcome, result, target)


def render_call(
    call: TaskCall, module: Module, variables: dict[str, Any], where: Where
) -> tuple[dict[str, Any], Target, ModuleContext]:
    """The task's arguments rendered and checked, the host its command goes to, and the
    module's context there."""
    task, state, run = call.task, call.state, call.run
    args = _drop_omitted(run.templar.render(dict(task.args), variables, where))
    args = prepare_args(module.name, args, module.schema, _location(task))
    target = task_target(task, state, call.play_state, run, variables, where)
    ctx = _module_context(task, state, run, call.scope, variables, where, target.host)
    return args, target, ctx


def _from_program(
    call: TaskCall,
    module: Module,
    step: ProgramStep,
    variables: dict[str, Any],
    where: Where,
) -> Outcome:
    """A task of a per-host program: its output once the host ran it; alone when the
    program stopped before it."""
    assert call.state.program is not None
    output = call.state.program.output(step)
    if output is None:
        args = dict(step.args)
        return _run_on_target(call, module, args, step.ctx, step.target, variables, where)
    return module.interpret(step.args, step.ctx, output)


def _run_on_target(
    call: TaskCall,
    module: Module,
    args: dict[str, Any],
    ctx: ModuleContext,
    target: Target,
    variables: dict[str, Any],
    where: Where,
) -> Outcome:
    """The module on the target host's connection (none for a controller-side module):
    async, a reboot, or one step; a no_log task's commands are audited hidden."""
    task, state, run = call.task, call.state, call.run
    if task.no_log:
        hide_output(state.host.id)  # its commands: audited "(hidden: no_log)"
    try:
        become = task_become(
            task,
            call.scope.become,
            call.scope.become_user,
            target.host,
            call.play_state,
            run,
            variables,
            where,
        )
        connection = None if module.local else run.pool.get(target.host)
        # the audit log shows the call as the task wrote it beside each command (run_module
        # says it for its own steps)
        action = describe_call(module.name, args, module.free_form)
        if task.async_seconds and connection is not None and not ctx.check:
            with acting(f"{action} (async)"):
                outcome = run_async(
                    module,
                    args,
                    ctx,
                    connection,
                    limit=task.async_seconds,
                    poll=task.poll,
                    become=become,
                    stop=run.stop,
                )
        elif isinstance(module, RebootModule) and connection is not None:
            # the host goes away: wait for it to come back and pass test_command
            with acting(action):
                outcome = run_reboot(module, args, ctx, connection, become=become)
        else:
            outcome = run_module(
                module,
                args,
                ctx,
                connection,
                become=become,
                timeout=task.timeout,
                environment=task_environment(task, variables, run, where),
            )
        if module.name in INVENTORY_MODULES:  # add_host, group_by: the run's inventory
            outcome = apply_change(module.name, outcome, state, call.play_state, run)
        return outcome
    finally:
        show_output(state.host.id)


def _deferred_failure(
    task: Task, variables: dict[str, Any], run: RunShared, where: Where
) -> tuple[Outcome, dict[str, Any]]:
    """A task written to fail (a load-time warning behind a condition) that was reached:
    a failure like a module's, which failed_when may still judge (tests of error handling)."""
    assert task.deferred is not None
    failed = {"failed": True, "changed": False, "msg": task.deferred}
    try:
        result = _apply_overrides(task, failed, variables, run, where)
    except InputError as exc:
        result = {**failed, "msg": str(exc)}
    return Outcome("failed" if result.get("failed") else "ok", msg=task.deferred), result


def _location(task: Task) -> Location:
    return task.location or Location(task.id or task.module)


def _register_no_log(module: str, args: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """What a no_log task handled stays masked for the rest of the run: its arguments whose
    names say secret (all of set_fact's), and the output it produced (a `cat` of a key,
    registered and printed later)."""
    for key, value in args.items():
        if module == "set_fact" or is_secret_name(str(key)):
            SECRETS.add_all(value, min_length=MIN_INFERRED)
    text = result.get("stdout")
    if isinstance(text, str) and len(text.strip()) >= MIN_INFERRED:
        SECRETS.add(text.strip())
        # lines of a longer output (a key and its header): long ones only, not "changed"
        for line in text.splitlines():
            if len(line.strip()) >= GUARD_MIN:
                SECRETS.add(line.strip())


def _drop_omitted(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments set to `{{ omit }}` are left out, as if never written."""
    return {key: value for key, value in args.items() if value != OMIT}


def _result_of(outcome: Outcome) -> dict[str, Any]:
    """The registered form of an outcome: module result + changed/failed/msg, marked unsafe."""
    result: dict[str, Any] = dict(mark_unsafe(dict(outcome.result)))
    result["changed"] = outcome.changed
    result["failed"] = outcome.failed
    if outcome.msg:
        result.setdefault("msg", outcome.msg)
    if outcome.facts:
        result["ansible_facts"] = mark_unsafe(dict(outcome.facts))
    return result


def _apply_overrides(
    task: Task, result: dict[str, Any], variables: dict[str, Any], run: RunShared, where: Where
) -> dict[str, Any]:
    """changed_when / failed_when, evaluated with the result registered under its name."""
    if task.changed_when is None and task.failed_when is None:
        return result
    scope_vars = {**variables, **({task.register: result} if task.register else {})}
    if task.changed_when is not None:
        try:
            result["changed"] = all(
                bool(run.templar.evaluate(c, scope_vars, where)) for c in task.changed_when
            )
        except InputError as exc:  # the task fails; the result says why, as Ansible's
            result["changed_when_result"] = str(exc)
            raise
    if task.failed_when is not None:
        # a list is all of its conditions, as Ansible's; the outcome is kept in the result
        try:
            failed = all(bool(run.templar.evaluate(c, scope_vars, where)) for c in task.failed_when)
        except InputError as exc:
            result["failed_when_result"] = str(exc)
            raise
        result["failed"] = result["failed_when_result"] = failed
        if failed and not result.get("msg"):
            result["msg"] = "failed_when condition met"
    return result


def task_environment(
    task: Task, variables: dict[str, Any], run: RunShared, where: Where
) -> dict[str, str]:
    """The task's `environment:` rendered for this host: names checked, values as text."""
    if not task.environment:
        return {}
    written = dict(task.environment)
    template = written.pop(ENVIRONMENT_TEMPLATE, None)
    rendered = run.templar.render(written, variables, where)
    if template is not None:
        base = run.templar.render(template, variables, where)
        if not isinstance(base, Mapping):
            raise InputError(
                f"environment: {template} gave {type(base).__name__}", task.location, "a mapping"
            )
        rendered = {**base, **rendered}
    result: dict[str, str] = {}
    for name, value in rendered.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise InputError(
                f"environment: '{name}' is not a variable name", task.location, "letters, digits, _"
            )
        result[str(name)] = "" if value is None else str(value)
    return result


def _evaluate_assert(
    args: dict[str, Any], variables: dict[str, Any], run: RunShared, where: Where
) -> dict[str, Any]:
    """The assert module gets `that` already evaluated: a list of (expression, bool)."""
    that = args.get("that", [])
    if not isinstance(that, list):
        that = [that]
    return {
        **args,
        "that": [
            {"expr": str(e), "ok": bool(run.templar.evaluate(e, variables, where))} for e in that
        ],
    }


def _module_context(
    task: Task,
    state: HostState,
    run: RunShared,
    scope: Scope,
    variables: dict[str, Any],
    where: Where,
    target: Host | None = None,
) -> ModuleContext:
    from machineroom.executor.files import file_reader, folder_finder, template_renderer
    from machineroom.executor.local_files import PlaybookFiles

    role = task.role or scope.role
    check = run.options.check if task.check_mode is None else task.check_mode
    diff = run.options.diff if task.diff is None else task.diff
    return ModuleContext(
        host_id=state.host.id,
        check=check,
        diff=diff,
        vars={
            **variables,
            RES_VAR: dict(state.server_res),
            VERBOSITY_VAR: run.options.verbosity,
            NO_LOG_VAR: task.no_log,
        },
        remote_user=(target or state.host).user or "root",
        become_user=None,
        read_file=file_reader(task, role, run.playbook_dir),
        local_folder=folder_finder(role, run.playbook_dir),
        render_template=template_renderer(task, role, run, variables, where),
        local_files=PlaybookFiles(run.playbook_dir),
    )
