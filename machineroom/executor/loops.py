"""A task's loop on one host: its items (`loop`, `with_NAME` through its lookup), the
`loop_control` (loop_var, index_var, label, pause, extended), one module call and one event
per item, and the summary result `register` keeps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from machineroom.errors import InputError
from machineroom.events import TaskStatus
from machineroom.executor.hoststate import RunShared
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
from machineroom.lookups import WITH_SUBDIR_VAR, with_subdir
from machineroom.playbook.model import Task
from machineroom.templating import TemplateError, Where, mark_unsafe

# `with_NAME`'s terms, handed to the lookup through a variable (not pasted into the template
# text, where a term would be read as Jinja); dunder so no playbook variable can collide.
WITH_TERMS_VAR = "__mr_with_terms__"


def run_loop(
    call: TaskCall,
    items: list[Any],
    base_vars: dict[str, Any],
    conditions: tuple[Any, ...],
    where: Where,
    report: TaskReport,
) -> TaskStatus:
    """Run the task once per item (each item's `when` first); return the task's status."""
    task, state, run = call.task, call.state, call.run
    if not items:
        register(
            state,
            task,
            {"changed": False, "skipped": True, "skipped_reason": "No items in the list"}
            | {"results": []},
        )
        return report.finish("skipped", msg="No items in the list")
    try:
        # the label is rendered per item, with it; the rest once for the task
        control = run.templar.render(
            {k: v for k, v in task.loop_control.items() if k != "label"}, base_vars, where
        )
    except InputError as exc:
        return report.finish("failed", msg=str(exc))
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
            if not holds(conditions, item_vars, run, where):
                results.append({"item": item, "skipped": True, "changed": False})
                statuses.append("skipped")
                report.item("skipped", label, "condition false")
                continue
        except InputError as exc:
            return report.finish("failed", msg=str(exc))
        outcome, result = call_module(call, item_vars, where)
        status = status_of(outcome, result)
        if status == "unreachable":
            state.unreachable = True
            state.reason = outcome.msg
            return report.finish("unreachable", msg=outcome.msg)
        result = {**result, "item": item, loop_var: item}
        results.append(result)
        statuses.append(status)
        record.update(outcome.record)
        if outcome.diff:
            diffs.append(outcome.diff)
        apply_outcome(task, state, outcome, run, status)
        if outcome.facts and task.module in ("set_fact", "include_vars"):
            # the next item sees this item's facts: `x: "{{ x + [item] }}"` accumulates
            base_vars = {**base_vars, **mark_unsafe(dict(outcome.facts))}
        report.item(status, label, outcome.msg, outcome.diff)
    return _summary(call, results, statuses, record, diffs, report)


def _summary(
    call: TaskCall,
    results: list[dict[str, Any]],
    statuses: list[TaskStatus],
    record: dict[str, Any],
    diffs: list[str],
    report: TaskReport,
) -> TaskStatus:
    """The loop's registered summary and final event: failed if an item failed, changed if
    one changed, skipped if all were."""
    changed = "changed" in statuses
    failed = "failed" in statuses
    summary = {
        "changed": changed,
        "failed": failed,
        "results": results,
        "msg": "one or more items failed" if failed else "all items completed",
        "skipped": bool(statuses) and all(s == "skipped" for s in statuses),
    }
    register(call.state, call.task, summary)
    loop_status: TaskStatus = (
        "failed" if failed else "changed" if changed else "skipped" if summary["skipped"] else "ok"
    )
    if failed and (call.task.ignore_errors or call.scope.ignore_errors):
        report.finish("failed", msg=str(summary["msg"]), ignored=True, diff="\n".join(diffs))
        return "ok"  # an ignored failure lets the host go on
    return report.finish(
        loop_status,
        msg=str(summary["msg"]),
        diff="\n".join(diffs),
        record=record,
        result=capped({"results": [capped(r) for r in results]}),
    )


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
        return text_of(item)[:200]
    return text_of(run.templar.render(template, variables, where))[:200]
