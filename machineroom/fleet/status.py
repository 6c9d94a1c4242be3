"""What the fleet looks like from the state database, without contacting any host: each
host's latest collection (`machineroom status`) and a host's metric history (`metrics`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from machineroom.errors import UsageError

if TYPE_CHECKING:
    from machineroom.runs.workspace import Workspace


def fleet_status(workspace: Workspace, pattern: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A row per host of `pattern` (state up/down/never/retired, last seen, load, memory and
    disk use, containers, installed stages, pending next action, open alerts) and the totals."""
    from machineroom.inventory import select_hosts
    from machineroom.runs.servers import installed_stages

    hosts = select_hosts(workspace.inventory, pattern)
    store = workspace.open_state()
    try:
        statuses = store.metrics.host_statuses([h.id for h in hosts])
        servers = {row.id: row for row in store.servers()}
        open_alerts = store.alerts.open_alert_counts()
    finally:
        store.close()
    rows = []
    for host in hosts:
        status = statuses.get(host.id)
        server = servers.get(host.id)
        res = server.res if server else {}
        metrics = status["metrics"] if status else {}
        containers = status["containers"] if status else []
        state = (
            "retired"
            if res.get("retired")
            else ("never" if status is None else ("up" if status["reachable"] else "down"))
        )
        rows.append(
            {
                "host": host.id,
                "state": state,
                "last_seen": status["last_seen"] if status else None,
                "failures": status["failures"] if status else 0,
                "error": status["error"] if status else "",
                "load1": metrics.get("load1"),
                "mem_used_pct": metrics.get("mem_used_pct"),
                "disk_used_pct_max": metrics.get("disk_used_pct_max"),
                "containers_running": sum(1 for c in containers if c.get("state") == "running"),
                "containers_total": len(containers),
                "stages": installed_stages(res),
                "next_action": server.next_action if server else {},
                "open_alerts": open_alerts.get(host.id, 0),
            }
        )
    return rows, fleet_totals(rows)


def fleet_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The fleet's totals over the status rows."""
    loads = [r["load1"] for r in rows if r["load1"] is not None and r["state"] == "up"]
    return {
        "hosts": len(rows),
        "up": sum(1 for r in rows if r["state"] == "up"),
        "down": sum(1 for r in rows if r["state"] == "down"),
        "never_collected": sum(1 for r in rows if r["state"] == "never"),
        "retired": sum(1 for r in rows if r["state"] == "retired"),
        "mean_load1": round(sum(loads) / len(loads), 2) if loads else None,
        "containers_running": sum(r["containers_running"] for r in rows),
        "containers_total": sum(r["containers_total"] for r in rows),
        "pending": sum(1 for r in rows if r["next_action"]),
        "open_alerts": sum(r["open_alerts"] for r in rows),
    }


def metric_history(
    workspace: Workspace, host_id: str, metric: str | None, window: float
) -> tuple[list[str], dict[str, list[tuple[int, float]]]]:
    """The host's metrics matching `metric` (a glob; None: all) and their samples over the
    last `window` seconds; a host or metric with no samples is a UsageError with a hint."""
    from machineroom.errors import did_you_mean
    from machineroom.state.metrics import now_unix

    store = workspace.open_state()
    try:
        names = store.metrics.metric_names(host_id)
        if not names:
            known = sorted(store.metrics.host_statuses())
            hint = did_you_mean(host_id, known) if known else ""
            raise UsageError(
                f"no metrics recorded for host {host_id!r}{hint}"
                + ("" if known else "; run `machineroom collect` first")
            )
        wanted = [n for n in names if metric is None or fnmatch.fnmatchcase(n, metric)]
        if not wanted:
            raise UsageError(
                f"host {host_id} has no metric {metric!r}{did_you_mean(metric or '', names)}"
            )
        start = now_unix() - int(window)
        series = {name: store.metrics.metric_series(host_id, name, start) for name in wanted}
    finally:
        store.close()
    return wanted, series
