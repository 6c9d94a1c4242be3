"""`scan-docker PATTERN`: a one-task run of the `docker_containers` module, recorded as `apply`
runs are. The module's `record` puts each host's containers into its `res` (`containers`,
`containers_at`; `docker_error` when docker failed), which the state recorder writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from machineroom.report.docker import host_containers
from machineroom.runs.adhoc import in_host_order, run_builtin
from machineroom.runs.request import RunRequest, RunResult
from machineroom.runs.session import Subscriber

if TYPE_CHECKING:
    from machineroom.runs.workspace import Workspace

SCAN_LABEL = "(scan docker)"  # the run's label and the audit log's command


def scan_docker(
    request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber] = ()
) -> RunResult:
    """List the containers of the hosts matching the request's target, recorded; each
    host's list goes into its `res`. `data["hosts"]` maps each host to `host_containers`."""
    workspace.select(request.target)  # says which retired hosts are left out
    result, results, prepared = run_builtin(
        request, workspace, subscribers, module="docker_containers", args={}, label=SCAN_LABEL
    )
    hosts = {host: host_containers(event) for host, event in results.events.items()}
    return dataclasses.replace(result, data={"hosts": in_host_order(hosts, prepared.play_hosts)})
