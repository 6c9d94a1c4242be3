"""Alerts: opened and resolved, with their notifications (see fleet/alerts.py).

At most one open row per (rule, host, subject): the partial unique index `alerts_one_open`
enforces it, so two evaluations racing (a scheduled and a manual collection) cannot open the
same alert twice; opening and resolving report whether this call did it, and only the caller
that did notifies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from machineroom.state.base import DatabaseHandle
from machineroom.state.records import from_unix, iso, sql_where

NOTIFY_ERROR_LIMIT = 2000  # characters of notify_error kept


@dataclass(frozen=True)
class AlertRow:
    """One row of `alerts`."""

    id: int
    rule: str
    host_id: str
    subject: str
    severity: str
    state: str  # open | resolved
    opened_at: str
    resolved_at: str | None
    value: float | None
    message: str
    notified_open_at: str | None
    notified_resolved_at: str | None
    notify_error: str


@dataclass(frozen=True)
class NewAlert:
    """An alert to open."""

    rule: str
    host_id: str
    subject: str
    severity: str
    value: float | None
    message: str


@dataclass(frozen=True)
class Resolution:
    """An open alert to resolve: its new message says why (`value` keeps the reading that
    opened it; the one that resolves it, when there is one, is in the message)."""

    alert_id: int
    value: float | None
    message: str


def _row(row: dict[str, Any]) -> AlertRow:
    return AlertRow(**{name: row[name] for name in AlertRow.__dataclass_fields__})


class AlertStore:
    """The alerts subject of the state store (`store.alerts`)."""

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle

    def open_alerts(self, host_ids: Iterable[str] | None = None) -> list[AlertRow]:
        """The open alerts (of the hosts named, or all), oldest first."""
        with self._handle.read() as db:
            rows = [
                _row(r) for r in db.query("SELECT * FROM alerts WHERE state = 'open' ORDER BY id")
            ]
        if host_ids is None:
            return rows
        wanted = set(host_ids)
        return [row for row in rows if row.host_id in wanted]

    def open_alert_counts(self) -> dict[str, int]:
        """How many alerts are open, by host id."""
        with self._handle.read() as db:
            rows = db.execute(
                "SELECT host_id, COUNT(*) FROM alerts WHERE state = 'open' GROUP BY host_id"
            ).fetchall()
        return {str(host): int(count) for host, count in rows}

    def listing(
        self, *, include_resolved: bool = False, host_id: str | None = None, limit: int = 500
    ) -> list[AlertRow]:
        """Alerts for listing: open ones first, then resolved ones; newest first in each."""
        where, params = sql_where(
            ("state = ?", None if include_resolved else "open"), ("host_id = ?", host_id)
        )
        sql = f"SELECT * FROM alerts{where} ORDER BY state = 'open' DESC, opened_at DESC, id DESC"
        sql += " LIMIT ?"
        with self._handle.read() as db:
            return [_row(r) for r in db.query(sql, [*params, limit])]

    def record_alert_changes(
        self, openings: Sequence[NewAlert], resolutions: Sequence[Resolution], at: int
    ) -> tuple[list[AlertRow], list[AlertRow]]:
        """Open and resolve alerts in one transaction at unix time `at`; return the rows this
        call opened and resolved (an alert already open, or already resolved by someone else
        meanwhile, is left out: it is not this call's to notify)."""
        when = iso(from_unix(at))
        opened_ids, resolved_ids = [], []
        with self._handle.write() as db:
            for item in openings:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO alerts (rule, host_id, subject, severity, state,"
                    " opened_at, value, message) VALUES (?, ?, ?, ?, 'open', ?, ?, ?)",
                    [
                        item.rule,
                        item.host_id,
                        item.subject,
                        item.severity,
                        when,
                        item.value,
                        self._handle.mask(item.message),
                    ],
                )
                if cursor.rowcount == 1:
                    opened_ids.append(int(cursor.lastrowid))
            for res in resolutions:
                cursor = db.execute(
                    "UPDATE alerts SET state = 'resolved', resolved_at = ?, message = ?"
                    " WHERE id = ? AND state = 'open'",
                    [when, self._handle.mask(res.message), res.alert_id],
                )
                if cursor.rowcount == 1:
                    resolved_ids.append(res.alert_id)
            opened = self._alert_rows(db, opened_ids)
            resolved = self._alert_rows(db, resolved_ids)
        return opened, resolved

    def _alert_rows(self, db: Any, ids: Sequence[int]) -> list[AlertRow]:
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        return [
            _row(r)
            for r in db.query(f"SELECT * FROM alerts WHERE id IN ({marks}) ORDER BY id", list(ids))
        ]

    def unnotified_alerts(self) -> list[AlertRow]:
        """Alerts whose opening or resolving has not been notified yet: the ones just changed,
        and those a crash left between recording and notifying."""
        with self._handle.read() as db:
            return [
                _row(r)
                for r in db.query(
                    "SELECT * FROM alerts WHERE notified_open_at IS NULL"
                    " OR (state = 'resolved' AND notified_resolved_at IS NULL) ORDER BY id"
                )
            ]

    def mark_alert_notified(
        self, alert_id: int, event: Literal["opened", "resolved"], at: int, errors: Sequence[str]
    ) -> bool:
        """Record that the opening (or resolving) of an alert was notified at `at`, with the
        notifiers' errors (appended to notify_error); False when it already was."""
        column = "notified_open_at" if event == "opened" else "notified_resolved_at"
        text = self._handle.mask("; ".join(errors))
        with self._handle.write() as db:
            cursor = db.execute(
                f"UPDATE alerts SET {column} = ?,"
                " notify_error = substr(CASE WHEN ? = '' THEN notify_error"
                " WHEN notify_error = '' THEN ? ELSE notify_error || '; ' || ? END, 1, ?)"
                f" WHERE id = ? AND {column} IS NULL",
                [iso(from_unix(at)), text, text, text, NOTIFY_ERROR_LIMIT, alert_id],
            )
            return bool(cursor.rowcount == 1)
