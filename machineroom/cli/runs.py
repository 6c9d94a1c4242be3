"""Reading recorded runs back: `show RUN [--host H]` and `diff RUN1 RUN2`.

`show` without a run is `ls` (the MachineRoom document's `show` lists the servers), so the
command hands over to `ls` rather than keep a second copy of its table.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import UsageError
from machineroom.report.terminal import visible_data

if TYPE_CHECKING:
    from machineroom.state import RunRow


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
    from machineroom.runs.history import run_results

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    run, by_host = run_results(workspace, run_id, host_id)
    if as_json:
        doc = {"run": run.__dict__, "hosts": by_host}
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    click.echo(_render_run(run, host_id))
    for host, rows in by_host.items():
        click.echo(f"\n{_bold(host)}")
        for row in rows:
            # what hosts printed is shown with its escape sequences visible, never obeyed
            click.echo(_render_result(visible_data(row), detail=host_id is not None))


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
    from machineroom.runs.history import two_runs

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    first, second, result = two_runs(workspace, run1, run2)
    if as_json:
        doc = {"run1": first.id, "run2": second.id, **result}
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    click.echo(f"run {_run_label(first)}  ->  run {_run_label(second)}")
    if not any(result.values()):
        click.echo("no differences in task results")
        return
    for host, changes in result["hosts"].items():
        click.echo(f"\n{_bold(host)}")
        for change in changes["changed"]:
            click.echo(_render_change(change))
        for row in changes["only_in_run1"]:
            click.echo(f"  - {row['task']}  (only in run {run1}: {row['status']})")
        for row in changes["only_in_run2"]:
            click.echo(f"  + {row['task']}  (only in run {run2}: {row['status']})")
    if result["hosts_only_in_run1"]:
        click.echo(f"\nhosts only in run {run1}: {', '.join(result['hosts_only_in_run1'])}")
    if result["hosts_only_in_run2"]:
        click.echo(f"\nhosts only in run {run2}: {', '.join(result['hosts_only_in_run2'])}")


def _summary_hosts(run: RunRow) -> dict[str, Any]:
    hosts = run.summary.get("hosts")
    return hosts if isinstance(hosts, dict) else {}


def _color() -> bool:
    from machineroom.report.recap import use_color

    return use_color(sys.stdout)


def _bold(text: str) -> str:
    from machineroom.report.recap import paint

    return paint(text, "bold", color=_color())


def _seconds(run: RunRow) -> float | None:
    duration = run.summary.get("duration")
    if isinstance(duration, int | float):
        return float(duration)
    if not run.finished_at:
        return None
    try:
        start = datetime.fromisoformat(run.started_at)
        end = datetime.fromisoformat(run.finished_at)
    except ValueError:
        return None
    return (end - start).total_seconds()


def _run_label(run: RunRow) -> str:
    return f"{run.id} ({run.kind} {run.status}, {run.started_at})"


def _render_run(run: RunRow, host_id: str | None) -> str:
    from machineroom.events import HostStats
    from machineroom.report.recap import STATUS_COLOURS, format_duration, paint, render_recap

    color = _color()
    seconds = _seconds(run)
    took = f", {format_duration(seconds)}" if seconds is not None else ""
    status = paint(run.status, STATUS_COLOURS.get(run.status, "bold"), "bold", color=color)
    lines = [
        f"{paint(f'run {run.id}', 'bold', color=color)}  {run.kind}  {status}  "
        f"({run.user}@{run.workstation}, {run.started_at}{took})",
        f"  command   {run.command}",
    ]
    for label, value in (
        ("playbook", run.playbook),
        ("inventory", run.inventory),
        ("git", run.git_commit),
        ("reason", run.summary.get("reason")),
    ):
        if value:
            lines.append(f"  {label:<9} {value}")
    if run.summary.get("check"):
        lines.append("  check mode: nothing was changed")
    hosts = _summary_hosts(run)
    if host_id is not None:
        hosts = {h: c for h, c in hosts.items() if h == host_id}
    stats = {}
    for host, counts in hosts.items():
        if isinstance(counts, dict):
            known = {k: v for k, v in counts.items() if k in HostStats.__dataclass_fields__}
            stats[host] = HostStats(**known)
    if stats:
        recap = render_recap(
            stats, run_id=run.id, status=run.status, duration=seconds or 0.0, color=color
        )
        # The outcome line repeats the header; the table is what is new here.
        lines.extend(["", *recap.rstrip("\n").splitlines()[:-1]])
    elif run.summary and not hosts:
        extra = {k: v for k, v in run.summary.items() if k not in ("reason", "check")}
        if extra:
            lines.append("  summary   " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    return "\n".join(lines)


def _render_result(row: dict[str, Any], *, detail: bool) -> str:
    from machineroom.report.console import first_line, indent
    from machineroom.report.recap import STATUS_COLOURS, format_duration, paint

    color = _color()
    status = paint(f"{row['status']:<11}", STATUS_COLOURS.get(row["status"], ""), color=color)
    message = row["message"] or ""
    head = f"  {status} {format_duration(row['duration']):>7}  {row['task']}"
    lines = []
    if detail:
        lines.append(head)
        if row["location"]:
            lines.append(f"      at {row['location']}")
        lines.extend(indent(message, "      ") if message else [])
        for name in ("stdout", "stderr"):
            if row[name]:
                lines.append(f"      {name}:")
                lines.extend(indent(row[name], "        "))
    else:
        short = first_line(message)
        more = " …" if message.strip() != short else ""
        lines.append(f"{head}  {short}{more}" if short else head)
    if row["diff"]:
        lines.extend(_diff_lines(row["diff"], color))
    return "\n".join(lines)


def _diff_lines(diff: str, color: bool) -> list[str]:
    from machineroom.report.recap import paint

    out = []
    for line in diff.rstrip("\n").splitlines():
        style = (
            "bold"
            if line.startswith(("+++", "---"))
            else "green"
            if line.startswith("+")
            else "red"
            if line.startswith("-")
            else "cyan"
            if line.startswith("@@")
            else ""
        )
        out.append("      " + (paint(line, style, color=color) if style else line))
    return out


def _render_change(change: dict[str, Any]) -> str:
    old, new = change["before"], change["after"]
    text = f"  ~ {change['task']}  {old['status']} -> {new['status']}"
    if old["message"] != new["message"]:
        text += f"\n      was: {_one_line(old['message'])}\n      now: {_one_line(new['message'])}"
    return text


def _one_line(message: str) -> str:
    return json.dumps(message, ensure_ascii=False) if "\n" in message else message or '""'
