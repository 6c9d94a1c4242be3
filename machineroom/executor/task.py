"""Running one task on one host: when, loop, templating, the module, retries, register.

Everything a task keyword means is decided here; the module itself only builds a script and
reads its output. One remote command per module call (per loop item).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from machineroom.connection.command import hide_output, show_output
from machineroom.connection.output import cap_text
from machineroom.errors import (
    CommandTimeout,
    ConnectionFailure,
    InputError,
    Location,
    MachineroomError,
)
from machineroom.events import TaskFinished, TaskStarted, TaskStatus
from machineroom.executor.async_job import run_async
from machineroom.executor.delegation import Target, delegate_state, task_become, task_target
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.inventory_changes import INVENTORY_MODULES, apply_change
from machineroom.executor.reboot import run_reboot
from machineroom.executor.step import run_module
from machineroom.executor.variables import Scope, origin_note, task_vars
from machineroom.inventory.model import Host
from machineroom.lookups import WITH_SUBDIR_VAR, with_subdir
from machineroom.masking import GUARD_MIN, MIN_INFERRED, SECRETS, is_secret_name
from machineroom.modules import get_module
from machineroom.modules.base import NO_LOG_VAR, RES_VAR, VERBOSITY_VAR, ModuleContext, Outcome
from machineroom.modules.reboot import RebootModule
from machineroom.playbook.args import prepare_args
from machineroom.playbook.keywords import ENVIRONMENT_TEMPLATE, resolve_flags
from machineroom.playbook.model import Task
from machineroom.templating import OMIT, TemplateError, Where, mark_unsafe

# Result keys kept short in events: the console and the database need no more.
OUTPUT_CAP = 64 * 1024
# `with_NAME`'s terms, handed to the lookup through a variable (not pasted into the template
# text, where a term would be read as Jinja); dunder so no playbook variable can collide.
WITH_TERMS_VAR = "__mr_with_terms__"


def run_task(
    task: Task, state: HostState, play_state: PlayShared, run: RunShared, scope: Scope
) -> TaskStatus:
    """Run `task` on the host; emit its events; return its status (`failed` only when the
    failure was not ignored: the caller then goes to `rescue` or stops the host)."""
    started = time.monotonic()
    name = task.display_name
    where = Where(task.location, name, state.host.id)

    def finish(status: TaskStatus, **fields: Any) -> TaskStatus:
        if task.no_log:
            fields = _censored(fields)
        run.bus.emit(
            TaskFinished(
                host=state.host.id,
                task_id=task.id,
                task=name,
                stage=scope.stage,
                status=status,
                duration=time.monotonic() - started,
                location=str(task.location) if task.location else None,
                **fields,
            )
        )
        return status

    conditions = (*scope.when, *task.when)
    try:
        base_vars = task_vars(task, state, play_state, run, scope)  # may need the vault: can fail
        if task.templated:  # `no_log: "{{ hide }}"` and friends: their value on this host
            task = resolve_flags(task, lambda t: run.templar.render(t, base_vars, where))
        loop_error: TemplateError | None = None
        try:
            items = loop_items(task, base_vars, run, where)
        except TemplateError as exc:
            if not exc.variable:
                raise
            # Ansible: an undefined loop runs the task without items; a false `when` skips
            # it, otherwise (or when `when` itself needs the item) the loop's error stands
            items, loop_error = None, exc
        try:
            holds = items is not None or _holds(conditions, base_vars, run, where)
        except InputError:
            if loop_error is not None:
                raise loop_error from None
            raise
        if not holds:
            _register(state, task, {"changed": False, "skipped": True, "skip_reason": "when"})
            return finish("skipped", msg="condition false")
        if loop_error is not None:
            raise loop_error
    except InputError as exc:
        message = str(exc) + origin_note(exc, task, state, play_state, run, scope)
        if task.ignore_errors or scope.ignore_errors:  # Ansible ignores these failures too
            finish("failed", msg=message, ignored=True)
            return "ok"
        state.reason = message
        state.failed_result = {"failed": True, "msg": message}
        return finish("failed", msg=message)

    run.bus.emit(TaskStarted(state.host.id, task.id, name, scope.stage))
    ignore = task.ignore_errors or bool(scope.ignore_errors)
    if items is None:
        outcome, result = _call_module(task, state, play_state, run, scope, base_vars, where)
        status = _status_of(outcome, result)
        if status == "unreachable":
            state.unreachable = True
            state.reason = outcome.msg
            return finish("unreachable", msg=outcome.msg, result=_cap(result))
        _register(state, task, result)
        _after(task, state, outcome, run, status)
        if status == "failed":
            state.failed_result = dict(result)  # rescue's ansible_failed_result
        if status == "failed" and ignore:
            return _ignored(finish, outcome, result)
        return finish(
            status,
            msg=outcome.msg,
            diff=outcome.diff,
            stdout=_text(result.get("stdout")),
            stderr=_text(result.get("stderr")),
            result=_cap(result),
            record=dict(outcome.record),
        )

    # a loop: one module call per item, one event per item, one summary
    if not items:
        _register(
            state,
            task,
            {"changed": False, "skipped": True, "skipped_reason": "No items in the list"}
            | {"results": []},
        )
        return finish("skipped", msg="No items in the list")
    try:
        # the label is rendered per item, with it; the rest once for the task
        control = run.templar.render(
            {k: v for k, v in task.loop_control.items() if k != "label"}, base_vars, where
        )
    except InputError as exc:
        return finish("failed", msg=str(exc))
    loop_var = str(control.get("loop_var", "item"))
    index_var = control.get("index_var")
    label_template = task.loop_control.get("label")  # rendered per item
    results: list[dict[str, Any]] = []
    statuses: list[TaskStatus] = []
    record: dict[str, Any] = {}
    diffs: list[str] = []
    for index, item in enumerate(items):
        item_vars = {**base_vars, loop_var: item, "ansible_loop_var": loop_var}
        if index_var:
            item_vars[str(index_var)] = index
            item_vars["ansible_index_var"] = str(index_var)
        if control.get("extended"):
            item_vars["ansible_loop"] = _extended(items, index, control)
        if index and control.get("pause"):
            time.sleep(float(control["pause"]))  # between items, as Ansible
        try:
            label = _label(label_template, item, item_vars, run, where)
        except InputError as exc:
            return finish("failed", msg=str(exc))
        try:
            if not _holds(conditions, item_vars, run, where):
                results.append({"item": item, "skipped": True, "changed": False})
                statuses.append("skipped")
                run.bus.emit(_item_event(state, task, scope, "skipped", label, "condition false"))
                continue
        except InputError as exc:
            return finish("failed", msg=str(exc))
        outcome, result = _call_module(task, state, play_state, run, scope, item_vars, where)
        status = _status_of(outcome, result)
        if status == "unreachable":
            state.unreachable = True
            state.reason = outcome.msg
            return finish("unreachable", msg=outcome.msg)
        result = {**result, "item": item, loop_var: item}
        results.append(result)
        statuses.append(status)
        record.update(outcome.record)
        if outcome.diff:
            diffs.append(outcome.diff)
        _after(task, state, outcome, run, status)
        if outcome.facts and task.module in ("set_fact", "include_vars"):
            # the next item sees this item's facts: `x: "{{ x + [item] }}"` accumulates
            base_vars = {**base_vars, **mark_unsafe(dict(outcome.facts))}
        run.bus.emit(_item_event(state, task, scope, status, label, outcome.msg, outcome.diff))
    changed = "changed" in statuses
    failed = "failed" in statuses
    summary = {
        "changed": changed,
        "failed": failed,
        "results": results,
        "msg": "one or more items failed" if failed else "all items completed",
        "skipped": bool(statuses) and all(s == "skipped" for s in statuses),
    }
    _register(state, task, summary)
    loop_status: TaskStatus = (
        "failed" if failed else "changed" if changed else "skipped" if summary["skipped"] else "ok"
    )
    if failed and ignore:
        finish("failed", msg=str(summary["msg"]), ignored=True, diff="\n".join(diffs))
        return "ok"  # an ignored failure lets the host go on
    return finish(
        loop_status,
        msg=str(summary["msg"]),
        diff="\n".join(diffs),
        record=record,
        result=_cap({"results": [_cap(r) for r in results]}),
    )


def _ignored(finish: Any, outcome: Outcome, result: Mapping[str, Any]) -> TaskStatus:
    finish(
        "failed",
        msg=outcome.msg,
        stdout=_text(result.get("stdout")),
        stderr=_text(result.get("stderr")),
        ignored=True,
        result=_cap(result),
    )
    return "ok"  # an ignored failure lets the host go on


NO_LOG = "(output hidden: no_log)"


def _censored(fields: dict[str, Any]) -> dict[str, Any]:
    """A no_log task's event: its status stays, its text goes."""
    hidden = dict(fields)
    for key in ("msg", "stdout", "stderr", "diff"):
        if hidden.get(key):
            hidden[key] = NO_LOG
    result = hidden.get("result") or {}
    kept = {"engine": result["engine"]} if "engine" in result else {}  # what ran it: no secret
    hidden["result"] = {"censored": NO_LOG, **kept} if result else {}
    return hidden


