"""`machineroom alerts`: list alerts; `alerts check` validates alerts.yml and shows what it
would open or resolve now; `alerts notify-test` sends a sample alert to one notifier. The work
is fleet/alerts_commands.py's; this file parses, prints and picks the exit code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import ExitCode
from machineroom.report.terminal import visible

if TYPE_CHECKING:
    from machineroom.state.alerts import AlertRow

_SEVERITY_COLOURS = {"critical": "red", "warning": "yellow", "info": "cyan"}


def _rules_option(func: Any) -> Any:
    return click.option(
        "--rules",
        "rules_path",
        type=click.Path(dir_okay=False),
        help="Alert rules file [default: alerts.yml in the inventory's repo].",
    )(func)


@click.group("alerts", invoke_without_command=True)
@click.option(
    "--all/--open",
    "show_all",
    default=False,
    help="All alerts, resolved ones too [default: --open, only open ones].",
)
@click.option("--host", "host_id", help="Only this host's alerts.")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as JSON.")
@inventory_options
@click.pass_context
def alerts_command(
    ctx: click.Context,
    show_all: bool,
    host_id: str | None,
    limit: int,
    as_json: bool,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
) -> None:
    """Alerts opened by the rules of alerts.yml after each `machineroom collect`: open ones
    first, newest first (with --all, resolved ones after them)."""
    if ctx.invoked_subcommand is not None:
        return
    from machineroom.fleet.alerts_commands import list_alerts

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    rows = list_alerts(workspace, include_resolved=show_all, host_id=host_id, limit=limit)
    if as_json:
        click.echo(json.dumps({"alerts": [_as_dict(row) for row in rows]}, indent=2))
        return
    if not rows:
        click.echo("no open alerts" if not show_all else "no alerts")
        return
    _print_table(rows)


def _as_dict(row: AlertRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__dataclass_fields__}


def _print_table(rows: Sequence[AlertRow]) -> None:
    now = datetime.now(UTC)
    header = ("STATE", "SEVERITY", "RULE", "HOST", "SUBJECT", "SINCE", "VALUE", "MESSAGE")
    table = [header]
    for row in rows:
        since = _ago(row.opened_at, now)
        if row.state == "resolved":
            since = f"{since}, resolved {_ago(row.resolved_at, now)}"
        message = row.message
        if row.notify_error:
            message += f" [notify failed: {row.notify_error}]"
        table.append(
            (
                row.state,
                row.severity,
                row.rule,
                row.host_id,
                row.subject or "-",
                since,
                "-" if row.value is None else f"{row.value:g}",
                message,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for index, line in enumerate(table):
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)] + [line[-1]]
        text = visible("  ".join(cells).rstrip())  # messages quote what hosts reported
        if index == 0:
            click.secho(text, bold=True)
            continue
        row = rows[index - 1]
        colour = _SEVERITY_COLOURS.get(row.severity) if row.state == "open" else "bright_black"
        click.secho(text, fg=colour)


def _ago(text: str | None, now: datetime) -> str:
    if not text:
        return "-"
    try:
        then = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    from machineroom.fleet.alerts_message import format_duration

    seconds = max((now - then).total_seconds(), 0)
    return format_duration(seconds) + " ago"


@alerts_command.command("check")
@_rules_option
@inventory_options
def check_command(
    rules_path: str | None, inventory_paths: tuple[str, ...], state_path: str | None
) -> None:
    """Validate alerts.yml (and its host patterns against the inventory) without collecting;
    with a state database that has collections, show what the rules would open or resolve
    now. Nothing is written and nobody is notified."""
    from machineroom.fleet.alerts_commands import check_rules, preview_alerts

    workspace = make_workspace(inventory_paths, state_path)
    checked = check_rules(workspace, rules_path)
    rules = checked.rules
    click.echo(f"{checked.path}: {len(rules.rules)} rules, {len(rules.notifiers)} notifiers: valid")
    for rule in rules.rules.values():
        what = rule.metric or rule.kind
        hosts = f"{len(checked.selected[rule.name])} hosts" if rule.enabled else "disabled"
        notify = ", ".join(rule.notify) or "no notifier"
        click.echo(f"  {rule.name}: {what} [{rule.severity}] on {hosts}; notifies {notify}")
    preview = preview_alerts(workspace, rules)
    if preview is None:
        return
    host_ids, plan, open_rows = preview.host_ids, preview.plan, preview.open_rows
    if not host_ids:
        click.echo("no collections in the state database yet: nothing to evaluate")
        return
    for item in plan.openings:
        subject = f" {item.subject}" if item.subject else ""
        click.secho(
            visible(
                f"would open: {item.rule} on {item.host_id}{subject} [{item.severity}] "
                f"{item.message}"
            ),
            fg="red",
        )
    for res in plan.resolutions:
        row = open_rows[res.alert_id]
        subject = f" {row.subject}" if row.subject else ""
        click.secho(
            visible(f"would resolve: {row.rule} on {row.host_id}{subject}: {res.message}"),
            fg="green",
        )
    if not plan.openings and not plan.resolutions:
        click.echo(f"no change to the {len(open_rows)} open alerts of {len(host_ids)} hosts")


@alerts_command.command("notify-test")
@click.argument("notifier")
@_rules_option
@inventory_options
def notify_test_command(
    notifier: str,
    rules_path: str | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,  # accepted like everywhere; a test alert touches no database
) -> None:
    """Send a sample alert (event "test") to NOTIFIER of alerts.yml; exit 1 if it failed."""
    from machineroom.fleet.alerts_commands import send_test_alert

    problem = send_test_alert(inventory_paths, rules_path, notifier)
    if problem:
        click.secho(problem, fg="red", err=True)
        raise SystemExit(int(ExitCode.ERROR))
    click.echo(f"notifier {notifier}: sent")
