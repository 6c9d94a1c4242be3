"""What the pages and the API show, assembled from the state store and the inventory.

Hosts are the union of the inventory, `server_room` and `host_status` (a host collected once
and since removed from the inventory still shows). Everything here returns plain dicts shaped
like the API's models; the pages render the same dicts.
"""

from __future__ import annotations

import difflib
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.runs.servers import installed_stages
from machineroom.state.metrics import now_unix
from machineroom.state.records import RunRow
from machineroom.web import fleet_view
from machineroom.web.errors import ApiError
from machineroom.web.fleet_view import natural_key as natural_key  # the pages' and others' sort key

if TYPE_CHECKING:
    from machineroom.inventory.model import Inventory
    from machineroom.state import StateStore

INVENTORY_TTL = 5.0  # seconds an inventory is reused before its files are read again
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_POINTS = 300  # chart points a window is averaged down to
# Charts the host page always shows, when the host has the metric.
CHART_METRICS = (
    ("cpu_used_pct", "CPU used", "%"),
    ("load1", "Load (1 min)", ""),
    ("mem_used_pct", "Memory used", "%"),
    ("disk_used_pct_max", "Fullest disk", "%"),
    ("net_rx_bytes_per_s", "Network in", "B/s"),
    ("net_tx_bytes_per_s", "Network out", "B/s"),
    ("containers_running", "Containers running", ""),
)
_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> int:
    """Seconds in a window such as 1h, 24h, 7d, 30d, 90m (at most a year); else 400."""
    match = _DURATION.fullmatch(text.strip())
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not match or not 0 < seconds <= 366 * 86400:
        raise ApiError(400, f"since: {text!r} is not a time window; expected e.g. 1h, 24h, 7d, 30d")
    return seconds


class InventoryCache:
    """The server's inventory, re-read at most every INVENTORY_TTL seconds."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self._lock = threading.Lock()
        self._loaded: tuple[float, Inventory | None, str] = (0.0, None, "")

    def get(self) -> tuple[Inventory | None, str]:
        """The inventory (None without one) and the error that kept it from loading, if any."""
        if not self.paths:
            return None, ""
        with self._lock:
            at, inventory, error = self._loaded
            if time.monotonic() - at < INVENTORY_TTL:
                return inventory, error
            from machineroom.errors import MachineroomError
            from machineroom.inventory import load_inventories

            try:
                inventory, error = load_inventories(list(self.paths), check_key_files=False), ""
            except MachineroomError as exc:
                error = f"inventory: {exc}"  # keep showing the database's view of the fleet
            self._loaded = (time.monotonic(), inventory, error)
            return inventory, error


def _number(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, int | float) else None


def host_summaries(
    store: StateStore, inventory: Inventory | None, root: Path | None = None, only: str = ""
) -> list[dict[str, Any]]:
    """Every known host's summary, by id: its collection, its last apply and what is pending
    (playbook paths shown relative to `root`), whether the inventory lists it, and its
    `rank` and `problems` (fleet_view.problems_of). `only`: that host's alone (none when the
    database and the inventory do not know it)."""
    if only:
        row = store.server(only)
        servers = {only: row} if row is not None else {}
        statuses = store.metrics.host_statuses([only])
    else:
        servers = {row.id: row for row in store.servers()}
        statuses = store.metrics.host_statuses()
    alerts = store.alerts.open_alert_counts()
    ids = set(servers) | set(statuses)
    hosts = dict(inventory.hosts) if inventory is not None else {}
    ids |= {only} & set(hosts) if only else set(hosts)
    lasts = store.last_applies(ids)
    result = []
    for host_id in sorted(ids, key=natural_key):
        server = servers.get(host_id)
        status = statuses.get(host_id)
        host = hosts.get(host_id)
        res = server.res if server else {}
        metrics = status["metrics"] if status else {}
        if res.get("retired"):
            state = "retired"
        elif status is not None:
            state = "up" if status["reachable"] else "down"
        elif isinstance(res.get("reachable"), bool):
            state = "up" if res["reachable"] else "down"
        else:
            state = "unknown"
        running = _number(metrics, "containers_running")
        total = _number(metrics, "containers_total")
        action = server.next_action if server else {}
        pending = fleet_view.pending_words(action, root)
        summary: dict[str, Any] = {
            "id": host_id,
            "address": host.address if host else (server.host if server else ""),
            "description": (host.description if host else "")
            or (server.description if server and server.description else ""),
            "groups": [g for g in host.groups if g != "all"] if host else [],
            "status": state,
            "last_seen": (status or {}).get("last_seen") or res.get("last_seen"),
            "last_attempt": (status or {}).get("last_attempt"),
            "failures": int((status or {}).get("failures") or 0),
            "error": (status or {}).get("error") or "",
            "load1": _number(metrics, "load1"),
            "cpu_used_pct": _number(metrics, "cpu_used_pct"),
            "mem_used_pct": _number(metrics, "mem_used_pct"),
            "disk_used_pct_max": _number(metrics, "disk_used_pct_max"),
            "containers_running": None if running is None else int(running),
            "containers_total": None if total is None else int(total),
            "stages": installed_stages(res),
            "next_action": action,
            "open_alerts": alerts.get(host_id, 0),
            "in_inventory": inventory is None or host_id in hosts,
            "last_apply": fleet_view.last_apply_view(lasts.get(host_id), action, root),
            "pending": pending["text"],
            "pending_command": pending["command"],
        }
        summary["rank"], summary["problems"] = fleet_view.problems_of(summary)
        result.append(summary)
    return result


def filter_hosts(
    hosts: list[dict[str, Any]], text: str = "", group: str = "", status: str = ""
) -> list[dict[str, Any]]:
    """The hosts whose id, address or description contains `text`, in `group` (`ungrouped`:
    inventory hosts in no group but `all`), in `status` (`failing`: the hosts ranked broken)."""
    needle = text.strip().lower()
    return [
        h
        for h in hosts
        if (
            not needle or any(needle in str(h[k]).lower() for k in ("id", "address", "description"))
        )
        and (
            not group
            or group in h["groups"]
            or (group == fleet_view.NO_GROUP and not h["groups"] and h["in_inventory"])
        )
        and (
            not status
            or h["status"] == status
            or (status == "failing" and h["rank"] == fleet_view.BROKEN)
        )
    ]


def unknown_host(name: str, known: list[str]) -> ApiError:
    """404 naming close host ids."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ApiError(404, f"unknown host {name!r}{hint}")


