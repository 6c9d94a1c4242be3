"""`machineroom facts PATTERN`: gather facts from hosts in parallel and store them."""

from __future__ import annotations

import json
import threading
from typing import Any

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
    each server's `res.facts`."""
    from machineroom.executor.adhoc import run_everywhere
    from machineroom.modules.base import CommandOutput, ModuleContext
    from machineroom.modules.facts import FactsModule

    workspace = make_workspace(inventory_paths, state_path)
    hosts = workspace.select(pattern)
    store = workspace.open_state()
    sync_servers(store, list(workspace.inventory.hosts.values()))
    run_id = store.start_run("facts", "machineroom facts " + pattern, args={"pattern": pattern})
    module = FactsModule()
    # every fact, and the docker and compose versions (a playbook asks for those itself)
    args = {"gather_subset": ["all", "docker"]}
    step = module.build(args, ModuleContext(host_id="*"))
    assert step is not None
    pool, _ = audited_pool(workspace, store, run_id, connect, label="(gather facts)")
    stop = threading.Event()
    try:
        outcomes = run_everywhere(
            hosts,
            step.script,
            pool,
            forks=connect.forks,
            timeout=connect.command_timeout,
            stop=stop,
        )
    finally:
        pool.close_all()
    gathered: dict[str, Any] = {}
    failures = 0
    for outcome in outcomes:
        host_id = outcome.host.id
        if outcome.result is None:
            failures += 1
            store.update_res(host_id, {"reachable": False, "last_error": outcome.error})
            click.secho(f"{host_id}: unreachable: {outcome.error}", fg="magenta", err=True)
            continue
        result = outcome.result
        facts = module.interpret(
            args,
            ModuleContext(host_id=host_id),
            CommandOutput(result.exit_code, result.stdout, result.stderr),
        )
        if facts.failed:
            failures += 1
            click.secho(f"{host_id}: {facts.msg}", fg="red", err=True)
            continue
        nested = dict(facts.facts.get("facts", facts.facts))
        gathered[host_id] = nested
        store.record_facts(host_id, nested, run_id)
        if not as_json:
            click.echo(f"{host_id:<20} {facts.msg}")
    summary: dict[str, Any] = {"hosts": len(hosts), "failed": failures}
    status = "ok" if not failures else "unreachable"
    if stop.is_set():
        status, summary["reason"] = "interrupted", stop_reason()
    with held():
        store.finish_run(run_id, status, summary)
    store.close()
    if as_json:
        click.echo(json.dumps(mask_data(gathered), indent=2, default=str))
    if stop.is_set():
        click.echo(stop_reason(), err=True)
        raise SystemExit(ExitCode.INTERRUPTED)
    if failures:
        raise SystemExit(ExitCode.UNREACHABLE)
