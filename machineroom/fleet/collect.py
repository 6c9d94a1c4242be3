"""`machineroom collect` for the fleet: the collection run (runs/collect.py), then what the
fleet does with it: alert rules evaluated on the fresh samples, old samples pruned, and the
run's summary (hosts, unreachable, seconds, pruned, alerts).

Alert rules are checked before any host is contacted: a mistake in alerts.yml costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.errors import UsageError
from machineroom.runs.collect import Collection, HostReport, collect_hosts, finish_collection

if TYPE_CHECKING:
    from machineroom.fleet.alerts import AlertChange
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.request import RunRequest
    from machineroom.runs.workspace import Workspace

DEFAULT_RETENTION = "35d"


@dataclass(frozen=True)
class FleetCollection:
    """A collection with what followed it: alert changes, pruned samples, its summary."""

    collection: Collection
    changes: list[AlertChange] = field(default_factory=list)
    pruned: int = 0
    seconds: float = 0.0

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary as `collect --json` and the run row show it."""
        return {
            "hosts": len(self.collection.reports),
            "unreachable": len(self.collection.down),
            "seconds": round(self.seconds, 2),
            "pruned": self.pruned,
            "alerts": len(self.changes),
        }


def collect_fleet(
    workspace: Workspace,
    pattern: str,
    connect: ConnectSettings,
    *,
    keep: float,
    rules: Path | None,
    on_host: Callable[[HostReport], None] | None = None,
    trigger: str | None = None,
    command_line: str = "",
) -> FleetCollection:
    """Collect from the hosts matching `pattern`, then evaluate `rules` (unless the run was
    stopped: no alerts on half a fleet) and delete samples older than `keep` seconds (0:
    keep all). Errors in `rules` raise before any host is contacted."""
    from machineroom.state.metrics import now_unix

    if rules is not None:  # (the alert modules load only then: notifiers import http)
        from machineroom.fleet.alerts import rule_hosts
        from machineroom.fleet.alerts_rules import load_alert_rules

        rule_hosts(load_alert_rules(rules), workspace.inventory)
    started = time.monotonic()
    collection = collect_hosts(
        workspace,
        pattern,
        connect,
        on_host=on_host,
        trigger=trigger,
        command_line=command_line,
    )
    if collection.status in ("interrupted", "error"):
        return FleetCollection(collection, seconds=time.monotonic() - started)
    changes: list[AlertChange] = []
    pruned = 0
    store = workspace.open_state()
    try:
        if rules is not None:
            from machineroom.fleet.alerts import evaluate_after_collection

            hosts = [r.host_id for r in collection.reports]
            changes = evaluate_after_collection(
                store, workspace.inventory, rules, hosts, now_unix()
            )
        if keep > 0:
            pruned = store.metrics.prune_samples(now_unix() - int(keep))
    finally:
        store.close()
    done = FleetCollection(collection, changes, pruned, time.monotonic() - started)
    finish_collection(workspace, collection, done.summary)
    return done


def alert_rules_file(
    workspace: Workspace, alerts_path: str | None, no_alerts: bool = False
) -> Path | None:
    """The alert rules a collection evaluates: `alerts_path`, else alerts.yml in the
    inventory's repository (None when there is none, or with `no_alerts`)."""
    from machineroom.fleet.repo import find_repo_file

    if no_alerts:
        return None
    rules = (
        Path(alerts_path)
        if alerts_path
        else find_repo_file(workspace.inventory_paths, "alerts.yml")
    )
    if rules is not None and not rules.is_file():
        raise UsageError(f"--alerts: {rules}: no such file")
    return rules


def collect_request(
    request: RunRequest,
    workspace: Workspace,
    on_host: Callable[[HostReport], None] | None = None,
) -> FleetCollection:
    """A `collect` RunRequest carried out (the CLI's `collect`, the scheduler's and the
    dashboard's): its target is the host pattern; its options `retention` (a duration,
    default 35d; 0 keeps all), `alerts` (the rules file) and `no_alerts`."""
    from machineroom.fleet.durations import parse_duration

    options = request.options
    keep = parse_duration(
        str(options.get("retention", DEFAULT_RETENTION)), "--retention", allow_zero=True
    )
    rules = alert_rules_file(workspace, options.get("alerts"), bool(options.get("no_alerts")))
    return collect_fleet(
        workspace,
        request.target,
        request.connect,
        keep=keep,
        rules=rules,
        on_host=on_host,
        trigger=request.trigger,
        command_line=request.command_line or f"machineroom collect {request.target}",
    )
