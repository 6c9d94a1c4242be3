"""`machineroom run PATTERN -m MODULE -a ARGS`: one module on many hosts, as `ansible` does.

The module call is a one-task play (no fact gathering) loaded and validated like any
playbook, so arguments are read as in a playbook (`key=value` converted by type, aliases,
free-form `command`/`shell`), then run and recorded as `apply` runs are. Each host's result is
printed as ansible's ad-hoc output prints it: `h1 | SUCCESS => {...}`, `h1 | CHANGED | rc=0 >>`
and the output for command, shell and raw.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

import click

from machineroom.events import Event, TaskFinished
from machineroom.masking import mask
from machineroom.runs.one_task import TASK_NAME

if TYPE_CHECKING:
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.workspace import Workspace

NO_JSON_MODULES = frozenset({"command", "shell", "raw"})


class AdhocReporter:
    """Prints each host's result in ansible's ad-hoc layout as it arrives."""

    def __init__(self, module: str, out: TextIO | None = None) -> None:
        self.module = module
        self.out = out or sys.stdout
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}

    def __call__(self, event: Event) -> None:
        """Print a host's line when the module finished there (or could not reach it)."""
        if isinstance(event, TaskFinished) and event.item is None and event.task == TASK_NAME:
            self.counts[event.status] = self.counts.get(event.status, 0) + 1
            self._print(event.host, event.status, dict(event.result), event.msg)

    def _print(self, host: str, status: str, result: dict[str, Any], msg: str) -> None:
        if status == "unreachable":
            body = {"changed": False, "msg": msg or result.get("msg", ""), "unreachable": True}
            self._echo(f"{host} | UNREACHABLE! => {_dump(body)}", "magenta")
            return
        if status == "skipped":
            self._echo(f"{host} | SKIPPED", "cyan")
            return
        result.setdefault("changed", status == "changed")
        if status == "failed":
            result.setdefault("msg", msg)
            if self.module in NO_JSON_MODULES:
                self._echo(_command_text(host, result, "FAILED"), "red")
            else:
                result["failed"] = True
                self._echo(f"{host} | FAILED! => {_dump(result)}", "red")
            return
        state, colour = ("CHANGED", "yellow") if status == "changed" else ("SUCCESS", "green")
        if self.module in NO_JSON_MODULES:
            self._echo(_command_text(host, result, state), colour)
        else:
            self._echo(f"{host} | {state} => {_dump(result)}", colour)

    def _echo(self, text: str, colour: str) -> None:
        click.secho(mask(text), fg=colour, file=self.out)

    def close(self) -> None:
        """Nothing to flush: every line is printed as it comes."""


# bookkeeping of ours in a registered result that ansible's ad-hoc output does not show
HIDDEN_KEYS = frozenset({"invocation", "module", "attempts"})


def _dump(result: dict[str, Any]) -> str:
    shown = {k: v for k, v in result.items() if not k.startswith("_") and k not in HIDDEN_KEYS}
    if shown.get("failed") is False:
        del shown["failed"]
    return json.dumps(shown, indent=4, sort_keys=True, default=str)


def _command_text(host: str, result: dict[str, Any], caption: str) -> str:
    """ansible's `host | CHANGED | rc=0 >>` then stdout, stderr and msg."""
    text = f"{host} | {caption} | rc={result.get('rc', -1)} >>\n"
    for key in ("stdout", "stderr", "msg"):
        text += str(result.get(key) or "")
    return text


def run_module(
    workspace: Workspace,
    pattern: str,
    module: str,
    args: str | None,
    *,
    become: bool,
    become_user: str,
    check: bool,
    diff: bool,
    extra_vars: tuple[str, ...],
    as_json: bool,
    connect: ConnectSettings,
) -> int:
    """Run `module` on the hosts matching `pattern` as a recorded one-task run; the exit code."""
    from machineroom.cli.apply import finish
    from machineroom.report import make_reporter
    from machineroom.runs.one_task import module_args, prepare_one_task, run_one_task
    from machineroom.runs.session import RunRecord

    prepared = prepare_one_task(
        workspace,
        pattern,
        module,
        module_args(args),
        become=become,
        become_user=become_user,
        extra_vars=extra_vars,
    )
    if not any(prepared.play_hosts):
        click.echo(f"warning: no hosts matched '{pattern}': nothing to do", err=True)
        return 0
    reporter: Any = (
        make_reporter(as_json=True, verbosity=0, diff=diff) if as_json else AdhocReporter(module)
    )
    record = RunRecord(
        kind="run",
        label=f"-m {module}",
        args={"pattern": pattern, "module": module, "args": args, "check": check},
    )
    result = run_one_task(workspace, prepared, record, connect, [reporter], check=check, diff=diff)
    return finish(result)
