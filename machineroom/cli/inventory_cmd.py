"""`machineroom inventory --list | --graph [GROUP] | --host HOST`: what ansible-inventory prints.

The views themselves (ansible-inventory's JSON, its group tree, one host's variables under
Ansible's names): machineroom/runs/inventory_view.py. This file parses and prints.
"""

from __future__ import annotations

import json
from typing import Any

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import UsageError


def _dump(data: Any) -> str:
    return json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False, default=str)


@click.command("inventory")
@click.argument("group", required=False)
@inventory_options
@click.option("--list", "as_list", is_flag=True, help="Every group and host, as JSON.")
@click.option("--graph", is_flag=True, help="The group tree under GROUP (default all).")
@click.option("--host", "host_id", metavar="HOST", help="One host's variables, as JSON.")
@click.option("--vars", "show_vars", is_flag=True, help="With --graph: show variables.")
def inventory_command(
    group: str | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    as_list: bool,
    graph: bool,
    host_id: str | None,
    show_vars: bool,
) -> None:
    """Show the inventory as ansible-inventory does: --list, --graph [GROUP], --host HOST."""
    from machineroom.runs.inventory_view import graph_inventory, list_inventory, one_host_vars

    if sum((as_list, graph, host_id is not None)) != 1:
        raise UsageError("give one of --list, --graph [GROUP] or --host HOST")
    if group and not graph:
        raise UsageError(f"'{group}': a group goes with --graph")
    inventory = make_workspace(inventory_paths, state_path).inventory
    if as_list:
        click.echo(_dump(list_inventory(inventory)))
    elif graph:
        click.echo("\n".join(graph_inventory(inventory, group or "all", show_vars)))
    else:
        click.echo(_dump(one_host_vars(inventory, str(host_id))))
