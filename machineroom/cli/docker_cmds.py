"""`machineroom scan-docker PATTERN`: each host's containers and their state, kept in `res`.

A one-task run of the `docker_containers` module (machineroom/modules/docker_containers.py:
one `docker ps -a` per host, hosts in parallel); each host's list goes into its
`res.containers` with `res.containers_at`, which `machineroom ls` and `show` read.
"""

from __future__ import annotations

import json
import sys

import click

from machineroom.cli.context import connection_options, inventory_options, make_workspace
from machineroom.runs.connect import ConnectSettings


@click.command("scan-docker")
@click.argument("pattern", default="all")
@inventory_options
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print every host's containers as JSON.")
def scan_docker_command(
    pattern: str,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    connect: ConnectSettings,
    as_json: bool,
) -> None:
    """List the containers of the hosts matching PATTERN and their state (one remote command
    each), and keep each host's list in its `res.containers` (`res.containers_at`: when).
    Exit status 2 when docker failed on a host, 3 when a host was unreachable."""
    from machineroom.cli.apply import finish
    from machineroom.report.docker import ContainersReporter
    from machineroom.runs.docker import scan_docker
    from machineroom.runs.request import RunRequest

    workspace = make_workspace(inventory_paths, state_path)
    request = RunRequest(kind="scan-docker", target=pattern, connect=connect)
    reporters = [] if as_json else [ContainersReporter()]
    result = scan_docker(request, workspace, reporters)
    if as_json:
        click.echo(json.dumps(result.data.get("hosts", {}), indent=2, default=str))
    sys.exit(finish(result))
