"""`machineroom scan-docker PATTERN`: each host's containers and their state, kept in `res`.

One remote command per host (`docker ps -a` with a JSON line per container, a Go template
every docker client since 1.13 understands); the hosts run in parallel. Each host's list goes
into its `res.containers` with `res.containers_at`, which `machineroom ls` and `show` read.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.context import (
    audited_pool,
    connection_options,
    inventory_options,
    make_workspace,
)
from machineroom.errors import ExitCode
from machineroom.masking import mask_data
from machineroom.runs.connect import ConnectSettings
from machineroom.runs.stops import held, stop_reason
from machineroom.runs.workspace import sync_servers

if TYPE_CHECKING:
    pass

MARK = "__mr__"
# No docker: a marker, not a failure; a daemon that does not answer: exit 3 with its message.
SCAN_SCRIPT = f"""\
if ! command -v docker >/dev/null 2>&1; then echo '{MARK} no-docker'; exit 0; fi
docker ps -a --no-trunc --format '{{{{json .}}}}' || exit 3
"""

# `docker ps` JSON fields -> our keys
_FIELDS = {
    "Names": "name",
    "Image": "image",
    "State": "state",
    "Status": "status",
    "CreatedAt": "created",
    "Ports": "ports",
}


def parse_containers(stdout: str) -> list[dict[str, Any]] | None:
    """`docker ps` JSON lines as a list of containers (None: docker is not installed)."""
    containers: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if line == f"{MARK} no-docker":
            return None
        if not line.startswith("{"):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        item: dict[str, Any] = {key: raw.get(field, "") for field, key in _FIELDS.items()}
        item["id"] = str(raw.get("ID", ""))[:12]
        if not item["state"]:  # clients before 20.10 have no State: derive it from Status
            status = str(item["status"]).lower()
            item["state"] = "running" if status.startswith("up") else status.split(" ")[0]
        labels = _labels(str(raw.get("Labels", "")))
        if "com.docker.compose.project" in labels:
            item["project"] = labels["com.docker.compose.project"]
            item["service"] = labels.get("com.docker.compose.service", "")
        containers.append(item)
    return sorted(containers, key=lambda c: str(c["name"]))


def _labels(text: str) -> dict[str, str]:
    """`a=1,b=2` (docker ps' Labels column) as a dict."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if eq:
            out[key.strip()] = value
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    from machineroom.executor.adhoc import run_everywhere

    workspace = make_workspace(inventory_paths, state_path)
    hosts = workspace.select(pattern)
    store = workspace.open_state()
    sync_servers(store, list(workspace.inventory.hosts.values()))
    run_id = store.start_run(
        "scan-docker", "machineroom scan-docker " + pattern, args={"pattern": pattern}
    )
    pool, _ = audited_pool(workspace, store, run_id, connect, label="(scan docker)")
    stop = threading.Event()  # set on Ctrl-C, SIGTERM, SIGHUP (see runs/stops.py)
    try:
        outcomes = run_everywhere(
            hosts,
            SCAN_SCRIPT,
            pool,
            forks=connect.forks,
            timeout=connect.command_timeout,
            stop=stop,
        )
    finally:
        pool.close_all()
    everything: dict[str, Any] = {}
    unreachable = failed = 0
    for outcome in outcomes:
        host_id = outcome.host.id
        result = outcome.result
        if result is None:
            unreachable += 1
            store.update_res(host_id, {"reachable": False, "last_error": outcome.error})
            everything[host_id] = {"error": outcome.error, "unreachable": True}
            if not as_json:
                click.secho(f"{host_id}: unreachable: {outcome.error}", fg="magenta", err=True)
            continue
        containers = parse_containers(result.stdout) if result.exit_code == 0 else []
        if result.exit_code != 0:
            failed += 1
            lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
            error = lines[-1] if lines else f"docker ps: exit {result.exit_code}"
            store.update_res(host_id, {"reachable": True, "docker_error": error})
            everything[host_id] = {"error": error}
            if not as_json:
                click.secho(f"{host_id}: {error}", fg="red", err=True)
            continue
        at = _now()
        store.update_res(
            host_id,
            {"reachable": True, "last_seen": at, "containers": containers, "containers_at": at},
        )
        everything[host_id] = {"containers": containers, "docker": containers is not None}
        if not as_json:
            _print_host(host_id, containers)
    status = "unreachable" if unreachable else "failed" if failed else "ok"
    summary: dict[str, Any] = {"hosts": len(hosts), "failed": failed, "unreachable": unreachable}
    if stop.is_set():
        status, summary["reason"] = "interrupted", stop_reason()
    with held():
        store.finish_run(run_id, status, summary)
    store.close()
    if as_json:
        click.echo(json.dumps(mask_data(everything), indent=2, default=str))
    if stop.is_set():
        click.echo(stop_reason(), err=True)
        sys.exit(ExitCode.INTERRUPTED)
    if unreachable:
        sys.exit(ExitCode.UNREACHABLE)
    if failed:
        sys.exit(ExitCode.HOSTS_FAILED)


def _print_host(host_id: str, containers: list[dict[str, Any]] | None) -> None:
    if containers is None:
        click.echo(f"{host_id}: docker is not installed")
        return
    running = sum(c["state"] == "running" for c in containers)
    click.echo(f"{host_id}: {len(containers)} container(s), {running} running")
    colours = {"running": "green", "exited": "red", "dead": "red", "restarting": "yellow"}
    for c in containers:
        state = click.style(f"{c['state']:<10}", fg=colours.get(str(c["state"])))
        click.echo(f"  {c['name']:<30} {state} {c['image']:<30} {c['status']}")
