"""The loop of `machineroom scheduler`: start due schedules, never two runs of one at once.

Each due schedule starts as a child process of the same CLI (`python -m machineroom
run-request -`) given the schedule's RunRequest on its stdin (runs/execute.py), never as
command-line values or environment variables. The request's trigger, `schedule:NAME`, is
recorded on the run's row, which is how the scheduler finds the run again; the run lands in
the run history and audit log like a manual one. Every start, finish, skip and miss is
recorded in `schedule_events` and reported to a callback (the CLI prints it). The clock and
the process launcher are injectable, so the loop's logic is tested without waiting and
without processes.

Rules (docs/schedules.md explains them to users):
- never two runs of one schedule at once: a due time that comes while the previous run still
  runs is recorded `skipped`, not queued;
- due times that passed without the scheduler acting on them in time (it was stopped,
  paused, or the machine slept) are reported as one `missed` event with how many and since
  when; the schedule then runs once for the latest of them (`catch_up: false`: not at all);
- schedules.yml is read again when it changes; an invalid new version is reported and the
  previous schedules stay in force.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from machineroom.errors import InputError
from machineroom.fleet.cron import Every
from machineroom.fleet.schedules import Schedule, load_schedules
from machineroom.runs.connect import ConnectSettings
from machineroom.runs.execute import CHILD_ARGS, request_file
from machineroom.runs.request import RunRequest

if TYPE_CHECKING:
    from machineroom.state import StateStore

# A due time handled later than this (or than half the schedule's period, if shorter) counts
# as missed rather than on time.
LATE_AFTER = timedelta(seconds=30)
# At most this many past due times are counted one by one after a long stop.
COUNT_LIMIT = 10000
OUTPUT_TAIL = 400


@dataclass(frozen=True)
class Event:
    """Something the scheduler did or noticed.

    `event` is one recorded in schedule_events (started, finished, skipped, missed) or one
    only reported (loaded, reloaded, invalid, timeout, stopping); `schedule` is '' for the
    scheduler itself.
    """

    at: datetime
    schedule: str
    event: str
    due_at: datetime | None = None
    run_id: int | None = None
    detail: str = ""


class Clock(Protocol):
    """Where the scheduler gets the time and how it waits."""

    def now(self) -> datetime:
        """The current time, aware."""
        ...

    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep up to `seconds`, returning early when `stop` is set."""
        ...


class SystemClock:
    """The real clock: UTC now; sleeping on the stop event so a signal ends it at once."""

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep on `stop` for up to `seconds`."""
        stop.wait(max(seconds, 0.0))


class Child(Protocol):
    """A started run, as the scheduler sees it."""

    pid: int

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end (subprocess.TimeoutExpired when `timeout` passes)."""
        ...

    def send_signal(self, signum: int) -> None:
        """Signal the run and whatever it started."""
        ...


# how to start a run: the child's argv, its request (to hand it on stdin), where output goes
Launcher = Callable[[list[str], RunRequest, IO[bytes]], Child]


