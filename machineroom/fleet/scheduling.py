"""The scheduler as the `scheduler` command runs it: one per state database (a lock), its
store opened and closed around it; and what the schedules did, read back for `list` and
`events`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from machineroom.fleet.scheduler import Event, Scheduler
    from machineroom.fleet.schedules import Schedule
    from machineroom.runs.workspace import Workspace


@contextmanager
def running_scheduler(
    workspace: Workspace,
    schedules: Sequence[Schedule],
    path: Path,
    *,
    on_event: Callable[[Event], None],
    grace: float,
) -> Iterator[Scheduler]:
    """A Scheduler over the workspace's state database, holding its lock while in use; each
    due schedule runs as a child `machineroom run-request -`, which reads the connection
    settings of the project's configuration as it is at that run."""
    from machineroom.fleet.scheduler import Scheduler
    from machineroom.fleet.scheduler_lock import scheduler_lock

    store = workspace.open_state()
    try:
        with scheduler_lock(workspace.state_path):
            yield Scheduler(
                list(schedules),
                store,
                [sys.executable, "-m", "machineroom"],
                [str(Path(p).resolve()) for p in workspace.inventory_paths],
                str(Path(workspace.state_path).resolve()),
                path=path,
                on_event=on_event,
                grace=grace,
            )
    finally:
        store.close()


def last_events(workspace: Workspace, names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each named schedule's latest recorded event (an empty list: none yet)."""
    store = workspace.open_state()
    try:
        return {name: store.schedules.schedule_events(name, limit=1) for name in names}
    finally:
        store.close()


def schedule_events(workspace: Workspace, name: str | None, limit: int) -> list[dict[str, Any]]:
    """What the scheduler did, newest first (of one schedule, when named)."""
    store = workspace.open_state()
    try:
        return store.schedules.schedule_events(name, limit=limit)
    finally:
        store.close()