def _item_event(
    state: HostState,
    task: Task,
    scope: Scope,
    status: TaskStatus,
    label: str,
    msg: str = "",
    diff: str = "",
) -> TaskFinished:
    if task.no_log:
        msg, diff, label = (NO_LOG if msg else ""), (NO_LOG if diff else ""), "(hidden)"
    return TaskFinished(
        host=state.host.id,
        task_id=task.id,
        task=task.display_name,
        stage=scope.stage,
        status=status,
        msg=msg,
        diff=diff,
        item=label,
    )


def _call_module(
    task: Task,
    state: HostState,
    play_state: PlayShared,
    run: RunShared,
    scope: Scope,
    variables: dict[str, Any],
    where: Where,
) -> tuple[Outcome, dict[str, Any]]:
    """Call the task's module once for this host (or loop item): its attempts under
    `retries`/`until`, then changed_when/failed_when. Returns the outcome and the result as
    `register` will store it. (Not the `run_once` keyword: that is executor/once.py.)"""
    if task.deferred is not None:  # a load-time warning (behind a condition) reached here
        # a failure like a module's: failed_when may still judge it (tests of error handling)
        failed = {"failed": True, "changed": False, "msg": task.deferred}
        try:
            result = _apply_overrides(task, failed, variables, run, where)
        except InputError as exc:
            result = {**failed, "msg": str(exc)}
        return Outcome("failed" if result.get("failed") else "ok", msg=task.deferred), result
    module = get_module(task.module)
    if module is None:  # validation catches this before the run; this is a safety net
        return Outcome("failed", msg=f"unknown module '{task.module}'"), {"failed": True}
    attempts = 0
    retries = task.retries if task.retries is not None else (3 if task.until else 0)
    args: dict[str, Any] = {}
    target: Target | None = None
    while True:
        attempts += 1
        try:
            args = _drop_omitted(run.templar.render(dict(task.args), variables, where))
            args = prepare_args(module.name, args, module.schema, _location(task))
            target = task_target(task, state, play_state, run, variables, where)
            ctx = _module_context(task, state, run, scope, variables, where, target.host)
            if module.name == "assert":
                args = _evaluate_assert(args, variables, run, where)
            elif module.name == "include_vars":  # the files are read here: modules do no I/O
                from machineroom.executor.varfiles import load_var_files

                args = load_var_files(args, task, task.role or scope.role, run.playbook_dir)
            if task.no_log:
                hide_output(state.host.id)  # its commands: audited "(hidden: no_log)"
            try:
                become = task_become(
                    task,
                    scope.become,
                    scope.become_user,
                    target.host,
                    play_state,
                    run,
                    variables,
                    where,
                )
                connection = None if module.local else run.pool.get(target.host)
                if task.async_seconds and connection is not None and not ctx.check:
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
                    outcome = run_reboot(module, args, ctx, connection, become=become)
                else:
                    outcome = run_module(
                        module,
                        args,
                        ctx,
                        connection,
                        become=become,
                        timeout=task.timeout,
                        environment=_environment(task, variables, run, where),
                    )
                if module.name in INVENTORY_MODULES:  # add_host, group_by: the run's inventory
                    outcome = apply_change(module.name, outcome, state, play_state, run)
            finally:
                show_output(state.host.id)
        except ConnectionFailure as exc:
            return Outcome("failed", msg=exc.reason), {"unreachable": True, "msg": exc.reason}
        except CommandTimeout as exc:
            outcome = Outcome("failed", msg=f"timed out after {exc.timeout:g}s")
        except MachineroomError as exc:
            # include_vars' failures also say it under `message`, as Ansible's action does
            extra = {"message": str(exc)} if module.name == "include_vars" else {}
            message = str(exc) + origin_note(exc, task, state, play_state, run, scope)
            outcome = Outcome("failed", msg=message, result=extra)
        result = _result_of(outcome)
        if task.no_log:
            _register_no_log(module.name, args, result)
        result["module"] = module.name  # the recorder tells gathered facts from set_fact
        try:
            result = _apply_overrides(task, result, variables, run, where)
        except InputError as exc:  # changed_when/failed_when that cannot be evaluated
            result = {**result, "failed": True, "msg": str(exc)}
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
        other = delegate_state(play_state, target.delegate if target else None)
        if other is not None:
            store = other.registered if task.module == "set_fact" else other.facts
            store.update(mark_unsafe(dict(outcome.facts)))
        final = replace(final, facts={})
    return final, result


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


