"""Open alerts of hosts about to be forgotten: resolved as any alert is (the row marked
resolved, its message ending `(resolved: host forgotten)`, the rule's notifiers told once),
so an alert that paged someone is never left without its resolution. `forget` then deletes
the rows with the rest of the host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from machineroom.errors import UsageError
from machineroom.fleet.alerts import AlertChange, _change, _resolved, notify_pending
from machineroom.fleet.alerts_commands import find_rules
from machineroom.fleet.alerts_rules import load_alert_rules
from machineroom.state.alerts import Resolution
from machineroom.state.metrics import now_unix

if TYPE_CHECKING:
    from machineroom.state import StateStore

WHY = "host forgotten"


def resolve_forgotten_alerts(
    store: StateStore, inventory_paths: Sequence[str], host_ids: Sequence[str]
) -> list[AlertChange]:
    """Resolve the open alerts of `host_ids` and notify as the alerts.yml beside the
    inventory says (none found: resolved without notifying, as for a rule that is gone).
    A broken alerts.yml raises before anything is resolved."""
    rows = store.alerts.open_alerts(list(host_ids))
    if not rows:
        return []
    try:
        rules_path = find_rules(inventory_paths, None)
    except UsageError:
        rules = None
    else:
        rules = load_alert_rules(rules_path)
    now = now_unix()
    resolutions = [Resolution(row.id, None, _resolved(row, WHY)) for row in rows]
    _, resolved = store.alerts.record_alert_changes([], resolutions, now)
    errors = {}
    if rules is not None:
        own = {(row.id, "resolved") for row in resolved}
        errors = notify_pending(store, rules, now, own=own)
    return [_change(row, "resolved", errors) for row in resolved]
