"""Access tokens of the web dashboard and API: only their hashes are kept.

A token is `mr_` and 43 URL-safe random characters (256 bits). The database keeps its sha256,
never the token: a stolen database grants nothing, and with that much entropy an unsalted
fast hash is enough (nobody can guess a preimage). Looking a token up by its hash and then
comparing the hashes with `hmac.compare_digest` keeps the check constant-time.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from machineroom.errors import StateError
from machineroom.state.base import DatabaseHandle
from machineroom.state.records import iso, utc_now

ROLES = ("viewer", "operator", "admin")  # each role may do what the ones before it may
TOKEN_PREFIX = "mr_"
# Names end up in runs.trigger (`web:NAME:NONCE`) and in URLs: no colons, slashes or spaces.
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# last_used_at is written at most this often, so reading pages does not write on every request.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenRow:
    """One row of `tokens`, without its hash."""

    id: int
    name: str
    role: str
    created_at: str
    created_by: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None

    def state(self, now: datetime | None = None) -> str:
        """'revoked', 'expired' or 'active'."""
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= iso(now or utc_now()):
            return "expired"
        return "active"

    def may(self, role: str) -> bool:
        """Whether this token's role includes `role` (admin > operator > viewer)."""
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_token(token: str) -> str:
    """The sha256 (hex) stored for a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_token_name(name: str) -> None:
    """Raise StateError unless `name` is a valid token name."""
    if not isinstance(name, str) or not TOKEN_NAME.fullmatch(name):
        raise StateError(
            f"token name {name!r} is not valid; expected 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _row(row: dict[str, Any]) -> TokenRow:
    return TokenRow(
        id=int(row["id"]),
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


_COLUMNS = "id, name, role, created_at, created_by, last_used_at, expires_at, revoked_at"


class TokenStore:
    """The access tokens subject of the state store (`store.tokens`)."""

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle

    def create_token(
        self,
        name: str,
        role: str,
        *,
        expires_in: timedelta | None = None,
        created_by: str | None = None,
    ) -> tuple[str, TokenRow]:
        """Create a token; return the token itself (shown once, never stored) and its row.

        A name already in use (even by a revoked token) is a StateError: names are what the
        audit trail (`runs.trigger`) refers to, so they are never reused.
        """
        check_token_name(name)
        if role not in ROLES:
            raise StateError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if expires_in is not None and expires_in.total_seconds() <= 0:
            raise StateError("a token's lifetime must be positive")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utc_now()
        record = {
            "name": name,
            "role": role,
            "hash": hash_token(token),
            "created_at": iso(now),
            "created_by": created_by or self._handle.user,
            "last_used_at": None,
            "expires_at": None if expires_in is None else iso(now + expires_in),
            "revoked_at": None,
        }
        with self._handle.write() as db:
            try:
                token_id = int(db["tokens"].insert(record).last_pk)
            except sqlite3.IntegrityError:
                raise StateError(
                    f"a token named {name!r} already exists (names are never reused; "
                    "pick another name, or revoke the old one and choose a new name)"
                ) from None
        return token, _row({"id": token_id, **record})

    def all(self) -> list[TokenRow]:
        """Every token (revoked and expired ones too), by name."""
        with self._handle.read() as db:
            return [_row(r) for r in db.query(f"SELECT {_COLUMNS} FROM tokens ORDER BY name")]

    def token_by_id(self, token_id: int) -> TokenRow | None:
        """The token with id `token_id`, or None."""
        with self._handle.read() as db:
            rows = list(db.query(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", [token_id]))
        return _row(rows[0]) if rows else None

    def revoke_token(self, name: str) -> TokenRow:
        """Revoke the token `name` (at once: sessions made with it stop working too); return
        its row. Revoking twice keeps the first date. An unknown name names close ones."""
        with self._handle.write() as db:
            db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                [iso(utc_now()), name],
            )
            rows = list(db.query(f"SELECT {_COLUMNS} FROM tokens WHERE name = ?", [name]))
            if not rows:
                names = [r[0] for r in db.execute("SELECT name FROM tokens").fetchall()]
                close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                raise StateError(f"unknown token {name!r}{hint}")
        return _row(rows[0])

    def find_token(self, token: str) -> TokenRow | None:
        """The token row whose hash matches `token` (whatever its state), or None."""
        digest = hash_token(token)
        with self._handle.read() as db:
            rows = list(db.query(f"SELECT {_COLUMNS}, hash FROM tokens WHERE hash = ?", [digest]))
        if not rows or not hmac.compare_digest(rows[0]["hash"], digest):
            return None
        return _row(rows[0])

    def touch_token(self, row: TokenRow) -> None:
        """Record that the token was just used (at most once a minute per token)."""
        now = utc_now()
        if row.last_used_at and row.last_used_at > iso(now - TOUCH_INTERVAL):
            return
        with self._handle.write() as db:
            db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", [iso(now), row.id])
