"""Last-apply benchmark: how long the fleet pages take to find each host's last apply.

    .venv/bin/python benchmarks/last_apply.py [--db PATH]

Fills a state database (kept at --db if given and reused when it exists) with 2,000 hosts,
200 finished applies of 5 tasks on every host (their recaps as the recorder writes them) and
100 more servers no apply touched (new inventory hosts), then times, best of 3:
`last_applies` for all 2,100 hosts (the overview), for one host, and `find_host` (the host page
and /api/hosts/ID). Measured on the 2-core development machine: the overview's lookup went
from 0.6-0.8 s to 0.015 s, the host page from 0.8 s to 3 ms.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machineroom.state import open_state
from machineroom.web import data

HOSTS = [f"h{i}" for i in range(2000)]
NEW = [f"n{i}" for i in range(100)]
RUNS, TASKS = 200, 5


def fill(path: Path) -> None:
    """The synthetic database, written with plain SQL (the store's schema)."""
    with open_state(path):
        pass  # creates the schema
    db = sqlite3.connect(path)
    recap = json.dumps({"hosts": {h: {"ok": 4, "changed": 1} for h in HOSTS}, "check": False})
    for _ in range(RUNS):
        run_id = db.execute(
            "INSERT INTO runs (kind, command, user, workstation, pid, started_at, finished_at,"
            " status, playbook, args, summary) VALUES ('apply', 'machineroom apply site.yml',"
            " 'bench', 'bench', 1, '2026-01-01T00:00:00Z', '2026-01-01T00:10:00Z', 'ok',"
            " 'site.yml', '{\"check\": false}', ?)",
            [recap],
        ).lastrowid
        db.executemany(
            "INSERT INTO task_results (run_id, host_id, task, status, duration, stdout, stderr,"
            " diff, message, started_at, finished_at) VALUES (?, ?, ?, 'ok', 0, '', '', '', '',"
            " '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z')",
            [(run_id, h, f"task {t}") for h in HOSTS for t in range(TASKS)],
        )
    db.executemany(
        "INSERT INTO server_room (id, host, user, pass, port, description, res, next_action)"
        " VALUES (?, '10.0.0.1', 'root', '', 22, '', '{}', '{}')",
        [(h,) for h in HOSTS + NEW],
    )
    db.commit()
    db.close()


def best(call: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="database to fill once and reuse")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "state.db"
        if not path.exists():
            fill(path)
        with open_state(path) as store:
            rows = [
                (
                    "last_applies, 2,100 hosts (100 never applied)",
                    lambda: store.last_applies(HOSTS + NEW),
                ),
                ("last_applies, 1 applied host", lambda: store.last_applies(["h7"])),
                (
                    "find_host h7 (host page, /api/hosts/h7)",
                    lambda: data.find_host(store, None, "h7"),
                ),
                ("find_host n5 (never applied)", lambda: data.find_host(store, None, "n5")),
            ]
            print("| lookup | best of 3 |\n|---|---|")
            for label, call in rows:
                print(f"| {label} | {best(call):.3f} s |")


if __name__ == "__main__":
    main()
