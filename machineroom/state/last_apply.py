"""Each host's last apply: the newest `apply` run (check mode left out: it changed nothing)
whose recap holds the host, with the host's own counts from it; or the run still going.

Finished runs keep a per-host recap in `runs.summary.hosts`; SQLite walks those objects
(`json_each`) and keeps the newest run per host (`row_number()`), so a page of thousands of
hosts costs one query, not one per host. Only the newest `RECENT_RUNS` applies are read: a
host none of them touched has no last apply to show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

RECENT_RUNS = 200

_NOT_CHECK = "coalesce(json_extract(args, '$.check'), 0) = 0"


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


def last_applies(db: Any, recent: int = RECENT_RUNS) -> dict[str, LastApply]:
    """Every host's last apply among the newest `recent` apply runs, by host id."""
    found: dict[str, LastApply] = {}
    rows = db.execute(
        "WITH recent AS (SELECT id, status, started_at, finished_at, playbook, summary"
        f" FROM runs WHERE kind = 'apply' AND status != 'running' AND {_NOT_CHECK}"
        " ORDER BY id DESC LIMIT ?)"
        " SELECT host_id, id, status, started_at, finished_at, playbook, stats FROM ("
        "  SELECT hosts.key AS host_id, r.id, r.status, r.started_at, r.finished_at,"
        "   r.playbook, hosts.value AS stats,"
        "   row_number() OVER (PARTITION BY hosts.key ORDER BY r.id DESC) AS n"
        "  FROM recent AS r, json_each(r.summary, '$.hosts') AS hosts"
        "  WHERE json_valid(r.summary)) WHERE n = 1",
        [recent],
    ).fetchall()
    for host_id, run_id, status, started, finished, playbook, stats in rows:
        found[str(host_id)] = LastApply(
            str(host_id), int(run_id), status, started, finished, playbook, _counts(stats)
        )
    running = db.execute(
        "SELECT r.id, r.started_at, r.playbook, t.host_id, t.status, count(*)"
        " FROM runs AS r JOIN task_results AS t ON t.run_id = r.id"
        " WHERE r.kind = 'apply' AND r.status = 'running'"
        " AND coalesce(json_extract(r.args, '$.check'), 0) = 0"
        " GROUP BY r.id, t.host_id, t.status ORDER BY r.id",
    ).fetchall()
    for run_id, started, playbook, host_id, status, count in running:
        current = found.get(host_id)
        if current is None or current.run_id < run_id:
            current = LastApply(str(host_id), int(run_id), "running", started, None, playbook)
            found[str(host_id)] = current
        if current.run_id == run_id:
            current.stats[str(status)] = int(count)
    return found


def _counts(text: Any) -> dict[str, int]:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v >= 0}
