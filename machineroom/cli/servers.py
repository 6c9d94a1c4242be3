"""Commands about the server list itself: ls, import, retire, forget, validate, history."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import ExitCode
from machineroom.runs.servers import installed_stages

if TYPE_CHECKING:
    from collections.abc import Callable

    from machineroom.runs.validate import Finding
    from machineroom.runs.workspace import Workspace
    from machineroom.state import ServerRow, StateStore


def status_of(row: ServerRow) -> tuple[str, str]:
    """A one-word status and its colour: retired, reachable, unreachable or new."""
    if row.res.get("retired"):
        return "retired", "bright_black"
    reachable = row.res.get("reachable")
    if reachable is True:
        return "reachable", "green"
    if reachable is False:
        return "unreachable", "red"
    return "new", "yellow"


SYMBOLS = {"reachable": "●", "unreachable": "✗", "retired": "-", "new": "?"}


def _ago(stamp: str | None) -> str:
    if not stamp:
        return "never"
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


@click.command("ls")
@inventory_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--active", is_flag=True, help="Leave retired servers out.")
def ls_command(
    inventory_paths: tuple[str, ...], state_path: str | None, as_json: bool, active: bool
) -> None:
    """List every server with its status (aliases: show, list, tell).

    Hosts of the inventory not yet in the database are added first, so the list is complete.
    """
    from machineroom.runs.servers import server_rows

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    rows = server_rows(workspace, active_only=active)
    if as_json:
        click.echo(json.dumps([_row_json(r) for r in rows], indent=2))
        return
    if not rows:
        click.echo("no servers yet: `machineroom import FILE` adds them")
        return
    header = ("", "ID", "ADDRESS", "USER", "STATUS", "LAST SEEN", "INSTALLED", "PENDING")
    table = [header]
    colours = [""]
    for row in rows:
        status, colour = status_of(row)
        pending = row.next_action.get("stage") or ", ".join(sorted(row.next_action)) or ""
        table.append(
            (
                SYMBOLS[status],
                row.id,
                f"{row.host}:{row.port}",
                row.user,
                status,
                _ago(row.res.get("last_seen")),
                ",".join(installed_stages(row.res)) or "-",
                str(pending) or "",
            )
        )
        colours.append(colour)
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line, colour in zip(table, colours, strict=True):
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        click.secho(text.rstrip(), fg=colour or None, bold=not colour)


def _row_json(row: ServerRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "host": row.host,
        "user": row.user,
        "pass": row.pass_ref,
        "port": row.port,
        "description": row.description,
        "status": status_of(row)[0],
        "res": row.res,
        "next_action": row.next_action,
    }


@click.command("import")
@click.argument("file", type=click.Path(exists=True))
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False),
    envvar="MACHINEROOM_STATE",
    help="State database file [default: .machineroom/state.db in the file's repo].",
)
@click.option(
    "--emit-yaml",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Also write the servers as a YAML inventory to this file ('-' for stdout).",
)
@click.option(
    "--emit-serverlist",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Also write them in the server-list text format.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Forget every host of the database that FILE does not list (as `forget` does).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="With --prune: print the hosts it would forget; change nothing.",
)
def import_command(
    file: str,
    state_path: str | None,
    emit_yaml: str | None,
    emit_serverlist: str | None,
    prune: bool,
    dry_run: bool,
) -> None:
    """Load FILE (server list, YAML or INI inventory) into the database (aliases: update_file,
    update_conf, updateconfig).

    Passwords are never stored: the `pass` column keeps only `env:NAME` or `vault` references.
    """
    from machineroom.runs.servers import forgotten_line, import_servers, render_inventory

    if dry_run and not prune:
        raise click.UsageError("--dry-run goes with --prune")
    workspace = make_workspace((file,), state_path)
    inventory, forgotten = import_servers(
        workspace, file, prune, dry_run=dry_run, before_forget=_alerts_resolver(workspace)
    )
    if dry_run:
        for item in forgotten:
            click.echo(forgotten_line(item, dry_run=True) + f" [not in {file}]")
        click.echo(f"would prune {len(forgotten)} host(s) not in {file}; nothing changed")
        return
    for warning in inventory.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(f"imported {len(inventory.hosts)} server(s) into {workspace.state_path}", err=True)
    if prune:
        for item in forgotten:
            click.echo(forgotten_line(item) + f" [not in {file}]", err=True)
        click.echo(f"pruned {len(forgotten)} host(s) not in {file}", err=True)
    if emit_yaml:
        _write_text(emit_yaml, render_inventory(inventory, "yaml"))
    if emit_serverlist:
        _write_text(emit_serverlist, render_inventory(inventory, "serverlist"))


def _write_text(target: str, text: str) -> None:
    if target == "-":
        click.echo(text, nl=False)
        return
    path = Path(target)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: no half-written inventory
    click.echo(f"wrote {target}", err=True)


@click.command("retire")
@click.argument("server_ids", nargs=-1, required=True)
@inventory_options
@click.option("--undo", is_flag=True, help="Bring retired servers back.")
def retire_command(
    server_ids: tuple[str, ...],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    undo: bool,
) -> None:
    """Mark servers retired: every later command skips them, and `ls` shows them so."""
    from machineroom.runs.servers import retire_servers

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    for line in retire_servers(workspace, server_ids, undo):
        click.echo(line)


@click.command("forget")
@click.argument("server_ids", nargs=-1, required=True)
@inventory_options
@click.option("--dry-run", is_flag=True, help="Print what would be forgotten; change nothing.")
def forget_command(
    server_ids: tuple[str, ...],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    dry_run: bool,
) -> None:
    """Remove hosts from the state database: their server row, pending apply, facts, metrics
    and alerts (open ones resolved first, their notifiers told), all or nothing. Their run
    history stays. A host still in the inventory is refused (the next command would add it
    back)."""
    from machineroom.runs.servers import forget_servers, forgotten_line

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    forgotten = forget_servers(
        workspace, server_ids, dry_run=dry_run, before_forget=_alerts_resolver(workspace)
    )
    for item in forgotten:
        click.echo(forgotten_line(item, dry_run=dry_run))
    if dry_run:
        click.echo("nothing changed (--dry-run)")


def _alerts_resolver(workspace: Workspace) -> Callable[[StateStore, list[str]], None]:
    """Resolves the open alerts of hosts about to be forgotten, notifying as alerts.yml
    says (fleet/forget_alerts.py); each resolution printed on stderr."""

    def resolve(store: StateStore, host_ids: list[str]) -> None:
        from machineroom.fleet.forget_alerts import resolve_forgotten_alerts

        for change in resolve_forgotten_alerts(store, workspace.inventory_paths, host_ids):
            line = f"{change.host_id}: alert {change.rule} resolved (host forgotten)"
            for problem in change.notify_errors:
                line += f"; notify: {problem}"
            click.echo(line, err=True)

    return resolve


@click.command("validate")
@click.argument("playbooks", nargs=-1, type=click.Path(dir_okay=False))
@inventory_options
@click.option(
    "--strict",
    is_flag=True,
    help="Treat warnings as errors: plaintext passwords in the inventory, and tasks "
    "machineroom cannot run that sit behind a condition in a PLAYBOOK.",
)
def validate_command(
    playbooks: tuple[str, ...],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    strict: bool,
) -> None:
    """Check the inventory and each PLAYBOOK without connecting: errors name file and line;
    exit 4 when invalid (with --strict, also when there are warnings)."""
    from machineroom.errors import UsageError
    from machineroom.fleet.validate import validate_fleet_files
    from machineroom.runs.validate import validate_inventory, validate_playbook

    findings: list[Finding] = []
    try:
        workspace = make_workspace(inventory_paths, state_path)
    except UsageError:
        if not playbooks or inventory_paths:
            raise
        workspace = None  # a playbook alone: no inventory here to check
    if workspace is not None:
        findings += _print_findings(validate_inventory(workspace))
        for line in validate_fleet_files(workspace.inventory_paths, workspace.inventory):
            click.echo(line)
    for playbook in playbooks:
        if workspace is not None:  # the playbook's group_vars/ and host_vars/, as apply reads them
            workspace.use_playbook_vars(playbook)
            _ = workspace.inventory
        findings += _print_findings(validate_playbook(playbook, strict))
    if strict and any(finding.warning for finding in findings):
        sys.exit(ExitCode.INVALID_INPUT)


def _print_findings(findings: list[Finding]) -> list[Finding]:
    """Warnings in yellow on stderr, summaries on stdout; the findings, for the exit code."""
    for finding in findings:
        if finding.warning:
            click.secho(f"warning: {finding.text}", fg="yellow", err=True)
        else:
            click.echo(finding.text)
    return findings


@click.command("history")
@click.argument("run_id", type=int, required=False)
@inventory_options
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.option(
    "--trigger",
    help="Only runs started by this trigger: `schedule`, `schedule:NAME`, `web`, `cli` (people).",
)
@click.option("--json", "as_json", is_flag=True)
def history_command(
    run_id: int | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    limit: int,
    trigger: str | None,
    as_json: bool,
) -> None:
    """List recent runs, or with RUN_ID the commands that run sent to each host (each as
    the module call its task wrote: `command: systemctl restart nginx`; --json has the
    script sent too)."""
    from machineroom.runs.history import recent_runs, run_commands

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    if run_id is None:
        runs = recent_runs(workspace, limit, trigger)
        if as_json:
            click.echo(json.dumps([r.__dict__ for r in runs], indent=2, default=str))
            return
        for r in runs:
            by = f"  [{r.trigger}]" if r.trigger else ""
            click.echo(f"{r.id:>5}  {r.started_at}  {r.status:<11} {r.kind:<9} {r.command}{by}")
        return
    run, entries = run_commands(workspace, run_id)
    if as_json:
        click.echo(json.dumps({"run": run.__dict__, "commands": entries}, indent=2, default=str))
        return
    click.echo(
        f"run {run.id}: {run.kind} {run.status}  {run.started_at} .. "
        f"{run.finished_at or ''}\n  {run.command}"
    )
    for e in entries:
        # the module calls as the tasks wrote them (the script sent is in --json), else the
        # command machineroom sent for itself
        shown = "; ".join(str(e.get("action") or "").splitlines()) or e["command"]
        code = "-" if e["exit_code"] is None else e["exit_code"]  # none: nothing sent
        click.echo(f"  {e['host_id']:<12} exit {code:<3} {e['duration']:.3f}s  {shown}")
