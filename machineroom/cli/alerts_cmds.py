"""`machineroom alerts`: list alerts; `alerts check` validates alerts.yml and shows what it
would open or resolve now; `alerts notify-test` sends a sample alert to one notifier."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import ExitCode, UsageError
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
    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    store = workspace.open_state()
    try:
        rows = store.alerts.listing(include_resolved=show_all, host_id=host_id, limit=limit)
    finally:
        store.close()
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


def _find_rules(inventory_paths: tuple[str, ...], rules_path: str | None) -> Path:
    from machineroom.fleet.repo import find_repo_file
    from machineroom.runs.workspace import find_inventory_paths

    if rules_path:
        return Path(rules_path)
    found = find_repo_file(find_inventory_paths(inventory_paths), "alerts.yml")
    if found is None:
        raise UsageError(
            "no alerts.yml beside the inventory or above it in its repo; pass --rules FILE"
        )
    return found


@alerts_command.command("check")
@_rules_option
@inventory_options
def check_command(
    rules_path: str | None, inventory_paths: tuple[str, ...], state_path: str | None
) -> None:
    """Validate alerts.yml (and its host patterns against the inventory) without collecting;
    with a state database that has collections, show what the rules would open or resolve
    now. Nothing is written and nobody is notified."""
    from machineroom.fleet.alerts import plan_alerts, rule_hosts
    from machineroom.fleet.alerts_rules import load_alert_rules

    workspace = make_workspace(inventory_paths, state_path)
    path = _find_rules(workspace.inventory_paths, rules_path)
    rules = load_alert_rules(path)
    selected = rule_hosts(rules, workspace.inventory)
    click.echo(f"{path}: {len(rules.rules)} rules, {len(rules.notifiers)} notifiers: valid")
    for rule in rules.rules.values():
        what = rule.metric or rule.kind
        hosts = f"{len(selected[rule.name])} hosts" if rule.enabled else "disabled"
        notify = ", ".join(rule.notify) or "no notifier"
        click.echo(f"  {rule.name}: {what} [{rule.severity}] on {hosts}; notifies {notify}")
    if not Path(workspace.state_path).exists():
        return
    store = workspace.open_state()
    try:
        host_ids = [h for h in store.metrics.host_statuses() if h in workspace.inventory.hosts]
        from machineroom.state.metrics import now_unix

        plan = plan_alerts(store, workspace.inventory, rules, host_ids, now_unix())
        open_rows = {row.id: row for row in store.alerts.open_alerts(host_ids)}
    finally:
        store.close()
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
    from machineroom.errors import InputError, did_you_mean
    from machineroom.fleet.alerts_notify import send
    from machineroom.fleet.alerts_rules import load_alert_rules

    rules = load_alert_rules(_find_rules(inventory_paths, rules_path))
    if notifier not in rules.notifiers:
        raise InputError(
            f"no notifier '{notifier}' in {rules.path}" + did_you_mean(notifier, rules.notifiers),
            expected="one of: " + ", ".join(rules.notifiers),
        )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    payload = {
        "source": "machineroom",
        "event": "test",
        "id": 0,
        "rule": "notify-test",
        "host": "example",
        "subject": "",
        "severity": "info",
        "state": "open",
        "value": None,
        "metric": None,
        "threshold": None,
        "message": f"a test of notifier {notifier} from machineroom alerts notify-test",
        "opened_at": now,
        "resolved_at": None,
    }
    from machineroom.fleet.alerts import env_decrypt

    problem = send(rules.notifiers[notifier], payload, env_decrypt)
    if problem:
        click.secho(problem, fg="red", err=True)
        raise SystemExit(int(ExitCode.ERROR))
    click.echo(f"notifier {notifier}: sent")
