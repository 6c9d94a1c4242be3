"""Each host's last apply, read from a real state database filled through the store."""

from __future__ import annotations

import sqlite3
import subprocess
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


def test_a_killed_apply_is_the_last_one_and_says_interrupted(tmp_path: Path) -> None:
    """A run whose process died has no recap: marked interrupted, its task results count."""
    with open_state(tmp_path / "state.db") as store:
        older = apply_run(store, {"web1": {"ok": 1}, "web2": {"ok": 1}})
        killed = store.start_run("apply", "machineroom apply site.yml", args={"check": False})
        store.record_task_result(killed, "web1", "Write the banner", "changed")
        store.record_task_result(killed, "web1", "Restart nginx", "ok")
    dead = subprocess.Popen(["true"])  # a process that no longer exists
    dead.wait()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE runs SET pid = ?, pid_start = NULL WHERE id = ?", [dead.pid, killed])
    with open_state(tmp_path / "state.db") as store:
        assert store.mark_interrupted_runs() == 1
        found = store.last_applies(["web1", "web2"])
    assert (found["web1"].run_id, found["web1"].run_status) == (killed, "interrupted")
    assert found["web1"].stats == {"changed": 1, "ok": 1}
    assert found["web1"].finished_at is not None and not found["web1"].recap
    assert (found["web2"].run_id, found["web2"].run_status) == (older, "ok")  # not in it


def test_many_hosts_never_applied_leave_the_others_found(tmp_path: Path) -> None:
    """More than 64 hosts without an apply (new ones) do not hide the older runs' hosts."""
    with open_state(tmp_path / "state.db") as store:
        first = apply_run(store, {f"old{i}": {"ok": 1} for i in range(70)})
        second = apply_run(store, {"web1": {"changed": 1}})
        store.record_task_result(  # a host only a one-task run touched: no apply
            store.start_run("run", "machineroom run all 'true'"), "adhoc1", "command", "ok"
        )
        wanted = [f"old{i}" for i in range(70)] + [f"new{i}" for i in range(80)] + ["web1"]
        found = store.last_applies([*wanted, "adhoc1"])
    assert {h: a.run_id for h, a in found.items()} == {
        **{f"old{i}": first for i in range(70)},
        "web1": second,
    }