def find_host(
    store: StateStore, inventory: Inventory | None, host_id: str, root: Path | None = None
) -> dict[str, Any]:
    """The summary of one host (its last apply alone looked up), or 404."""
    found = host_summaries(store, inventory, root, only=host_id) if host_id else []
    if found:
        return found[0]
    known = {row.id for row in store.servers()} | set(store.metrics.host_statuses())
    known |= set(inventory.hosts) if inventory is not None else set()
    raise unknown_host(host_id, sorted(known, key=natural_key))


def run_dict(run: RunRow, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A run as the API shows it."""
    return {
        "id": run.id,
        "kind": run.kind,
        "command": run.command,
        "status": run.status,
        "user": run.user,
        "workstation": run.workstation,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "playbook": run.playbook,
        "trigger": run.trigger,
        "args": run.args,
        "summary": run.summary,
        "counts": counts or {},
    }


def runs_with_counts(
    store: StateStore, runs: list[RunRow], host_id: str | None = None
) -> list[dict[str, Any]]:
    """Runs as dicts, each with its task-result counts."""
    counts = store.dashboard.result_counts([r.id for r in runs], host_id)
    return [run_dict(r, counts.get(r.id)) for r in runs]


def host_detail(
    store: StateStore, inventory: Inventory | None, host_id: str, root: Path | None = None
) -> dict[str, Any]:
    """Everything the host page shows (the API's HostDetail)."""
    summary = find_host(store, inventory, host_id, root)
    server = store.server(host_id)
    res = dict(server.res) if server else {}
    facts = res.pop("facts", None)
    facts_at = res.get("facts_at")
    if not isinstance(facts, dict):
        history = store.facts_history(host_id, limit=1)
        facts = history[0]["facts"] if history else {}
        facts_at = history[0]["collected_at"] if history else None
    status = store.metrics.host_statuses([host_id]).get(host_id, {})
    return {
        **summary,
        "facts": facts,
        "facts_at": facts_at,
        "res": res,
        "metrics": {
            k: float(v) for k, v in status.get("metrics", {}).items() if isinstance(v, int | float)
        },
        "metric_names": store.metrics.metric_names(host_id),
        "containers": [c for c in status.get("containers", []) if isinstance(c, dict)],
        "recent_runs": runs_with_counts(store, store.dashboard.host_runs(host_id, 15), host_id),
        "alerts": store.dashboard.alert_page(host_id=host_id, limit=20),
    }


def metric_window(
    store: StateStore, host_id: str, metric: str, seconds: int, points: int = MAX_POINTS
) -> dict[str, Any]:
    """A host's metric over the last `seconds`, averaged down to about `points` points."""
    until = now_unix()
    since = until - seconds
    # Collections run every few minutes at most; below that, keep every sample.
    step = max(1, seconds // max(points, 1))
    if step < 60:
        step = 1
    return {
        "host": host_id,
        "metric": metric,
        "since": since,
        "until": until,
        "step": step,
        "points": store.dashboard.binned_series(host_id, metric, since, until, step),
    }


def repo_root(inventory_paths: tuple[str, ...]) -> Path | None:
    """The top of the inventory's git repository, else the inventory's folder."""
    if not inventory_paths:
        return None
    start = Path(inventory_paths[0]).resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def _looks_like_playbook(path: Path) -> bool:
    # A playbook is a YAML list of plays; inventories, alerts.yml and schedules.yml are
    # mappings. Reading the first meaningful line is enough to tell them apart.
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                stripped = line.strip()
                if stripped and not stripped.startswith("#") and stripped != "---":
                    return stripped.startswith("- ") or stripped == "-"
    except (OSError, UnicodeDecodeError):
        return False
    return False


def list_playbooks(root: Path | None) -> dict[str, Path]:
    """Playbook name (path relative to the repo) -> file: `playbooks/*.yml` and playbooks
    at the top of the repo. Only these names may be applied from the web."""
    if root is None:
        return {}
    found: dict[str, Path] = {}
    for pattern in ("playbooks/*.yml", "playbooks/*.yaml", "*.yml", "*.yaml"):
        for path in sorted(root.glob(pattern)):
            if path.is_file() and _looks_like_playbook(path):
                found[path.relative_to(root).as_posix()] = path
    return found
