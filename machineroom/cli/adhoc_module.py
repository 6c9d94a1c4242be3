"""`machineroom run PATTERN -m MODULE -a ARGS`: one module on many hosts, as `ansible` does.

The module call is a one-task play (no fact gathering) loaded and validated like any
playbook, so arguments are read as in a playbook (`key=value` converted by type, aliases,
free-form `command`/`shell`), then run and recorded as `apply` runs are. Each host's result is
printed as ansible's ad-hoc output prints it: `h1 | SUCCESS => {...}`, `h1 | CHANGED | rc=0 >>`
and the output for command, shell and raw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.workspace import Workspace


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
    from machineroom.report.adhoc_module import AdhocReporter
    from machineroom.runs.adhoc import run_module as run_on_hosts
    from machineroom.runs.one_task import TASK_NAME
    from machineroom.runs.request import RunRequest

    request = RunRequest(
        kind="run",
        target=pattern,
        module=module,
        module_args=args,
        become=become,
        become_user=become_user,
        check=check,
        diff=diff,
        extra_vars=tuple(extra_vars),
        connect=connect,
    )
    reporter: Any = (
        make_reporter(as_json=True, verbosity=0, diff=diff)
        if as_json
        else AdhocReporter(module, TASK_NAME)
    )
    result = run_on_hosts(request, workspace, [reporter])
    if result is None:
        click.echo(f"warning: no hosts matched '{pattern}': nothing to do", err=True)
        return 0
    return finish(result)
