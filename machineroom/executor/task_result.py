"""What a task leaves behind on its host: its events (start, loop items, end), its registered
result, and the facts, `res` keys and notified handlers its outcome brings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from machineroom.connection.output import cap_text
from machineroom.events import TaskFinished, TaskStarted, TaskStatus
from machineroom.executor.hoststate import HostState, RunShared
from machineroom.executor.variables import Scope
from machineroom.modules.base import Outcome
from machineroom.playbook.model import Task
from machineroom.templating import Where, mark_unsafe

# Result keys kept short in events: the console and the database need no more.
OUTPUT_CAP = 64 * 1024
NO_LOG = "(output hidden: no_log)"


class TaskReport:
    """The events of one task on one host, as it goes: started, each loop item, finished
    (with its duration); a no_log task's texts are hidden in every one of them."""

    def __init__(self, task: Task, state: HostState, scope: Scope, run: RunShared) -> None:
        self.task = task
        self.state = state
        self.scope = scope
        self.run = run
        self.started = time.monotonic()
        self.title = task.display_name  # run_task renders a templated name for this host

    def start(self) -> None:
        """The task begins on the host (after `when` allowed it)."""
        task = self.task
        self.run.bus.emit(
            TaskStarted(
                self.state.host.id,
                task.id,
                self.title,
                self.scope.stage,
                handler=self.scope.handler,
            )
        )

    def finish(self, status: TaskStatus, **fields: Any) -> TaskStatus:
        """The task's final event on the host; returns `status`."""
        task = self.task
        if task.no_log:
            fields = censored(fields)
        self.run.bus.emit(
            TaskFinished(
                host=self.state.host.id,
                task_id=task.id,
                task=self.title,
                stage=self.scope.stage,
                status=status,
                duration=time.monotonic() - self.started,
                location=str(task.location) if task.location else None,
                handler=self.scope.handler,
                **fields,
            )
        )
        return status

    def ignored(self, outcome: Outcome, result: Mapping[str, Any]) -> TaskStatus:
        """A failure the task ignores: recorded failed, and the host goes on (`ok`)."""
        self.finish(
            "failed",
            msg=outcome.msg,
            stdout=text_of(result.get("stdout")),
            stderr=text_of(result.get("stderr")),
            ignored=True,
            result=capped(result),
        )
        return "ok"

    def item(self, status: TaskStatus, label: str, msg: str = "", diff: str = "") -> None:
        """One loop item's event."""
        task = self.task
        if task.no_log:
            msg, diff, label = (NO_LOG if msg else ""), (NO_LOG if diff else ""), "(hidden)"
        self.run.bus.emit(
            TaskFinished(
                host=self.state.host.id,
                task_id=task.id,
                task=self.title,
                stage=self.scope.stage,
                status=status,
                msg=msg,
                diff=diff,
                item=label,
                handler=self.scope.handler,
            )
        )


def censored(fields: dict[str, Any]) -> dict[str, Any]:
    """A no_log task's event: its status stays, its text goes."""
    hidden = dict(fields)
    for key in ("msg", "stdout", "stderr", "diff"):
        if hidden.get(key):
            hidden[key] = NO_LOG
    result = hidden.get("result") or {}
    kept = {"engine": result["engine"]} if "engine" in result else {}  # what ran it: no secret
    hidden["result"] = {"censored": NO_LOG, **kept} if result else {}
    return hidden


def apply_outcome(
    task: Task, state: HostState, outcome: Outcome, run: RunShared, status: str
) -> None:
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


def register(state: HostState, task: Task, result: Mapping[str, Any]) -> None:
    """Keep `result` under the task's `register` name, when it has one."""
    if task.register:
        state.registered[task.register] = dict(result)


def holds(
    conditions: tuple[Any, ...], variables: dict[str, Any], run: RunShared, where: Where
) -> bool:
    """Whether every `when` condition is true with these variables."""
    return all(bool(run.templar.evaluate(c, variables, where)) for c in conditions)


def status_of(outcome: Outcome, result: Mapping[str, Any]) -> TaskStatus:
    """The status word of a module call's result (after changed_when/failed_when)."""
    if result.get("unreachable"):
        return "unreachable"
    if result.get("failed"):
        return "failed"
    if result.get("skipped"):
        return "skipped"
    return "changed" if result.get("changed") else "ok"


def text_of(value: Any) -> str:
    """A value as text for an event, capped (saying how much was left out)."""
    if value is None:
        return ""
    # Within the database's limit, saying how many bytes are missing (and the connection's
    # count of what it did not keep), so the row is not cut again without the number.
    return cap_text(value if isinstance(value, str) else str(value), OUTPUT_CAP)


def capped(result: Mapping[str, Any]) -> dict[str, Any]:
    """The result with each text value capped as `text_of` caps it."""
    return {k: (text_of(v) if isinstance(v, str) else v) for k, v in result.items()}