class ProcessChild:
    """A run started by `launch_process`: a process leading its own process group."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end."""
        return self.process.wait(timeout)

    def send_signal(self, signum: int) -> None:
        """Signal the whole group: the run's own children (local commands) too."""
        if self.process.poll() is not None:
            return  # reaped: its pid may belong to someone else by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def launch_process(argv: list[str], request: RunRequest, log: IO[bytes]) -> Child:
    """Start a run as a process of its own session, output to `log`, the request as JSON on
    its stdin (a private temporary file, gone once both ends close it).

    Its own session: a Ctrl-C at the scheduler's terminal reaches only the scheduler, which
    then stops its runs itself (with a grace period), and a signal to the group reaches the
    run's own children too.
    """
    with request_file(request) as stdin:
        process = subprocess.Popen(
            argv, stdin=stdin, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ProcessChild(process)


@dataclass
class _Running:
    schedule: Schedule
    child: Child
    due_at: datetime
    started_at: datetime
    event_id: int
    log: IO[bytes]
    run_id: int | None = None
    stop_sent_at: datetime | None = None
    why_stopped: str = ""


@dataclass
class _Dues:
    count: int
    first: datetime
    latest: datetime
    before_latest: datetime | None
    capped: bool


class Scheduler:
    """Runs schedules as child processes, one run per schedule at a time.

    `command` is how to start the CLI (e.g. `[sys.executable, "-m", "machineroom"]`);
    `inventory_paths`, `state_path` and `connect` go into every run's request. Call
    `run(stop)` to loop until `stop` is set, or `step()` to do one round (tests).
    """

    def __init__(
        self,
        schedules: Sequence[Schedule],
        store: StateStore,
        command: Sequence[str],
        inventory_paths: Sequence[str],
        state_path: str,
        *,
        connect: ConnectSettings | None = None,
        path: Path | None = None,
        on_event: Callable[[Event], None] = lambda event: None,
        clock: Clock | None = None,
        launcher: Launcher = launch_process,
        grace: float = 5.0,
        reload_every: float = 1.0,
        poll_every: float = 0.2,
    ) -> None:
        self.store = store
        self.command = list(command)
        self.inventory_paths = tuple(inventory_paths)
        self.state_path = state_path
        self.connect = connect  # None: each run reads the project's settings itself
        self.path = path
        self.on_event = on_event
        self.clock: Clock = clock or SystemClock()
        self.launcher = launcher
        self.grace = grace
        self.reload_every = reload_every
        self.poll_every = poll_every
        self.schedules: dict[str, Schedule] = {}
        self.next_due: dict[str, datetime] = {}
        self.running: dict[str, _Running] = {}
        self._signature = self._file_signature()
        self._last_reload_check: datetime | None = None
        self._started = False
        self._created = self.clock.now()
        self._install(schedules, self._created, from_history=True)

    # -- public ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set, then stop the running runs (see `shutdown`)."""
        try:
            while not stop.is_set():
                self.clock.wait(stop, self.step())
        finally:
            self.shutdown()

    def step(self) -> float:
        """One round: reload if changed, collect finished runs, enforce timeouts, start or
        skip what is due. Returns how long to sleep before the next round."""
        now = self.clock.now()
        if not self._started:
            self._started = True
            self.store.mark_interrupted_runs()
        self._maybe_reload(now)
        self._reap(now)
        self._enforce_timeouts(now)
        for schedule in list(self.schedules.values()):
            if schedule.enabled:
                self._handle_due(schedule, now)
        return self._sleep_for(self.clock.now())

    def shutdown(self) -> None:
        """Stop every running run: SIGTERM (a machineroom run then kills its commands on the
        hosts and records itself as interrupted), SIGKILL after the grace period, then record
        how each ended."""
        now = self.clock.now()
        if self.running:
            names = ", ".join(sorted(self.running))
            self._emit(Event(now, "", "stopping", detail=f"stopping running: {names}"))
        for running in self.running.values():
            if running.child.poll() is None:
                running.why_stopped = running.why_stopped or "stopped with the scheduler"
                running.child.send_signal(signal.SIGTERM)
                running.stop_sent_at = now
        deadline = datetime.now(UTC) + timedelta(seconds=self.grace)
        for running in self.running.values():
            left = (deadline - datetime.now(UTC)).total_seconds()
            try:
                running.child.wait(timeout=max(left, 0.01))
            except subprocess.TimeoutExpired:
                running.child.send_signal(signal.SIGKILL)
                running.child.wait()
        self._reap(self.clock.now())
        # a run killed before it could record its end is marked interrupted now
        self.store.mark_interrupted_runs()

    def upcoming(self) -> list[tuple[Schedule, datetime | None]]:
        """Each schedule with its next due time (None when disabled)."""
        return [
            (s, self.next_due.get(s.name) if s.enabled else None) for s in self.schedules.values()
        ]

    # -- schedules in force ---------------------------------------------------------------

    def _install(self, schedules: Sequence[Schedule], now: datetime, from_history: bool) -> None:
        old = self.schedules
        self.schedules = {s.name: s for s in schedules}
        for schedule in schedules:
            previous = old.get(schedule.name)
            if (
                previous is not None
                and previous.enabled
                and schedule.enabled
                and previous.timing == schedule.timing
            ):
                continue  # same timing: keep its place (a re-enabled one starts afresh)
            self.next_due[schedule.name] = self._first_due(schedule, now, from_history)
        for name in set(self.next_due) - set(self.schedules):
            del self.next_due[name]

    def _first_due(self, schedule: Schedule, now: datetime, from_history: bool) -> datetime:
        """After a restart, the due time following the last one recorded, so that the ones
        passed while the scheduler was stopped are found (and reported) as missed."""
        if from_history:
            last = self.store.schedules.last_schedule_due(schedule.name)
            if last is not None:
                moment = datetime.fromisoformat(last.replace("Z", "+00:00"))
                return schedule.timing.next_after(min(moment, now))
        return schedule.timing.next_after(now)

    def _file_signature(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _maybe_reload(self, now: datetime) -> None:
        if self.path is None:
            return
        last = self._last_reload_check
        if last is not None and (now - last).total_seconds() < self.reload_every:
            return
        self._last_reload_check = now
        signature = self._file_signature()
        if signature == self._signature:
            return
        self._signature = signature
        try:
            schedules = load_schedules(self.path)
        except InputError as exc:
            self._emit(Event(now, "", "invalid", detail=f"{exc}\nkeeping the schedules in force"))
            return
        before = self.schedules
        self._install(schedules, now, from_history=False)
        added = sorted(set(self.schedules) - set(before))
        removed = sorted(set(before) - set(self.schedules))
        changed = sorted(
            n for n in set(before) & set(self.schedules) if before[n] != self.schedules[n]
        )
        parts = [f"{len(self.schedules)} schedule(s)"]
        for word, names in (("added", added), ("removed", removed), ("changed", changed)):
            if names:
                parts.append(f"{word} {', '.join(names)}")
        self._emit(Event(now, "", "reloaded", detail=f"{self.path}: " + "; ".join(parts)))

    # -- due times ------------------------------------------------------------------------

    def _handle_due(self, schedule: Schedule, now: datetime) -> None:
        due = self.next_due.get(schedule.name)
        if due is None or due > now:
            return
        dues = self._dues(schedule, due, now)
        self.next_due[schedule.name] = schedule.timing.next_after(max(dues.latest, now))
        on_time = now - dues.latest <= self._tolerance(schedule, dues.latest)
        late = dues.count - 1 if on_time else dues.count
        if late > 0:
            last_late = dues.latest if not on_time else dues.before_latest or dues.first
            count = f"more than {COUNT_LIMIT}" if dues.capped else str(late)
            why = (
                "while the scheduler was stopped"
                if dues.first < self._created
                else "while the scheduler was paused or the machine slept"
            )
            detail = f"{count} due time(s) missed since {_short(dues.first)} {why}"
            if not on_time:
                detail += "; running once now to catch up" if schedule.catch_up else "; not run"
            self._record(schedule.name, last_late, "missed", detail=detail)
        if not on_time and not schedule.catch_up:
            return
        running = self.running.get(schedule.name)
        if running is not None:
            which = f"run {running.run_id}" if running.run_id else f"pid {running.child.pid}"
            self._record(
                schedule.name,
                dues.latest,
                "skipped",
                run_id=running.run_id,
                detail=f"previous {which} (started {_short(running.started_at)}) still running",
            )
            return
        self._start(schedule, dues.latest, now, catch_up=not on_time)

    def _dues(self, schedule: Schedule, first: datetime, now: datetime) -> _Dues:
        timing = schedule.timing
        if isinstance(timing, Every):
            count = timing.count_between(first, now)
            latest = first + timedelta(seconds=timing.seconds * (count - 1))
            before = latest - timedelta(seconds=timing.seconds) if count > 1 else None
            return _Dues(count, first, latest, before, capped=False)
        count, latest, before = 1, first, None
        following = timing.next_after(first)
        while following <= now and count < COUNT_LIMIT:
            before, latest = latest, following
            count += 1
            following = timing.next_after(following)
        capped = following <= now
        if capped:
            # Very long stop of a frequent expression: find the latest due time from a day
            # back instead of counting every one (cron's finest step is a minute).
            probe = timing.next_after(now - timedelta(days=1))
            while probe <= now:
                before, latest = latest, probe
                probe = timing.next_after(probe)
        return _Dues(count, first, latest, before, capped)

    def _tolerance(self, schedule: Schedule, due: datetime) -> timedelta:
        period = schedule.timing.next_after(due) - due
        return min(LATE_AFTER, period / 2)

    # -- runs -------------------------------------------------------------------------------

    def _start(self, schedule: Schedule, due: datetime, now: datetime, catch_up: bool) -> None:
        request = schedule.request(self.inventory_paths, self.state_path, self.connect)
        # lives as long as the run; its tail goes into the `finished` event
        log = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            child = self.launcher([*self.command, *CHILD_ARGS], request, log)
        except OSError as exc:
            log.close()
            self._record(schedule.name, due, "started", detail=f"could not start: {exc}")
            self._record(schedule.name, due, "finished", detail=f"failed to start: {exc}")
            return
        late = f" (catching up, {_ago(now - due)} late)" if catch_up else ""
        event_id = self._record(
            schedule.name,
            due,
            "started",
            detail=f"pid {child.pid}: machineroom {schedule.describe()}{late}",
        )
        self.running[schedule.name] = _Running(schedule, child, due, now, event_id, log)

    def _lookup_run(self, running: _Running) -> None:
        if running.run_id is not None:
            return
        # The run carries the request's trigger (the schedule's) and the child's pid.
        # Searched from a second before the start: started_at is written with milliseconds.
        found = self.store.schedules.triggered_run(
            running.schedule.trigger, running.child.pid, running.started_at - timedelta(seconds=1)
        )
        if found is not None:
            running.run_id = found[0]
            self.store.schedules.set_schedule_event_run(running.event_id, found[0])

    def _reap(self, now: datetime) -> None:
        killed = False
        for name, running in list(self.running.items()):
            code = running.child.poll()
            self._lookup_run(running)
            if code is None:
                continue
            del self.running[name]
            killed = killed or code < 0
            self._finish(running, code, now)
        if killed:
            self.store.mark_interrupted_runs()

    def _finish(self, running: _Running, code: int, now: datetime) -> None:
        self._lookup_run(running)
        status = None
        if running.run_id is not None:
            row = self.store.run(running.run_id)
            status = row.status if row is not None else None
        parts = [f"exit {code}" if code >= 0 else f"killed by signal {-code}"]
        if status is not None:
            parts.append(status)
        parts.append(f"{_ago(now - running.started_at)}")
        if running.why_stopped:
            parts.append(running.why_stopped)
        detail = ", ".join(parts)
        if code != 0:
            tail = _tail(running.log)
            if tail:
                detail += f": {tail}"
        running.log.close()
        self._record(
            running.schedule.name, running.due_at, "finished", run_id=running.run_id, detail=detail
        )

    def _enforce_timeouts(self, now: datetime) -> None:
        for running in self.running.values():
            timeout = running.schedule.timeout
            if running.stop_sent_at is None:
                if timeout is None or (now - running.started_at).total_seconds() < timeout:
                    continue
                running.why_stopped = f"timed out after {timeout:g}s"
                running.stop_sent_at = now
                # SIGTERM: the run stops as on Ctrl-C, killing its commands on the hosts too
                running.child.send_signal(signal.SIGTERM)
                self._emit(
                    Event(
                        now,
                        running.schedule.name,
                        "timeout",
                        running.due_at,
                        running.run_id,
                        f"stopping pid {running.child.pid}: {running.why_stopped}",
                    )
                )
            elif (now - running.stop_sent_at).total_seconds() >= self.grace:
                running.child.send_signal(signal.SIGKILL)

    def _sleep_for(self, now: datetime) -> float:
        waits = [
            (due - now).total_seconds()
            for name, due in self.next_due.items()
            if self.schedules[name].enabled
        ]
        if self.path is not None:
            waits.append(self.reload_every)
        if self.running:
            waits.append(self.poll_every)
        return max(min(waits, default=60.0), 0.0)

    # -- recording ----------------------------------------------------------------------------

    def _record(
        self,
        schedule: str,
        due: datetime,
        event: str,
        *,
        run_id: int | None = None,
        detail: str = "",
    ) -> int:
        at = self.clock.now()
        event_id = self.store.schedules.record_schedule_event(
            schedule, due, event, run_id=run_id, detail=detail, at=at
        )
        self._emit(Event(at, schedule, event, due, run_id, detail))
        return event_id

    def _emit(self, event: Event) -> None:
        self.on_event(event)


def _short(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _tail(log: IO[bytes]) -> str:
    try:
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = " | ".join(lines[-3:])
    return tail if len(tail) <= OUTPUT_TAIL else "..." + tail[-OUTPUT_TAIL:]
