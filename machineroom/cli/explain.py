"""`machineroom explain VAR --host H`: a variable's value for a host and every layer that sets it.

What is shown, and from which layers: machineroom/runs/explain.py. This file parses the
options, prints each context's layers (the last one wins) and picks the exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import ExitCode

if TYPE_CHECKING:
    from machineroom.runs.explain import Explanation


@click.command("explain")
@click.argument("var")
@click.option("--host", "host_id", required=True, help="The host whose value to explain.")
@inventory_options
@click.option(
    "--playbook",
    type=click.Path(dir_okay=False),
    help="Include the vars of the plays (and their roles) that target the host.",
)
@click.option("--role", "role_name", help="With --playbook: explain as a task of this role.")
@click.option(
    "-e",
    "--extra-vars",
    "extra_vars",
    multiple=True,
    help="key=value, JSON, or @file.yml, as for apply; repeatable.",
)
def explain_command(
    var: str,
    host_id: str,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    playbook: str | None,
    role_name: str | None,
    extra_vars: tuple[str, ...],
) -> None:
    """Print VAR's value for a host and where each layer set it (the last one wins)."""
    from machineroom.runs.explain import explain_var

    if playbook is None and role_name:
        raise click.UsageError("--role needs --playbook")
    workspace = make_workspace(inventory_paths, state_path)
    found = False
    for explanation in explain_var(workspace, var, host_id, extra_vars, playbook, role_name):
        if explanation.title:
            click.echo(explanation.title)
        found = _print_explanation(var, explanation) or found
    if not found:
        click.echo(f"{var} is not set for {host_id} in any layer", err=True)
        raise SystemExit(ExitCode.ERROR)


def _print_explanation(var: str, explanation: Explanation) -> bool:
    """The winning value, its rendering, and every layer; False when no layer sets `var`."""
    winner = explanation.winner
    if winner is None:
        if explanation.title:
            click.echo("  not set")
        return False
    click.echo(f"{var} = {winner.value}    ({winner.layer}, {winner.where})")
    if explanation.rendered is not None:
        click.echo(f"  renders to: {explanation.rendered}")
    width = max(len(row.layer) for row in explanation.layers)
    for row in explanation.layers:
        mark = "*" if row is winner else " "
        click.echo(f"  {mark} {row.layer:<{width}}  {row.value}  {row.where}")
    return True
