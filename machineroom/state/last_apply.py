"""Each host's last apply: the newest `apply` run (check mode left out: it changed nothing)
that worked on the host, with the host's own counts from it; or the run still going.

Finished runs keep a per-host recap in `runs.summary.hosts`. Reading every recap of a large
fleet's history on each page would cost seconds (a 2,000-host run's recap is 250 kB of JSON),
so runs are walked newest first and the walk stops once every host asked about has its run:
usually after the first. Hosts no recent apply touched are dropped first (one index probe
each). A run is parsed only when it worked on a host still without one (its task results say
so, through the (run_id, host_id) index); a run without a recap (killed, then marked
interrupted) counts each host's task results instead. Only the newest `RECENT_RUNS`
applies are read: a host none of them touched has no last apply to show.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

RECENT_RUNS = 200
_FEW = 64  # hosts looked up one by one; more: one pass over a run's results


@dataclass(frozen=True)
class LastApply:
    """One host's part in its newest apply run."""

    host_id: str
    run_id: int
    run_status: str  # the run's: running, ok, failed, unreachable, interrupted, error
    started_at: str
    finished_at: str | None
    playbook: str | None
    # the host's recap counts (ok, changed, failed, unreachable, skipped, ...); while the run
    # is running, its task results so far by status
    stats: dict[str, int] = field(default_factory=dict)
    # whether `stats` is the host's entry in the run's recap (the run ended through the
    # recorder, which wrote each stopped host's `next_action`), not its task results counted
    # (a run still going, or killed before its recap)
    recap: bool = True


def last_applies(
    db: Any, host_ids: Iterable[str] | None = None, recent: int = RECENT_RUNS
) -> dict[str, LastApply]:
    """The last apply of each host of `host_ids` (None: of every host) among the newest
    `recent` apply runs, by host id; hosts without one are left out."""
    found: dict[str, LastApply] = {}
    runs = db.execute(
        "SELECT id, status, started_at, finished_at, playbook FROM runs"
        " WHERE kind = 'apply' AND coalesce(json_extract(args, '$.check'), 0) = 0"
        " ORDER BY id DESC LIMIT ?",
        [recent],
    ).fetchall()
    wanted = None if host_ids is None else set(host_ids)
    probed = False
    for run_id, status, started, finished, playbook in runs:
        left = None if wanted is None else wanted - found.keys()
        if left is not None and len(left) > _FEW and found and not probed:
            # many still without a run after the newest: most likely never applied
            wanted = found.keys() | _ever_applied(db, left, int(runs[-1][0]))
            left, probed = wanted - found.keys(), True
        if left is not None and not left:
            break
        if status == "running":
            # no recap yet: its task results so far
            _from_results(db, (run_id, "running", started, None, playbook), left, found)
            continue
        if left is not None and not _worked_on_any(db, int(run_id), left):
            continue
        row = db.execute("SELECT summary FROM runs WHERE id = ?", [run_id]).fetchone()
        recap = _object(row[0] if row else None).get("hosts")
        if not isinstance(recap, dict):
            # a run that ended without its recap (killed, its process gone: marked
            # interrupted later): what its task results say
            _from_results(db, (run_id, status, started, finished, playbook), left, found)
            continue
        for host_id, stats in recap.items():
            if host_id in found or (left is not None and host_id not in left):
                continue
            found[host_id] = LastApply(
                host_id, int(run_id), status, started, finished, playbook, _counts(stats)
            )
    return found


def _ever_applied(db: Any, hosts: set[str], oldest: int) -> set[str]:
    """The hosts of `hosts` with a task result in run `oldest` or a later one: one probe per
    host through the (host_id, finished_at) index. A host no run touched (a new one, one only
    collected) would otherwise keep the walk going through every run."""
    probe = "SELECT 1 FROM task_results WHERE host_id = ? AND run_id >= ? LIMIT 1"
    return {host for host in hosts if db.execute(probe, [host, oldest]).fetchone() is not None}


def _from_results(
    db: Any,
    run: tuple[Any, str, str, str | None, str | None],
    left: set[str] | None,
    found: dict[str, LastApply],
) -> None:
    """Each host's task results in `run` (id, status, started, finished, playbook) by status,
    as its LastApply, for the hosts of `left` (None: any) not found in a newer run."""
    run_id, status, started, finished, playbook = run
    for host_id, word, count in db.execute(
        "SELECT host_id, status, count(*) FROM task_results WHERE run_id = ?"
        " GROUP BY host_id, status",
        [run_id],
    ):
        if host_id in found and found[host_id].run_id != run_id:
            continue
        if left is not None and host_id not in left and host_id not in found:
            continue
        entry = found.setdefault(
            host_id,
            LastApply(host_id, int(run_id), status, started, finished, playbook, recap=False),
        )
        entry.stats[str(word)] = int(count)


def _worked_on_any(db: Any, run_id: int, hosts: set[str]) -> bool:
    """Whether the run has a task result on any of `hosts` (index probes for a few hosts, one
    pass over the run's results for many)."""
    if len(hosts) <= _FEW:
        marks = ", ".join("?" for _ in hosts)
        row = db.execute(
            f"SELECT 1 FROM task_results WHERE run_id = ? AND host_id IN ({marks}) LIMIT 1",
            [run_id, *hosts],
        ).fetchone()
        return row is not None
    return any(
        host_id in hosts
        for (host_id,) in db.execute(
            "SELECT DISTINCT host_id FROM task_results WHERE run_id = ?", [run_id]
        )
    )


def _object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v >= 0}
