"""The run history in the state database: runs, their task results and audited commands,
and what differs between two runs (history, show, diff)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputError
from machineroom.runs.servers import opened

if TYPE_CHECKING:
    from machineroom.runs.workspace import Workspace
    from machineroom.state import RunRow, StateStore


def recent_runs(workspace: Workspace, limit: int, trigger: str | None) -> list[RunRow]:
    """The latest runs, newest first (runs whose process died are marked interrupted)."""
    with opened(workspace) as store:
        store.mark_interrupted_runs()
        return store.runs(limit, trigger=trigger)


def run_commands(workspace: Workspace, run_id: int) -> tuple[RunRow, list[dict[str, Any]]]:
    """A run and the commands it sent to each host (the audit log)."""
    with opened(workspace) as store:
        store.mark_interrupted_runs()
        run = store.run(run_id)
        if run is None:
            raise InputError(f"no run {run_id} in {workspace.state_path}")
        return run, store.audit(run_id=run_id, limit=10000)


def run_results(
    workspace: Workspace, run_id: int, host_id: str | None = None
) -> tuple[RunRow, dict[str, list[dict[str, Any]]]]:
    """A run and its task results by host (of one host, when given; a host the run did not
    reach is an error naming the hosts it did)."""
    with opened(workspace) as store:
        store.mark_interrupted_runs()
        run = load_run(store, run_id, workspace.state_path)
        results = store.task_results(run_id, host_id)
        if host_id is not None and not results and host_id not in summary_hosts(run):
            hosts = sorted({r["host_id"] for r in store.task_results(run_id)})
            raise InputError(
                f"run {run_id} has no results for host {host_id!r}",
                expected="one of " + ", ".join(hosts) if hosts else "a host of the run",
            )
    return run, group_by_host(results)


def two_runs(workspace: Workspace, run1: int, run2: int) -> tuple[RunRow, RunRow, dict[str, Any]]:
    """Two runs and what differs between their task results (`compare_runs`)."""
    with opened(workspace) as store:
        store.mark_interrupted_runs()
        first = load_run(store, run1, workspace.state_path)
        second = load_run(store, run2, workspace.state_path)
        before = group_by_host(store.task_results(run1))
        after = group_by_host(store.task_results(run2))
    return first, second, compare_runs(before, after)


def load_run(store: StateStore, run_id: int, path: str) -> RunRow:
    """Run `run_id`, or an error saying where ids come from."""
    run = store.run(run_id)
    if run is None:
        raise InputError(f"no run {run_id} in {path}", expected="a run id from `history`")
    return run


def summary_hosts(run: RunRow) -> set[str]:
    """The hosts a run's summary names (its recap)."""
    hosts = run.summary.get("hosts") if isinstance(run.summary, dict) else None
    return set(hosts) if isinstance(hosts, dict) else set()


def compare_runs(
    before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Per host, the task results that differ between two runs (each a `task_results` list
    grouped by host). Durations always differ, so only status and message are compared.

    A task is matched by its name and location; the n-th occurrence of the same pair (a task
    that runs twice, e.g. from two includes) matches the n-th in the other run.
    """
    hosts: dict[str, Any] = {}
    for host in [h for h in before if h in after]:
        old, new = _keyed(before[host]), _keyed(after[host])
        changed = []
        for key, row in old.items():
            other = new.get(key)
            if other is not None and (row["status"], row["message"]) != (
                other["status"],
                other["message"],
            ):
                changed.append(
                    {
                        "task": row["task"],
                        "location": row["location"],
                        "before": {"status": row["status"], "message": row["message"]},
                        "after": {"status": other["status"], "message": other["message"]},
                    }
                )
        gone = [_brief(row) for key, row in old.items() if key not in new]
        added = [_brief(row) for key, row in new.items() if key not in old]
        if changed or gone or added:
            hosts[host] = {"changed": changed, "only_in_run1": gone, "only_in_run2": added}
    return {
        "hosts": hosts,
        "hosts_only_in_run1": [h for h in before if h not in after],
        "hosts_only_in_run2": [h for h in after if h not in before],
    }


def _keyed(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    seen: Counter[tuple[str, str]] = Counter()
    keyed = {}
    for row in rows:
        pair = (row["task"], row["location"] or "")
        keyed[(*pair, seen[pair])] = row
        seen[pair] += 1
    return keyed


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": row["task"],
        "location": row["location"],
        "status": row["status"],
        "message": row["message"],
    }


def group_by_host(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_host: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        by_host.setdefault(row["host_id"], []).append(row)
    return by_host