def _environment(
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


def _after(task: Task, state: HostState, outcome: Outcome, run: RunShared, status: str) -> None:
    """What a finished call changes on the host's state: facts, res, notified handlers.

    set_fact values rank with registered results (above play and role vars); gathered facts
    rank just above host vars, as in Ansible.
    """
    if outcome.facts and task.module == "include_vars":
        state.included.update(outcome.facts)  # from the controller: not marked unsafe
    elif outcome.facts:
        target = state.registered if task.module == "set_fact" else state.facts
        target.update(mark_unsafe(dict(outcome.facts)))
        if task.module not in ("set_fact", "facts"):  # getent_*, services, packages, ...
            # also under ansible_facts, without the ansible_ prefix, as Ansible keeps them
            namespace = dict(state.facts.get("ansible_facts") or {})
            namespace.update(
                {
                    k.removeprefix("ansible_"): v
                    for k, v in outcome.facts.items()
                    if k != "ansible_facts"
                }
            )
            state.facts["ansible_facts"] = mark_unsafe(namespace)
    if outcome.record:
        state.server_res.update(outcome.record)
    if status == "changed":
        for name in task.notify:
            if name not in state.notified:
                state.notified.append(name)


def _register(state: HostState, task: Task, result: Mapping[str, Any]) -> None:
    if task.register:
        state.registered[task.register] = dict(result)


def _holds(
    conditions: tuple[Any, ...], variables: dict[str, Any], run: RunShared, where: Where
) -> bool:
    return all(bool(run.templar.evaluate(c, variables, where)) for c in conditions)


def _extended(items: list[Any], index: int, control: Mapping[str, Any]) -> dict[str, Any]:
    """`loop_control: {extended: true}`: Ansible's `ansible_loop` for item `index`."""
    length = len(items)
    info: dict[str, Any] = {
        "index": index + 1,
        "index0": index,
        "first": index == 0,
        "last": index + 1 == length,
        "length": length,
        "revindex": length - index,
        "revindex0": length - index - 1,
    }
    if control.get("extended_allitems", True):
        info["allitems"] = items
    if index + 1 < length:
        info["nextitem"] = items[index + 1]
    if index > 0:
        info["previtem"] = items[index - 1]
    return info


def loop_items(
    task: Task, variables: dict[str, Any], run: RunShared, where: Where
) -> list[Any] | None:
    """The items of the task's `loop`/`with_NAME` on this host; None when it has no loop."""
    if task.loop is None:
        return None
    if task.loop_with is not None:
        # with_NAME: the value (templated, made a list) are the terms of lookup NAME
        if task.loop_with == "first_found":  # Ansible drops the undefined names there
            terms = _defined_only(task.loop, variables, run, where)
        else:
            terms = run.templar.render(task.loop, variables, where)
        if not isinstance(terms, list):
            terms = [terms]
        lookup_vars = {
            **variables,
            WITH_TERMS_VAR: terms,
            WITH_SUBDIR_VAR: with_subdir(task.module),
        }
        call = f"{{{{ query('{task.loop_with}', *{WITH_TERMS_VAR}) }}}}"
        return list(run.templar.render(call, lookup_vars, where))
    items = run.templar.render(task.loop, variables, where)
    if isinstance(items, dict):
        raise InputError(
            "loop needs a list, got a mapping (use `dict2items`)", where.location, "a list"
        )
    if not isinstance(items, list | tuple):
        raise InputError(
            f"loop needs a list, got {type(items).__name__}: {items!r}", where.location, "a list"
        )
    return list(items)


_DROPPED = object()


def _defined_only(value: Any, variables: dict[str, Any], run: RunShared, where: Where) -> Any:
    """`value` rendered, leaving out the list entries and mapping values that are undefined
    (`with_first_found: ["{{ ansible_distribution_release }}.yml", default.yml]`)."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (walk(n) for n in node) if v is not _DROPPED]
        if isinstance(node, dict):
            pairs = ((k, walk(v)) for k, v in node.items())
            return {k: v for k, v in pairs if v is not _DROPPED}
        try:
            return run.templar.render(node, variables, where)
        except TemplateError as exc:
            if exc.variable:
                return _DROPPED
            raise

    found = walk(value)
    return [] if found is _DROPPED else found


def _label(
    template: Any, item: Any, variables: dict[str, Any], run: RunShared, where: Where
) -> str:
    if template is None:
        return _text(item)[:200]
    return _text(run.templar.render(template, variables, where))[:200]


def _status_of(outcome: Outcome, result: Mapping[str, Any]) -> TaskStatus:
    if result.get("unreachable"):
        return "unreachable"
    if result.get("failed"):
        return "failed"
    if result.get("skipped"):
        return "skipped"
    return "changed" if result.get("changed") else "ok"


def _text(value: Any) -> str:
    if value is None:
        return ""
    # Within the database's limit, saying how many bytes are missing (and the connection's
    # count of what it did not keep), so the row is not cut again without the number.
    return cap_text(value if isinstance(value, str) else str(value), OUTPUT_CAP)


def _cap(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_text(v) if isinstance(v, str) else v) for k, v in result.items()}
