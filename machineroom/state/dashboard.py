"""Read-only queries of the web dashboard and API: pages of runs, alerts and audit entries,
a host's runs, and metric series averaged into time buckets (so a month of 5-minute samples
becomes a few hundred chart points inside SQLite, not in Python). Open alert counts come
from `store.alerts`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from machineroom.state.base import DatabaseHandle
from machineroom.state.records import RunRow, run_row, sql_where

ALERT_STATES = ("open", "resolved")
# 1 when a run was in check mode (its summary says so once it ended, its args from the start)
_RUN_CHECK = (
    "(coalesce(json_extract(r.summary, '$.check'), json_extract(r.args, '$.check'), 0) != 0)"
)


class DashboardStore:
    """Queries shaped for the dashboard's pages and the JSON API (`store.dashboard`)."""

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle

    def run_page(
        self,
        limit: int = 50,
        before: int | None = None,
        kind: str | None = None,
        status: str | None = None,
    ) -> list[RunRow]:
        """Runs newest first, `limit` of them with ids below `before`, by kind and status."""
        where, params = sql_where(("id < ?", before), ("kind = ?", kind), ("status = ?", status))
        with self._handle.read() as db:
            rows = list(
                db.query(f"SELECT * FROM runs{where} ORDER BY id DESC LIMIT ?", [*params, limit])
            )
        return [run_row(row) for row in rows]

    def host_runs(self, host_id: str, limit: int = 20) -> list[RunRow]:
        """The latest runs that did something on the host (a task result or a command)."""
        with self._handle.read() as db:
            rows = list(
                db.query(
                    "SELECT * FROM runs WHERE id IN ("
                    " SELECT run_id FROM (SELECT run_id FROM task_results WHERE host_id = ?"
                    "  ORDER BY finished_at DESC LIMIT 500)"
                    " UNION SELECT run_id FROM (SELECT run_id FROM audit_log WHERE host_id = ?"
                    "  AND run_id IS NOT NULL ORDER BY at DESC LIMIT 500))"
                    " ORDER BY id DESC LIMIT ?",
                    [host_id, host_id, limit],
                )
            )
        return [run_row(row) for row in rows]

    def run_by_trigger(self, trigger: str) -> RunRow | None:
        """The run recorded with the trigger `trigger` (its RunRequest's), or None (yet)."""
        with self._handle.read() as db:
            rows = list(
                db.query("SELECT * FROM runs WHERE trigger = ? ORDER BY id LIMIT 1", [trigger])
            )
        return run_row(rows[0]) if rows else None

    def result_counts(
        self, run_ids: Iterable[int], host_id: str | None = None
    ) -> dict[int, dict[str, int]]:
        """For each run: how many task results of each status (optionally on one host), and
        under `ignored` how many of the failed ones the task ignored (`ignore_errors`)."""
        ids = [int(i) for i in run_ids]
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        sql = (
            "SELECT run_id, status, count(*), sum(ignored) FROM task_results"
            f" WHERE run_id IN ({marks})"
        )
        params: list[Any] = list(ids)
        if host_id is not None:
            sql += " AND host_id = ?"
            params.append(host_id)
        counts: dict[int, dict[str, int]] = {i: {} for i in ids}
        with self._handle.read() as db:
            for run_id, status, count, ignored in db.execute(
                sql + " GROUP BY run_id, status", params
            ):
                counts[int(run_id)][status] = int(count)
                if status == "failed" and ignored:
                    counts[int(run_id)]["ignored"] = int(ignored)
        return counts

    def result_cells(self, run_id: int) -> list[dict[str, Any]]:
        """A run's task results in the order they were recorded, without their output: what
        a matrix cell needs (status, ignored, message), and `digest`, a hash of the stdout,
        stderr and diff, which tells results that differ only by their output apart (the
        output itself stays in the database: `results_in_full` reads the few shown)."""
        with self._handle.read() as db:
            db.conn.create_function("mr_digest", 3, _digest, deterministic=True)
            return list(
                db.query(
                    "SELECT id, run_id, host_id, task, location, status, ignored, duration,"
                    " message, diff != '' AS has_diff, mr_digest(CAST(stdout AS BLOB),"
                    " CAST(stderr AS BLOB), CAST(diff AS BLOB)) AS digest"
                    " FROM task_results WHERE run_id = ? ORDER BY id",
                    [run_id],
                )
            )

    def results_in_full(self, run_id: int, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Task results of the run by id, with their whole output."""
        wanted = sorted({int(i) for i in ids})
        found: dict[int, dict[str, Any]] = {}
        with self._handle.read() as db:
            for start in range(0, len(wanted), 500):  # under SQLite's variable limit
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                for row in db.query(
                    f"SELECT * FROM task_results WHERE run_id = ? AND id IN ({marks})",
                    [run_id, *chunk],
                ):
                    found[int(row["id"])] = row
        return found

    def task_results_after(self, run_id: int, after_id: int = 0) -> list[dict[str, Any]]:
        """A run's task results recorded after result id `after_id` (live progress)."""
        with self._handle.read() as db:
            return list(
                db.query(
                    "SELECT * FROM task_results WHERE run_id = ? AND id > ? ORDER BY id",
                    [run_id, after_id],
                )
            )

    def alert_page(
        self, state: str | None = None, host_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Alerts newest first, optionally only open or resolved ones, or one host's."""
        where, params = sql_where(("state = ?", state), ("host_id = ?", host_id))
        with self._handle.read() as db:
            return list(
                db.query(
                    f"SELECT * FROM alerts{where} ORDER BY opened_at DESC, id DESC LIMIT ?",
                    [*params, limit],
                )
            )

    def alert_board(
        self, state: str | None = None, resolved_limit: int = 500
    ) -> list[dict[str, Any]]:
        """Every open alert, however old, then the newest `resolved_limit` resolved ones
        (each part newest first); `state` keeps only one of the two parts."""
        parts: list[tuple[str, int | None]] = []
        if state in (None, "open"):
            parts.append(("open", None))
        if state in (None, "resolved"):
            parts.append(("resolved", resolved_limit))
        rows: list[dict[str, Any]] = []
        with self._handle.read() as db:
            for wanted, limit in parts:
                rows += db.query(
                    "SELECT * FROM alerts WHERE state = ? ORDER BY opened_at DESC, id DESC LIMIT ?",
                    [wanted, -1 if limit is None else limit],  # -1: SQLite's "no limit"
                )
        return rows

    def audit_page(
        self,
        host_id: str | None = None,
        run_id: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit-log entries newest first, filtered by host and/or run, ids below `before`."""
        where, params = sql_where(
            ("host_id = ?", host_id), ("run_id = ?", run_id), ("id < ?", before)
        )
        with self._handle.read() as db:
            return list(
                db.query(
                    f"SELECT * FROM audit_log{where} ORDER BY id DESC LIMIT ?", [*params, limit]
                )
            )

    def binned_series(
        self, host_id: str, metric: str, since: int, until: int, step: int
    ) -> list[tuple[int, float]]:
        """(bucket start, mean value) of a host's metric between `since` and `until`, averaged
        over buckets of `step` seconds (1 keeps every sample); oldest first."""
        step = max(int(step), 1)
        with self._handle.read() as db:
            found = db.execute(
                "SELECT id FROM series WHERE host_id = ? AND metric = ?", [host_id, metric]
            ).fetchone()
            if found is None:
                return []
            rows = db.execute(
                "SELECT (at / ?) * ? AS bucket, avg(value) FROM samples"
                " WHERE series_id = ? AND at >= ? AND at <= ? GROUP BY bucket ORDER BY bucket",
                [step, step, found[0], since, until],
            ).fetchall()
        return [(int(at), float(value)) for at, value in rows]

    def run_search(
        self,
        limit: int = 50,
        before: int | None = None,
        *,
        kind: str | None = None,
        status: str | None = None,
        host_id: str | None = None,
        playbook: str | None = None,
    ) -> list[RunRow]:
        """Runs newest first, `limit` of them with ids below `before`, by kind, status,
        playbook (its recorded path) and host (a task result or a command on it)."""
        on_host = (
            "id IN (SELECT run_id FROM task_results WHERE host_id = ?"
            " UNION SELECT run_id FROM audit_log WHERE host_id = ? AND run_id IS NOT NULL)"
        )
        where, params = sql_where(
            ("id < ?", before),
            ("kind = ?", kind),
            ("status = ?", status),
            ("playbook = ?", playbook),
            (on_host, host_id),
        )
        if host_id is not None:
            params.append(host_id)  # the clause reads it twice
        with self._handle.read() as db:
            rows = list(
                db.query(f"SELECT * FROM runs{where} ORDER BY id DESC LIMIT ?", [*params, limit])
            )
        return [run_row(row) for row in rows]

    def run_playbooks(self, limit: int = 200) -> list[str]:
        """The playbooks runs were recorded with (their paths), most recently run first."""
        with self._handle.read() as db:
            rows = db.execute(
                "SELECT playbook FROM runs WHERE playbook IS NOT NULL AND kind = 'apply'"
                " GROUP BY playbook ORDER BY max(id) DESC LIMIT ?",
                [limit],
            ).fetchall()
        return [str(row[0]) for row in rows]

    def changes(
        self,
        host_id: str | None = None,
        since: str | None = None,
        before: int | None = None,
        limit: int = 100,
        check: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Task results that changed something (or would have, in check mode), newest first,
        with their run's kind, playbook and check mode: on one host, since a time, ids below
        `before`, of check-mode runs only (`check` True) or of real ones only (False)."""
        # status as a literal (not a parameter): only then may SQLite walk the partial index
        # of changed results (task_results_changed), newest first, instead of every result
        where, params = sql_where(
            ("t.host_id = ?", host_id),
            ("t.finished_at >= ?", since),
            ("t.id < ?", before),
            (f"{_RUN_CHECK} = ?", None if check is None else int(check)),
        )
        with self._handle.read() as db:
            return list(
                db.query(
                    "SELECT t.*, r.kind AS run_kind, r.playbook AS run_playbook,"
                    f" r.status AS run_status, {_RUN_CHECK} AS run_check"
                    " FROM task_results AS t JOIN runs AS r ON r.id = t.run_id"
                    f" WHERE t.status = 'changed'{where.replace(' WHERE ', ' AND ', 1)}"
                    " ORDER BY t.id DESC LIMIT ?",
                    [*params, limit],
                )
            )


def _digest(*texts: bytes | str | None) -> str:
    """A hash of several texts, given as their bytes (which text each part is counts)."""
    hashed = hashlib.blake2b(digest_size=16)
    for text in texts:
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text or b""
        hashed.update(len(data).to_bytes(8, "big"))
        hashed.update(data)
    return hashed.hexdigest()
