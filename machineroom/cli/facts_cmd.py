"""`machineroom facts PATTERN`: gather facts from hosts in parallel and store them."""

from __future__ import annotations

import json
import sys

import click

from machineroom.cli.context import connection_options, inventory_options, make_workspace
from machineroom.runs.connect import ConnectSettings


@click.command("facts")
@click.argument("pattern", default="all")
@inventory_options
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print every host's facts as JSON.")
def facts_command(
    pattern: str,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    connect: ConnectSettings,
    as_json: bool,
) -> None:
    """Gather facts (OS, CPUs, memory, disks, docker, python) from the hosts matching
    PATTERN, one remote command each, and keep them in the database's facts history and in
    each server's `res.facts`. Exit status: 0 ok, 2 the facts failed on a host, 3 a host was
    unreachable, 99 interrupted."""
    from machineroom.cli.apply import finish
    from machineroom.report.adhoc import FactsReporter
    from machineroom.runs.adhoc import gather_facts
    from machineroom.runs.request import RunRequest

    workspace = make_workspace(inventory_paths, state_path)
    request = RunRequest(kind="facts", target=pattern, connect=connect)
    result = gather_facts(request, workspace, [FactsReporter(quiet=as_json)])
    if as_json:
        click.echo(json.dumps(result.data.get("facts", {}), indent=2, default=str))
    sys.exit(finish(result))
