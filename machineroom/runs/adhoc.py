"""`run PATTERN -- COMMAND` and `facts PATTERN`: one-task runs, recorded as `apply` runs are.

`run -- COMMAND` is a play of one `raw` task: the command as typed (never rendered as a
template), through the login shell, with the play's become for `-b`. `facts` is a play of one
`facts` task gathering everything and the docker versions; the state recorder keeps the facts
(history and `res.facts`) from its TaskFinished event. Both leave a run row, one task row per
host, the audit log and each host's reachability, as any run does. What each host gave back
is in the RunResult's `data`, for `--json`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from machineroom.events import Event, TaskFinished
from machineroom.report.adhoc import command_outcome
from machineroom.runs.one_task import TASK_NAME, prepare_one_task, run_one_task
from machineroom.runs.request import RunRequest, RunResult
from machineroom.runs.session import RunRecord, Subscriber

if TYPE_CHECKING:
    from machineroom.runs.prepare import Prepared
    from machineroom.runs.workspace import Workspace

# every fact, and the docker and compose versions (a playbook asks for those itself)
FACTS_ARGS = {"gather_subset": ["all", "docker"]}
FACTS_LABEL = "(gather facts)"  # the run's label and the audit log's command


class TaskResults:
    """An event subscriber keeping the one task's final event on each host (not loop items),
    in the order hosts finish."""

    def __init__(self) -> None:
        self.events: dict[str, TaskFinished] = {}

    def __call__(self, event: Event) -> None:
        """Keep a host's TaskFinished of the one task."""
        if isinstance(event, TaskFinished) and event.item is None and event.task == TASK_NAME:
            self.events[event.host] = event


def run_command(
    request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber] = ()
) -> RunResult:
    """Run the request's `command` on the hosts matching its target, recorded; `data["hosts"]`
    maps each host that finished to its `command_outcome`."""
    if not request.command:
        raise ValueError("run_command: the request has no command")
    workspace.select(request.target)  # says which retired hosts are left out
    prepared = prepare_one_task(
        workspace,
        request.target,
        "raw",
        {"cmd": request.command},
        become=request.become,
        become_user=request.become_user,
        literal=True,
    )
    # The command reads no variable: the inventory's vault values stay closed (and are not
    # masked in its output, where a shell on the host would show them too).
    prepared.vault_in_vars = False
    results = TaskResults()
    record = RunRecord(
        kind="run",
        label="(command)",
        args={"pattern": request.target, "command": request.command},
        trigger=request.trigger,
        command_line=request.command_line,
    )
    result = run_one_task(workspace, prepared, record, request.connect, [results, *subscribers])
    hosts = {host: command_outcome(event) for host, event in results.events.items()}
    return dataclasses.replace(result, data={"hosts": in_host_order(hosts, prepared.play_hosts)})


def run_module(
    request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber] = ()
) -> RunResult | None:
    """Run the request's `module` with its `module_args` (`-a`: k=v or JSON) on the hosts
    matching its target, as `ansible` does, recorded; None when no host matched."""
    from machineroom.runs.one_task import module_args

    module = request.module or "command"
    prepared = prepare_one_task(
        workspace,
        request.target,
        module,
        module_args(request.module_args),
        become=request.become,
        become_user=request.become_user,
        extra_vars=request.extra_vars,
    )
    if not any(prepared.play_hosts):
        return None
    record = RunRecord(
        kind="run",
        label=f"-m {module}",
        args={
            "pattern": request.target,
            "module": module,
            "args": request.module_args,
            "check": request.check,
        },
        trigger=request.trigger,
        command_line=request.command_line,
    )
    return run_one_task(
        workspace,
        prepared,
        record,
        request.connect,
        subscribers,
        check=request.check,
        diff=request.diff,
    )


def gather_facts(
    request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber] = ()
) -> RunResult:
    """Gather every fact from the hosts matching the request's target, recorded (the facts
    history and `res.facts`); `data["facts"]` maps each host gathered to its nested facts.
    A host whose facts script failed is failed, not unreachable."""
    workspace.select(request.target)  # says which retired hosts are left out
    args: dict[str, Any] = dict(FACTS_ARGS)
    timeout = request.connect.command_timeout
    if timeout:  # `--timeout` bounds the facts script too (the module's own default: 60 s)
        args["gather_timeout"] = max(1, math.ceil(timeout))
    result, results, prepared = run_builtin(
        request, workspace, subscribers, module="facts", args=args, label=FACTS_LABEL
    )
    gathered = {
        host: dict(event.result.get("facts") or {})
        for host, event in results.events.items()
        if event.status in ("ok", "changed")
    }
    return dataclasses.replace(result, data={"facts": in_host_order(gathered, prepared.play_hosts)})


def run_builtin(
    request: RunRequest,
    workspace: Workspace,
    subscribers: Sequence[Subscriber],
    *,
    module: str,
    args: dict[str, Any],
    label: str,
) -> tuple[RunResult, TaskResults, Prepared]:
    """A built-in one-task run of the request's kind (facts, scan-docker): `module` with
    `args` on the hosts matching the request's target, its run and audit rows labelled
    `label`; the result, each host's final event and the prepared play."""
    prepared = prepare_one_task(workspace, request.target, module, args)
    results = TaskResults()
    record = RunRecord(
        kind=request.kind,
        label=label,
        args={"pattern": request.target},
        trigger=request.trigger,
        command_line=request.command_line,
    )
    result = run_one_task(
        workspace, prepared, record, request.connect, [results, *subscribers], audit_label=label
    )
    return result, results, prepared


def in_host_order(by_host: dict[str, Any], play_hosts: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """`by_host` in the inventory order of the play's hosts (not the order they finished)."""
    order = [host.id for hosts in play_hosts for host in hosts]
    return {h: by_host[h] for h in order if h in by_host}
