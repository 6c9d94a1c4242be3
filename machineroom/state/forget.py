"""Forgetting hosts: their `server_room` row and what only makes sense for a known server,
in one transaction; the run history stays.

A host is known to the database when any table keyed by host holds it: `server_room`, the
latest collection (`host_status`), metric series, facts or alerts (a host collected once and
since dropped from the inventory has no `server_room` row, yet the dashboard shows it).
Forgetting deletes those rows, with the pending `next_action` and every sample of its series.
`task_results` and `audit_log` rows stay: they are what runs did, and a run's page still
shows them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from machineroom.errors import InputError
from machineroom.state.base import DatabaseHandle
from machineroom.state.records import load_object

# Every table keyed by a host id whose rows go when the host is forgotten.
_HOST_TABLES = ("server_room", "host_status", "series", "facts", "alerts")


@dataclass(frozen=True)
class Forgotten:
    """What forgetting one host removed, and what of its history stayed."""

    id: str
    server: bool  # it had a server_room row
    pending: bool  # its next_action said something was pending
    facts: int  # rows of facts history
    series: int  # metric series (each with its samples)
    samples: int
    alerts: int  # open and resolved
    history: int  # task results and audit-log entries kept


def known_host_ids(db: Any) -> set[str]:
    """Every host id any host-keyed table holds."""
    union = " UNION ".join(
        f"SELECT {'id' if table == 'server_room' else 'host_id'} FROM {table}"
        for table in _HOST_TABLES
    )
    return {str(row[0]) for row in db.execute(union).fetchall()}


def close_ids(name: str, known: Iterable[str]) -> list[str]:
    """Up to 3 ids of `known` close to `name`, case ignored (`WEB1` finds `web1`)."""
    by_folded: dict[str, list[str]] = {}
    for item in sorted(known):
        by_folded.setdefault(item.lower(), []).append(item)
    close = difflib.get_close_matches(name.lower(), list(by_folded), n=3, cutoff=0.5)
    return [item for folded in close for item in by_folded[folded]][:3]


def unknown_hosts_error(unknown: Sequence[str], known: set[str]) -> InputError:
    """`unknown host 'web9' (did you mean 'web1'?)`, for each id; nothing was forgotten."""
    parts = []
    for name in unknown:
        close = close_ids(name, known)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"unknown host {name!r}{hint}")
    if not known:
        parts.append("the state database knows no host yet")
    return InputError("; ".join(parts) + "; nothing was forgotten")


def forget_hosts(
    handle: DatabaseHandle, ids: Sequence[str], dry_run: bool = False
) -> list[Forgotten]:
    """Count what the hosts `ids` have, then delete their `server_room`, `facts` and `alerts`
    rows (StateStore.forget_servers adds the metrics and makes it one transaction); an id the
    database does not know is an InputError naming close ones, and then nothing is deleted.
    `dry_run`: only count."""
    wanted = list(dict.fromkeys(ids))
    with handle.write() as db:
        known = known_host_ids(db)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise unknown_hosts_error(unknown, known)
        return [_forget_one(db, name, dry_run) for name in wanted]


def _count(db: Any, sql: str, host_id: str) -> int:
    return int(db.execute(sql, [host_id]).fetchone()[0])


def _forget_one(db: Any, host_id: str, dry_run: bool) -> Forgotten:
    row = db.execute("SELECT next_action FROM server_room WHERE id = ?", [host_id]).fetchone()
    pending = bool(row and load_object(row[0], f"server_room {host_id!r} next_action"))
    forgotten = Forgotten(
        id=host_id,
        server=row is not None,
        pending=pending,
        facts=_count(db, "SELECT count(*) FROM facts WHERE host_id = ?", host_id),
        series=_count(db, "SELECT count(*) FROM series WHERE host_id = ?", host_id),
        samples=_count(
            db,
            "SELECT count(*) FROM samples WHERE series_id IN"
            " (SELECT id FROM series WHERE host_id = ?)",
            host_id,
        ),
        alerts=_count(db, "SELECT count(*) FROM alerts WHERE host_id = ?", host_id),
        history=_count(db, "SELECT count(*) FROM task_results WHERE host_id = ?", host_id)
        + _count(db, "SELECT count(*) FROM audit_log WHERE host_id = ?", host_id),
    )
    if dry_run:
        return forgotten
    db.execute("DELETE FROM server_room WHERE id = ?", [host_id])
    db.execute("DELETE FROM facts WHERE host_id = ?", [host_id])
    db.execute("DELETE FROM alerts WHERE host_id = ?", [host_id])
    # series, their samples and host_status: the metrics subject's (StateStore.forget_servers)
    return forgotten
