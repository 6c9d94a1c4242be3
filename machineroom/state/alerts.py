"""Alerts: opened and resolved, with their notifications (see fleet/alerts.py)."""

from __future__ import annotations

from machineroom.state.base import StoreBase


class AlertStore(StoreBase):
    """The `alerts` part of the state store."""
