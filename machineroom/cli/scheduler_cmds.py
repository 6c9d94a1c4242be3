"""`machineroom scheduler`: run schedules.yml in the foreground; `list` and `events` show it.

`machineroom scheduler` alone is `machineroom scheduler run`. Exit codes of `run`: 0 when
stopped by SIGTERM (a service manager stopping it is normal operation), 99 on Ctrl-C
(SIGINT), 4 when schedules.yml is invalid at start.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import ExitCode, UsageError
from machineroom.runs.workspace import Workspace

if TYPE_CHECKING:
    from machineroom.fleet.scheduler import Event
    from machineroom.fleet.schedules import Schedule

F = TypeVar("F", bound=Callable[..., Any])


def schedules_options(func: F) -> F:
    """-i, --state and --schedules, on the group and on each subcommand."""
    func = click.option(
        "--schedules",
        "schedules_path",
        type=click.Path(dir_okay=False),
        envvar="MACHINEROOM_SCHEDULES",
        help="schedules.yml to run [default: found beside the inventory or above it].",
    )(func)
    return inventory_options(func)


def grace_option(func: F) -> F:
    """--grace: how long a run gets to stop before it is killed."""
    return click.option(
        "--grace",
        type=click.FloatRange(0, 3600),
        default=None,
        help="Seconds a run gets to stop (after its timeout or at shutdown) before it is "
        "killed [default: 5].",
    )(func)


def _merged(ctx: click.Context, **given: Any) -> dict[str, Any]:
    """Options given to the subcommand, else those given to the group."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    return {k: v if v is not None and v != () else parent.get(k) for k, v in given.items()}


def _locate(
    inventory_paths: tuple[str, ...], state_path: str | None, schedules_path: str | None
) -> tuple[Workspace, Path]:
    from machineroom.fleet.repo import find_repo_file

    workspace = make_workspace(inventory_paths or (), state_path)
    if schedules_path:
        return workspace, Path(schedules_path)
    found = find_repo_file(workspace.inventory_paths, "schedules.yml")
    if found is None:
        raise UsageError(
            "no schedules.yml beside the inventory or in a folder above it (up to the top of "
            "its repository); pass --schedules FILE"
        )
    return workspace, found


@click.group("scheduler", invoke_without_command=True)
@schedules_options
@grace_option
@click.pass_context
def scheduler_command(
    ctx: click.Context,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    schedules_path: str | None,
    grace: float | None,
) -> None:
    """Run the schedules of schedules.yml in the foreground (a long-running service).

    Each due schedule runs as `machineroom collect|apply|run ...` with the same inventory
    and state, recorded in the run history with trigger `schedule:NAME`. One line per event
    on stdout. Stop with Ctrl-C (exit 99) or SIGTERM (exit 0); running runs are interrupted.
    """
    if ctx.invoked_subcommand is None:
        _run(inventory_paths, state_path, schedules_path, grace=grace)


@scheduler_command.command("run")
@schedules_options
@grace_option
@click.pass_context
def run_subcommand(
    ctx: click.Context,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    schedules_path: str | None,
    grace: float | None,
) -> None:
    """Run the schedules in the foreground (the same as `machineroom scheduler`)."""
    options = _merged(
        ctx,
        inventory_paths=inventory_paths,
        state_path=state_path,
        schedules_path=schedules_path,
        grace=grace,
    )
    _run(**options)


