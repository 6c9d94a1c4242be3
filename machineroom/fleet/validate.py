"""The fleet files `machineroom validate` checks beside the inventory: alerts.yml and
schedules.yml, with the same checks `collect` and `scheduler` make before they start."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from machineroom.inventory.model import Inventory


def validate_fleet_files(inventory_paths: Sequence[str], inventory: Inventory) -> Iterator[str]:
    """A summary line per fleet file found in the inventory's repo, each as soon as that file
    is checked; raises the errors of an invalid one (naming file and line), or of an enabled
    alert rule whose `hosts:` selects nothing in `inventory`."""
    from machineroom.fleet.repo import find_repo_file

    alerts = find_repo_file(inventory_paths, "alerts.yml")
    if alerts is not None:
        from machineroom.fleet.alerts import rule_hosts
        from machineroom.fleet.alerts_rules import load_alert_rules

        rules = load_alert_rules(alerts)
        rule_hosts(rules, inventory)
        yield f"{alerts}: {len(rules.rules)} alert rule(s): valid"
    schedules = find_repo_file(inventory_paths, "schedules.yml")
    if schedules is not None:
        from machineroom.fleet.schedules import load_schedules

        yield f"{schedules}: {len(load_schedules(schedules))} schedule(s): valid"
