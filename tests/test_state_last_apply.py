"""Each host's last apply, read from a real state database filled through the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from machineroom.state import StateStore, open_state


def apply_run(
    store: StateStore, hosts: dict[str, dict[str, int]], status: str = "ok", check: bool = False
) -> int:
    """A finished apply that ran a task on each host, its recap holding `hosts`' counts."""
    run_id = store.start_run("apply", "machineroom apply site.yml", args={"check": check})
    for host in hosts:
        store.record_task_result(run_id, host, "Write the banner", "changed")
    recap: dict[str, Any] = {"hosts": hosts, "totals": {}, "check": check}
    store.finish_run(run_id, status, recap)
    return run_id


def test_the_newest_apply_of_each_host(tmp_path: Path) -> None:
    with open_state(tmp_path / "state.db") as store:
        first = apply_run(store, {"web1": {"ok": 2, "changed": 1}, "db1": {"failed": 1}}, "failed")
        second = apply_run(store, {"web1": {"ok": 2, "changed": 0}})
        apply_run(store, {"web1": {"failed": 1}}, "failed", check=True)  # changed nothing
        running = store.start_run("apply", "machineroom apply site.yml", args={"check": False})
        store.record_task_result(running, "web2", "Write the banner", "changed")
        store.record_task_result(running, "web2", "Restart nginx", "failed")
        found = store.last_applies(["web1", "db1", "web2", "new1"])
        assert {h: (a.run_id, a.run_status) for h, a in found.items()} == {
            "web1": (second, "ok"),
            "db1": (first, "failed"),  # not in the newer run: the one before it
            "web2": (running, "running"),
        }
        assert found["db1"].stats == {"failed": 1}
        assert found["web2"].stats == {"changed": 1, "failed": 1}  # its results so far
        assert set(store.last_applies()) == {"web1", "db1", "web2"}
