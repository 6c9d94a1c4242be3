"""Access tokens of the web dashboard and API: only their hashes are kept."""

from __future__ import annotations

from machineroom.state.base import StoreBase


class TokenStore(StoreBase):
    """The `tokens` part of the state store."""
