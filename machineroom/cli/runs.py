"""Reading recorded runs back: `show RUN [--host H]` and `diff RUN1 RUN2`.

`show` without a run is `ls` (the MachineRoom document's `show` lists the servers), so the
command hands over to `ls` rather than keep a second copy of its table. The rows come from
runs/history.py, their text from report/run_page.py.
"""

from __future__ import annotations

import json
import sys

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import UsageError


@click.command("show")
@click.argument("run_id", type=int, required=False)
@inventory_options
@click.option("--host", "host_id", help="Only this host, with output and full messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--active", is_flag=True, help="Without RUN (as `ls`): leave retired servers out.")
@click.pass_context
def show_command(
    ctx: click.Context,
    run_id: int | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    host_id: str | None,
    as_json: bool,
    active: bool,
) -> None:
    """Show run RUN: its outcome, the recap, and every task's result per host.

    Without RUN, list the servers (the same as `ls`).
    """
    if run_id is None:
        if host_id is not None:
            raise UsageError("--host needs a run: machineroom show RUN --host HOST")
        from machineroom.cli.servers import ls_command

        ctx.invoke(
            ls_command,
            inventory_paths=inventory_paths,
            state_path=state_path,
            as_json=as_json,
            active=active,
        )
        return
    from machineroom.report.recap import use_color
    from machineroom.report.run_page import run_page
    from machineroom.runs.history import run_results

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    run, by_host = run_results(workspace, run_id, host_id)
    if as_json:
        doc = {"run": run.__dict__, "hosts": by_host}
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    for block in run_page(run, by_host, host_id, color=use_color(sys.stdout)):
        click.echo(block)


@click.command("diff")
@click.argument("run1", type=int)
@click.argument("run2", type=int)
@inventory_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def diff_command(
    run1: int,
    run2: int,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    as_json: bool,
) -> None:
    """What differs between two runs' task results: per host, tasks whose status or message
    changed, tasks only in one run, and hosts only in one run."""
    from machineroom.report.recap import use_color
    from machineroom.report.run_page import diff_page
    from machineroom.runs.history import two_runs

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    first, second, result = two_runs(workspace, run1, run2)
    if as_json:
        doc = {"run1": first.id, "run2": second.id, **result}
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    for block in diff_page(first, second, result, color=use_color(sys.stdout)):
        click.echo(block)
