"""Metric samples and each host's latest collection (`series`, `samples`, `host_status`).

A sample is (host, metric, time, value); `series` gives each (host, metric) pair a small
integer so `samples` (WITHOUT ROWID, keyed by series and time) stores a sample in about 20
bytes and reads one host's metric over a time range as one contiguous index scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from machineroom.state.base import DatabaseHandle
from machineroom.state.records import dump_json, from_unix, iso, load_object, utc_now


@dataclass(frozen=True)
class HostCollection:
    """What one collection learned about one host (or that it could not reach it)."""

    host_id: str
    at: int  # unix seconds
    reachable: bool
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    containers: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)


class MetricsStore:
    """The metrics subject of the state store (`store.metrics`)."""

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle
        # (host, metric) -> series id, so a collection does not look each one up again.
        self._series_ids: dict[tuple[str, str], int] = {}
        # Series ids made in a rolled-back transaction do not exist: forget them.
        handle.on_rollback(self._series_ids.clear)

    def record_collections(
        self, collections: Sequence[HostCollection], run_id: int | None = None
    ) -> None:
        """Store the samples of many hosts and make them each host's latest status, in one
        transaction. An unreachable host keeps its last metrics and counts one more failure."""
        with self._handle.write() as db:
            for item in collections:
                self._record_one(db, item, run_id)

    def _record_one(self, db: Any, item: HostCollection, run_id: int | None) -> None:
        when = iso(from_unix(item.at))
        previous = db.execute(
            "SELECT failures, metrics, containers, counters, last_seen FROM host_status"
            " WHERE host_id = ?",
            [item.host_id],
        ).fetchone()
        if item.reachable:
            rows = [
                (self._series_id(db, item.host_id, name), item.at, float(value))
                for name, value in item.metrics.items()
            ]
            rows.append((self._series_id(db, item.host_id, "up"), item.at, 1.0))
            db.conn.executemany(
                "INSERT OR REPLACE INTO samples (series_id, at, value) VALUES (?, ?, ?)", rows
            )
            values: tuple[Any, ...] = (
                1,
                when,
                when,
                0,
                "",
                run_id,
                dump_json(item.metrics),
                dump_json(self._handle.mask_data(item.containers)),
                dump_json(item.counters),
            )
        else:
            db.execute(
                "INSERT OR REPLACE INTO samples (series_id, at, value) VALUES (?, ?, 0.0)",
                [self._series_id(db, item.host_id, "up"), item.at],
            )
            failures = (int(previous[0]) if previous else 0) + 1
            values = (
                0,
                when,
                previous[4] if previous else None,
                failures,
                self._handle.mask(item.error),
                run_id,
                previous[1] if previous else "{}",
                previous[2] if previous else "[]",
                previous[3] if previous else "{}",
            )
        # Keep `machineroom ls` (server_room.res) in step with what the collection saw.
        if item.reachable:
            db.execute(
                "UPDATE server_room SET res = json_set(res, '$.reachable', json('true'),"
                " '$.last_seen', ?) WHERE id = ?",
                [when, item.host_id],
            )
        else:
            db.execute(
                "UPDATE server_room SET res = json_set(res, '$.reachable', json('false'))"
                " WHERE id = ?",
                [item.host_id],
            )
        db.execute(
            "INSERT OR REPLACE INTO host_status (reachable, last_attempt, last_seen, failures,"
            " error, run_id, metrics, containers, counters, host_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*values, item.host_id],
        )

    def _series_id(self, db: Any, host_id: str, metric: str) -> int:
        cache = self._series_ids
        key = (host_id, metric)
        if key not in cache:
            db.execute(
                "INSERT OR IGNORE INTO series (host_id, metric) VALUES (?, ?)", [host_id, metric]
            )
            row = db.execute(
                "SELECT id FROM series WHERE host_id = ? AND metric = ?", [host_id, metric]
            ).fetchone()
            cache[key] = int(row[0])
        return int(cache[key])

    def host_statuses(self, host_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The latest collection of each host (all hosts, or those named), by host id; JSON
        columns parsed."""
        with self._handle.read() as db:
            rows = list(db.query("SELECT * FROM host_status ORDER BY host_id"))
        wanted = None if host_ids is None else set(host_ids)
        result = {}
        for row in rows:
            if wanted is not None and row["host_id"] not in wanted:
                continue
            where = f"host_status {row['host_id']!r}"
            row["reachable"] = bool(row["reachable"])
            row["metrics"] = load_object(row["metrics"], f"{where} metrics")
            row["counters"] = load_object(row["counters"], f"{where} counters")
            row["containers"] = _load_list(row["containers"])
            result[row["host_id"]] = row
        return result

    def metric_names(self, host_id: str) -> list[str]:
        """The metrics recorded for a host, sorted."""
        with self._handle.read() as db:
            rows = db.execute(
                "SELECT metric FROM series WHERE host_id = ? ORDER BY metric", [host_id]
            ).fetchall()
        return [row[0] for row in rows]

    def metric_series(
        self, host_id: str, metric: str, since: int, until: int | None = None
    ) -> list[tuple[int, float]]:
        """(unix time, value) samples of one host's metric from `since` (to `until`), oldest
        first."""
        sql = (
            "SELECT samples.at, samples.value FROM series JOIN samples"
            " ON samples.series_id = series.id"
            " WHERE series.host_id = ? AND series.metric = ? AND samples.at >= ?"
        )
        params: list[Any] = [host_id, metric, since]
        if until is not None:
            sql += " AND samples.at <= ?"
            params.append(until)
        with self._handle.read() as db:
            rows = db.execute(sql + " ORDER BY samples.at", params).fetchall()
        return [(int(at), float(value)) for at, value in rows]

    def prune_samples(self, older_than: int) -> int:
        """Delete samples taken before unix time `older_than`; return how many went.

        One DELETE per series walks the primary key from its start, so pruning costs the
        rows deleted, not the table's size.
        """
        with self._handle.write() as db:
            ids = [row[0] for row in db.execute("SELECT id FROM series").fetchall()]
            deleted = 0
            for series_id in ids:
                cursor = db.execute(
                    "DELETE FROM samples WHERE series_id = ? AND at < ?", [series_id, older_than]
                )
                deleted += max(cursor.rowcount, 0)
            return deleted

    def forget_host_metrics(self, host_id: str) -> None:
        """Remove a host's samples and status (a retired host, a renamed id)."""
        with self._handle.write() as db:
            db.execute("DELETE FROM series WHERE host_id = ?", [host_id])
            db.execute("DELETE FROM host_status WHERE host_id = ?", [host_id])
        self._series_ids.clear()


def _load_list(text: str | None) -> list[Any]:
    import json

    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def now_unix() -> int:
    """The current time in whole unix seconds (the unit of `samples.at`)."""
    return int(utc_now().timestamp())
