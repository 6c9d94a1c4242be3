"""The state database: servers (`server_room`), runs, task results, facts and the audit log.

`open_state(path)` returns a `StateStore`: servers and runs on the store itself, the fleet's
subjects as `store.metrics`, `store.alerts`, `store.tokens`, `store.schedules` and
`store.dashboard` (see store.py); docs/database.md describes the tables. This package is the
only one that imports sqlite3.
"""

from machineroom.state.database import DEFAULT_BUSY_TIMEOUT, open_state
from machineroom.state.migrations import SCHEMA_VERSION
from machineroom.state.records import (
    FINAL_RUN_STATUSES,
    RUN_STATUSES,
    TASK_STATUSES,
    RunRow,
    ServerRow,
)
from machineroom.state.store import StateStore

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "FINAL_RUN_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "TASK_STATUSES",
    "RunRow",
    "ServerRow",
    "StateStore",
    "open_state",
]
