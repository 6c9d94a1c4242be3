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
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from machineroom.errors import InputError, InputErrors, UsageError
from machineroom.events import Event, TaskFinished
from machineroom.masking import mask

if TYPE_CHECKING:
    from machineroom.cli.context import Workspace

NO_JSON_MODULES = frozenset({"command", "shell", "raw"})
TASK_NAME = "adhoc"


def adhoc_playbook_text(pattern: str, module: str, args: str | None, become: bool) -> str:
    """The one-task playbook (JSON, which YAML reads) running `module` with `args`."""
    value: Any = {}
    if args:
        text = args.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UsageError(f"-a: not valid JSON: {exc}") from None
        else:
            value = args
    play: dict[str, Any] = {
        "hosts": pattern,
        "gather_facts": False,
        "tasks": [{"name": TASK_NAME, module: value}],
    }
    if become:
        play["become"] = True
    return json.dumps([play], indent=2) + "\n"


def _reworded(error: InputError, path: str, module: str) -> InputError:
    message = str(error).replace(path, f"-m {module}")
    message = message.replace(f'task "{TASK_NAME}" ', "").replace(f"task '{TASK_NAME}' ", "")
    return InputError(message)


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


def temp_folder() -> tempfile.TemporaryDirectory[str]:
    """A private folder for the one-task playbook file."""
    return tempfile.TemporaryDirectory(prefix="machineroom-adhoc-")


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
    forks: int,
    connect: dict[str, Any],
) -> int:
    """Run `module` on the hosts matching `pattern` as a recorded one-task run; the exit code."""
    import dataclasses

    from machineroom.cli.apply import execute, prepare
    from machineroom.executor.hoststate import RunOptions

    with temp_folder() as folder:
        path = Path(folder) / "adhoc.yml"
        path.write_text(adhoc_playbook_text(pattern, module, args, become))
        try:
            prepared = prepare(workspace, str(path), None, frozenset(), extra_vars)
        except InputErrors as exc:
            raise InputErrors([_reworded(e, str(path), module) for e in exc.errors]) from None
        except InputError as exc:
            raise _reworded(exc, str(path), module) from None
    if become and become_user:
        plays = tuple(
            dataclasses.replace(p, become_user=become_user) for p in prepared.playbook.plays
        )
        prepared.playbook = dataclasses.replace(prepared.playbook, plays=plays)
    prepared.playbook_dir = str(Path.cwd())  # `copy src=x`: relative to where it was typed
    if not any(prepared.play_hosts):
        click.echo(f"warning: no hosts matched '{pattern}': nothing to do", err=True)
        return 0
    store = workspace.open_state()
    store.mark_interrupted_runs()
    reporter = None if as_json else AdhocReporter(module)
    try:
        code, _ = execute(
            workspace,
            store,
            prepared,
            kind="run",
            playbook_label=f"-m {module}",
            args={"pattern": pattern, "module": module, "args": args, "check": check},
            run_options=RunOptions(
                check=check,
                diff=diff,
                forks=forks,
                extra_vars=prepared.extra_vars,
                extra_var_sources=prepared.extra_sources,
            ),
            connect=connect,
            as_json=as_json,
            reporter=reporter,
        )
    finally:
        store.close()
    return code