def _run(
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    schedules_path: str | None,
    grace: float | None,
) -> None:
    from machineroom.fleet.schedules import load_schedules
    from machineroom.fleet.scheduling import running_scheduler

    workspace, path = _locate(inventory_paths, state_path, schedules_path)
    schedules = load_schedules(path)
    _ = workspace.inventory  # an invalid inventory stops us now, not at 3 am
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()

    grace = 5.0 if grace is None else grace
    with running_scheduler(
        workspace, schedules, path, on_event=_print_event, grace=grace
    ) as scheduler:
        click.echo(
            f"scheduler: {len(schedules)} schedule(s) from {path}; state {workspace.state_path}"
        )
        for schedule, due in scheduler.upcoming():
            when = f"next {_stamp(due)}" if due else "disabled"
            click.echo(f"  {schedule.name}: {schedule.timing.describe()}, {when}")
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            scheduler.run(stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    click.echo(f"{_stamp(datetime.now(UTC))} scheduler stopped")
    if signal.SIGINT in received and signal.SIGTERM not in received:
        sys.exit(ExitCode.INTERRUPTED)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_event(event: Event) -> None:
    """One line per event: time, schedule, event, run id, what happened."""
    if not event.schedule:
        line = f"{_stamp(event.at)} scheduler {event.event}: {event.detail}"
        click.echo(line, err=event.event == "invalid")
        return
    run = str(event.run_id) if event.run_id is not None else "-"
    colour = {"finished": None, "skipped": "yellow", "missed": "yellow", "timeout": "red"}
    failed = event.event == "finished" and not event.detail.startswith("exit 0")
    click.secho(
        f"{_stamp(event.at)} {event.schedule} {event.event} run={run} {event.detail}",
        fg="red" if failed else colour.get(event.event),
    )


@scheduler_command.command("list")
@schedules_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def list_subcommand(
    ctx: click.Context,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    schedules_path: str | None,
    as_json: bool,
) -> None:
    """Validate schedules.yml and show each schedule's next due time and last event."""
    from machineroom.fleet.schedules import load_schedules
    from machineroom.fleet.scheduling import last_events

    options = _merged(
        ctx,
        inventory_paths=inventory_paths,
        state_path=state_path,
        schedules_path=schedules_path,
    )
    workspace, path = _locate(**options)
    schedules = load_schedules(path)
    now = datetime.now(UTC)
    last = last_events(workspace, [s.name for s in schedules])
    rows = [_describe(s, now, last[s.name]) for s in schedules]
    if as_json:
        click.echo(json.dumps({"file": str(path), "schedules": rows}, indent=2))
        return
    click.echo(f"{path}: {len(rows)} schedule(s)")
    for row in rows:
        last = row["last_event"]
        seen = (
            f"last {last['event']} {last['at']} run={last['run_id'] or '-'} {last['detail']}"
            if last
            else "never ran"
        )
        click.echo(
            f"{row['name']:<20} {row['next_due'] or 'disabled':<21} {row['timing']:<32} "
            f"{row['action']}\n{'':<21}{seen}"
        )


def _describe(schedule: Schedule, now: datetime, last: list[dict[str, Any]]) -> dict[str, Any]:
    due = schedule.timing.next_after(now) if schedule.enabled else None
    return {
        "name": schedule.name,
        "timing": schedule.timing.describe(),
        "action": schedule.describe(),
        "enabled": schedule.enabled,
        "timeout": schedule.timeout,
        "next_due": _stamp(due) if due else None,
        "last_event": last[0] if last else None,
    }


@scheduler_command.command("events")
@click.argument("name", required=False)
@schedules_options
@click.option("-n", "--limit", type=click.IntRange(1), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def events_subcommand(
    ctx: click.Context,
    name: str | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    schedules_path: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """What the scheduler did, newest first: started, finished, skipped, missed."""
    from machineroom.fleet.scheduling import schedule_events

    options = _merged(ctx, inventory_paths=inventory_paths, state_path=state_path)
    workspace = make_workspace(options["inventory_paths"] or (), options["state_path"], False)
    events = schedule_events(workspace, name, limit)
    if as_json:
        click.echo(json.dumps(events, indent=2))
        return
    for e in events:
        run = e["run_id"] if e["run_id"] is not None else "-"
        click.echo(
            f"{e['at'][:19]}Z {e['schedule']} {e['event']} run={run} due {e['due_at'][:19]}Z"
            f"  {e['detail']}"
        )
