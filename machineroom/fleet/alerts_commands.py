"""What `machineroom alerts` does, without the printing (cli/alerts_cmds.py prints): list the
recorded alerts, check alerts.yml and preview what it would open or resolve now, and send a
sample alert to one notifier. Nothing here writes an alert or notifies anyone for real."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from machineroom.errors import UsageError

if TYPE_CHECKING:
    from machineroom.fleet.alerts import AlertPlan
    from machineroom.fleet.alerts_rules import AlertRules
    from machineroom.runs.workspace import Workspace
    from machineroom.state.alerts import AlertRow


def list_alerts(
    workspace: Workspace, include_resolved: bool, host_id: str | None, limit: int
) -> list[AlertRow]:
    """The recorded alerts: open ones first, newest first (resolved ones after them when
    `include_resolved`), of one host or all."""
    store = workspace.open_state()
    try:
        return store.alerts.listing(include_resolved=include_resolved, host_id=host_id, limit=limit)
    finally:
        store.close()


def find_rules(inventory_paths: Sequence[str], rules_path: str | None) -> Path:
    """The alert rules file: `rules_path` when given, else alerts.yml beside the inventory or
    above it in its repo; a UsageError when there is none."""
    from machineroom.fleet.repo import find_repo_file
    from machineroom.runs.workspace import find_inventory_paths

    if rules_path:
        return Path(rules_path)
    found = find_repo_file(find_inventory_paths(tuple(inventory_paths)), "alerts.yml")
    if found is None:
        raise UsageError(
            "no alerts.yml beside the inventory or above it in its repo; pass --rules FILE"
        )
    return found


@dataclass(frozen=True)
class CheckedRules:
    """A valid alerts.yml: where it is, its rules and notifiers, and the host ids each
    enabled rule selects in the workspace's inventory."""

    path: Path
    rules: AlertRules
    selected: dict[str, set[str]]


def check_rules(workspace: Workspace, rules_path: str | None) -> CheckedRules:
    """Load and validate the alert rules, their host patterns against the inventory."""
    from machineroom.fleet.alerts import rule_hosts
    from machineroom.fleet.alerts_rules import load_alert_rules

    path = find_rules(workspace.inventory_paths, rules_path)
    rules = load_alert_rules(path)
    return CheckedRules(path, rules, rule_hosts(rules, workspace.inventory))


@dataclass(frozen=True)
class AlertsPreview:
    """What the rules would change now: the hosts with collections (in the inventory), the
    plan for them, and their open alerts by id (a resolution names one of them)."""

    host_ids: list[str]
    plan: AlertPlan
    open_rows: dict[int, AlertRow]


def preview_alerts(workspace: Workspace, rules: AlertRules) -> AlertsPreview | None:
    """What `rules` would open or resolve now, from the collections in the state database;
    None when there is no database. Nothing is written and nobody is notified."""
    from machineroom.fleet.alerts import plan_alerts
    from machineroom.state.metrics import now_unix

    if not Path(workspace.state_path).exists():
        return None
    store = workspace.open_state()
    try:
        host_ids = [h for h in store.metrics.host_statuses() if h in workspace.inventory.hosts]
        plan = plan_alerts(store, workspace.inventory, rules, host_ids, now_unix())
        open_rows = {row.id: row for row in store.alerts.open_alerts(host_ids)}
    finally:
        store.close()
    return AlertsPreview(host_ids, plan, open_rows)


def send_test_alert(
    inventory_paths: Sequence[str], rules_path: str | None, notifier: str
) -> str | None:
    """Send a sample alert (event "test") to `notifier` of the alert rules; what went wrong,
    or None when it was sent. An unknown notifier is an InputError naming the known ones."""
    from machineroom.errors import InputError, did_you_mean
    from machineroom.fleet.alerts import env_decrypt
    from machineroom.fleet.alerts_notify import send
    from machineroom.fleet.alerts_rules import load_alert_rules

    rules = load_alert_rules(find_rules(inventory_paths, rules_path))
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
    return send(rules.notifiers[notifier], payload, env_decrypt)
