"""The part of sqlite-utils' `Database` the store uses, on a sqlite3 connection: `execute`,
`query` (rows as dicts) and `db[table].insert(record).last_pk`.

sqlite-utils, with python-dateutil and the regular expressions it compiles, took ~0.09 s of
every run's start-up (issue 13) for these few lines. The connection is in autocommit mode
(`isolation_level=None`, see database.py): transactions are the ones DatabaseHandle opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["Database", "Table"]

Parameters = Sequence[Any] | Mapping[str, Any]


class Database:
    """A sqlite3 connection with sqlite-utils' `execute`, `query` and `db[table].insert`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # as sqlite_utils.Database did: a trigger's own changes fire triggers too
        conn.execute("PRAGMA recursive_triggers = on")

    def execute(self, sql: str, parameters: Parameters | None = None) -> sqlite3.Cursor:
        """Run one statement; the cursor."""
        if parameters is None:
            return self.conn.execute(sql)
        return self.conn.execute(sql, parameters)

    def query(self, sql: str, params: Parameters | None = None) -> Iterator[dict[str, Any]]:
        """Run a statement that returns rows; each row as a dict by column name.

        The rows are fetched at once: a statement left half-read would hold its read
        transaction open (a later checkpoint could not truncate the log)."""
        cursor = self.execute(sql, params)
        if cursor.description is None:
            raise ValueError("query() is for SQL that returns rows; use execute()")
        keys = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        return (dict(zip(keys, row, strict=True)) for row in rows)

    def __getitem__(self, table: str) -> Table:
        return Table(self, table)


class Table:
    """One table, for `insert`."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.last_pk: int | None = None  # the rowid of the last inserted row

    def insert(self, record: Mapping[str, Any]) -> Table:
        """Insert one row from a column -> value mapping; `last_pk` is its rowid."""
        columns = ", ".join(_quoted(column) for column in record)
        marks = ", ".join("?" for _ in record)
        cursor = self.db.execute(
            f"INSERT INTO {_quoted(self.name)} ({columns}) VALUES ({marks})", list(record.values())
        )
        self.last_pk = cursor.lastrowid
        return self


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
