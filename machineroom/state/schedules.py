"""What the scheduler did: runs started and finished, due times skipped and missed.

One row of `schedule_events` per event; `due_at` is the due time the event is about (for a
`missed` event the latest due time missed), `at` when it happened. A `started` event gets the
run's id once the child process has recorded its run (found by trigger and pid).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from machineroom.errors import StateError
from machineroom.state.base import DatabaseHandle
from machineroom.state.records import iso, utc_now

SCHEDULE_EVENTS = frozenset({"started", "finished", "skipped", "missed"})


class ScheduleStore:
    """The scheduler's events, the subject `store.schedules` of the state store."""

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle

    def record_schedule_event(
        self,
        schedule: str,
        due_at: datetime,
        event: str,
        *,
        run_id: int | None = None,
        detail: str = "",
        at: datetime | None = None,
    ) -> int:
        """Append an event of `schedule` about its due time `due_at`; return the event's id."""
        if event not in SCHEDULE_EVENTS:
            raise StateError(
                f"schedule event {event!r} is not one of {', '.join(sorted(SCHEDULE_EVENTS))}"
            )
        with self._handle.write() as db:
            cursor = db.execute(
                "INSERT INTO schedule_events (schedule, due_at, at, event, run_id, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    schedule,
                    iso(due_at),
                    iso(at or utc_now()),
                    event,
                    run_id,
                    self._handle.mask(detail),
                ],
            )
            return int(cursor.lastrowid)

    def set_schedule_event_run(self, event_id: int, run_id: int) -> None:
        """Attach the run a `started` event led to, once it is known."""
        with self._handle.write() as db:
            db.execute("UPDATE schedule_events SET run_id = ? WHERE id = ?", [run_id, event_id])

    def schedule_events(self, schedule: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest events, newest first, of one schedule or of all."""
        sql = "SELECT * FROM schedule_events"
        params: list[Any] = []
        if schedule is not None:
            sql += " WHERE schedule = ?"
            params.append(schedule)
        with self._handle.read() as db:
            return list(db.query(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]))

    def last_schedule_due(self, schedule: str) -> str | None:
        """The latest due time any event of `schedule` is about (ISO text), or None."""
        with self._handle.read() as db:
            row = db.execute(
                "SELECT max(due_at) FROM schedule_events WHERE schedule = ?", [schedule]
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def triggered_run(self, trigger: str, pid: int, since: datetime) -> tuple[int, str] | None:
        """The run (id, status) a process `pid` recorded with the trigger `trigger` (its
        RunRequest's) at or after `since`; None while it has not recorded one."""
        with self._handle.read() as db:
            row = db.execute(
                "SELECT id, status FROM runs WHERE trigger = ? AND pid = ? AND started_at >= ?"
                " ORDER BY id DESC LIMIT 1",
                [trigger, pid, iso(since)],
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))
