"""What the scheduler did: runs started, skipped and missed."""

from __future__ import annotations

from machineroom.state.base import StoreBase


class ScheduleStore(StoreBase):
    """The `schedules` part of the state store."""
