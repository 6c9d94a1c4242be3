"""The dashboard's access tokens as `machineroom token ...` manages them: create, list,
revoke, each on the workspace's state database (the store keeps only their hashes:
state/tokens.py). No fastapi here: the token commands start without it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from machineroom.errors import StateError, UsageError

if TYPE_CHECKING:
    from machineroom.runs.workspace import Workspace
    from machineroom.state import StateStore
    from machineroom.state.tokens import TokenRow

LONGEST_LIFETIME = 10 * 366 * 86400  # seconds: ten years


def token_lifetime(expires: str | None) -> timedelta | None:
    """`--expires` (e.g. 30d, 12h, 2w) as a lifetime; None: the token never expires. A
    UsageError outside 1 second .. 10 years."""
    if not expires:
        return None
    from machineroom.fleet.durations import parse_duration

    seconds = parse_duration(expires, "--expires")
    if not 0 < seconds <= LONGEST_LIFETIME:
        raise UsageError("--expires: a token lives between 1 second and 10 years")
    return timedelta(seconds=seconds)


def create_token(
    workspace: Workspace, name: str, role: str, lifetime: timedelta | None
) -> tuple[str, TokenRow]:
    """A new token `name` with `role`: the token itself (to show once) and its row."""
    with workspace.open_state() as store:
        return store.tokens.create_token(name, role, expires_in=lifetime)


def all_tokens(workspace: Workspace) -> list[TokenRow]:
    """Every token (revoked and expired ones too), by name."""
    with workspace.open_state() as store:
        return store.tokens.all()


def revoke_tokens(workspace: Workspace, names: Sequence[str]) -> Iterator[TokenRow]:
    """Revoke each token in turn, yielding its row once revoked; an unknown name stops there
    as a UsageError naming close ones."""
    with workspace.open_state() as store:
        for name in names:
            try:
                row = store.tokens.revoke_token(name)
            except StateError as exc:
                raise UsageError(str(exc)) from None
            yield row


def any_active_token(store: StateStore) -> bool:
    """Whether some token can sign in (neither revoked nor expired)."""
    return any(token.state() == "active" for token in store.tokens.all())
