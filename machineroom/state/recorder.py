"""StateRecorder: an event subscriber that writes a run's events into the state database.

The executor's workers emit events; SQLite writes can wait up to the busy timeout for another
process's lock, and a worker must never wait on that. So `__call__` only puts the event on a
queue, and one writer thread of the recorder's own turns events into StateStore writes, in the
order they were emitted, the events that piled up meanwhile in one transaction (each event a
savepoint of its own: a bad one undoes only itself). `close()` drains the queue; called in a
`finally`, it leaves the database consistent on Ctrl-C too (a second Ctrl-C can only cut
between two transactions, never inside one).

What each event becomes:
- TaskFinished (a task's summary): one `task_results` row. Loop items are folded into their
  summary's row (one line per item in `message`, their output and diffs under item headers),
  so the row count and `show RUN --host H` match the recap, and each item stays visible.
- TaskFinished.record: merged into `server_room.res` (e.g. `docker_compose_installed`), also
  when the task failed (what a failing module learnt: scan-docker's `docker_error`).
- TaskFinished whose `result` holds `facts` (or `ansible_facts`, except from set_fact): the
  `facts` history and `res.facts`.
- HostFinished: `res.reachable` / `last_seen` / `last_error`, and `next_action` (what
  `apply --resume` continues from; cleared when the host finished ok).
- RunFinished: the run's status and summary (per-host stats, totals, duration, and under
  `host_keys` each host whose key was refused, with the key it presented: the dashboard
  shows it and lets an admin trust exactly that key).

In check mode nothing was changed on the hosts, so `next_action` and `record` keys are left
alone; reachability is still true information and is written. A run that is not `resumable`
(a one-task run: `run`, `facts`, `scan-docker`) leaves `next_action` alone too.

This module imports `machineroom.events` and the store only (state sits below inventory and
connection in the layers).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from machineroom.errors import StateError
from machineroom.events import (
    Event,
    HostFinished,
    HostStats,
    RunFinished,
    RunStarted,
    TaskFinished,
)
from machineroom.state.records import iso, utc_now
from machineroom.state.store import StateStore

# How long close() waits, after a second Ctrl-C, for the write in progress to end before it
# marks the run interrupted itself (one write is milliseconds unless another process holds
# the lock).
ABORT_WAIT = 5.0

_STOP = object()  # queue sentinel: no more events
_BATCH = 500  # most events written in one transaction


class CommandLike(Protocol):
    """What `record_command` reads from a command's result (the connection layer's
    CommandResult fits; the state layer does not import it)."""

    @property
    def command(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def duration(self) -> float: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class _Command:
    """A queued audit-log entry."""

    __slots__ = ("action", "command", "duration", "exit_code", "host_id", "stderr", "stdout")

    def __init__(self, host_id: str, result: CommandLike) -> None:
        self.host_id = host_id
        self.command = result.command
        # the module call it carries out (connection/command.py's AuditedCommand)
        self.action = str(getattr(result, "action", "") or "")
        self.exit_code = result.exit_code
        self.duration = result.duration
        self.stdout = result.stdout
        self.stderr = result.stderr


class StateRecorder:
    """Records a run's events in `store` under `run_id`, on a writer thread of its own.

    Subscribe the instance itself (`bus.subscribe(recorder)`); call `close()` in a `finally`.
    A write that fails (the disk is full, the database is locked beyond the busy timeout)
    does not stop the others: its message goes to `errors` and to `on_error`, if given
    (called on the writer thread; `apply` stops the run there), the first one to `failure`,
    and the run is then finished as 'error', never 'ok': some of its results are missing.
    `end_recorded` says whether the run's final status could be written.
    """

    def __init__(
        self,
        store: StateStore,
        run_id: int,
        *,
        check: bool = False,
        on_error: Callable[[str], None] | None = None,
        playbook: str | None = None,
        resumable: bool = True,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.check = check
        self.playbook = playbook  # the playbook's real path: `--resume` resumes only it
        # False: a run `--resume` never continues (a one-task run): `next_action` stays as
        # the last playbook run left it
        self.resumable = resumable
        self.errors: list[str] = []
        self.failure: str | None = None  # the first failed write's error, as is
        self.end_recorded = False  # the run's final status is in the database
        # why the run was stopped ("interrupted (SIGTERM)"), asked when an interrupted run
        # is written, for its summary
        self.stop_reason: Callable[[], str] = lambda: ""
        self._on_error = on_error
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._abort = threading.Event()
        self._lock = threading.Lock()  # guards the fields below (read by close() on abort)
        self._finished = False
        self._closed = False
        self._stats: dict[str, HostStats] = {}
        self._items: dict[tuple[str, str], list[TaskFinished]] = {}
        self._last_failure: dict[str, TaskFinished] = {}
        self._host_keys: dict[str, dict[str, Any]] = {}  # host -> the key it presented
        self._thread = threading.Thread(
            target=self._work, name=f"state-recorder-{run_id}", daemon=True
        )
        self._thread.start()

    # -- the subscriber side (worker threads, under the bus lock) ------------------------------

    def __call__(self, event: Event) -> None:
        """Queue `event` for the writer thread; never blocks on the database."""
        if not self._closed:
            self._queue.put(event)

    def record_command(self, host_id: str, result: CommandLike) -> None:
        """Queue a command run on `host_id` for the audit log (the connection's `on_command`
        hook; called from worker threads, never blocks on the database)."""
        if not self._closed:
            self._queue.put(_Command(host_id, result))

    def abort(self) -> None:
        """Stop at once (a second Ctrl-C): drop what is still queued, let the write in progress
        end, and mark the run interrupted if it has not finished. The database stays
        consistent; the results already written stay."""
        self._closed = True
        self._abort.set()
        self._queue.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(ABORT_WAIT)
        self._finish_unfinished("interrupted", "aborted by a second Ctrl-C")

    def close(self, unfinished_status: str | None = "interrupted") -> None:
        """Write every queued event, then stop the writer thread.

        If no RunFinished came (the executor was cut short), the run is finished with
        `unfinished_status` and the stats seen so far (pass None to leave it 'running'; the next
        machineroom command then marks it interrupted when this process is gone).

        A KeyboardInterrupt while draining (a second Ctrl-C) drops the events not yet written,
        lets the write in progress end, marks the run interrupted and re-raises.
        """
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        try:
            while self._thread.is_alive():
                self._thread.join(0.1)
        except KeyboardInterrupt:
            self.abort()
            raise
        if unfinished_status is not None:
            self._finish_unfinished(unfinished_status, "the run ended before it finished")

    def __enter__(self) -> StateRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the writer thread ----------------------------------------------------------------------

    def _work(self) -> None:
        stopped = False
        while not stopped:
            # What piled up while the last batch was written goes in one transaction (one
            # commit instead of one per event); each event stays a savepoint of its own.
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # The run's end alone, after the rest: its write retries on a full disk.
            ends = [event for event in batch if isinstance(event, RunFinished)]
            rest = [event for event in batch if not isinstance(event, RunFinished)]
            try:
                with self.store.transaction():
                    stopped = self._record_each(rest)
            except Exception as exc:  # the commit itself failed (disk full, lock timeout)
                self._fail(f"writing {len(rest)} events: {exc}", exc)
            stopped = self._record_each(ends) or stopped
        if not self._abort.is_set():
            self._flush_orphan_items()

    def _record_each(self, events: Sequence[object]) -> bool:
        """Record the events in order; True when the stop (or an abort) came among them."""
        for event in events:
            if event is _STOP or self._abort.is_set():
                return True
            try:
                self._record(event)
            except Exception as exc:  # one bad write must not lose the rest of the run
                self._fail(f"{type(event).__name__}: {exc}", exc)
        return False

    def _fail(self, message: str, exc: Exception) -> None:
        with self._lock:
            self.errors.append(message)
            if self.failure is None:
                self.failure = str(exc)
        if self._on_error is not None:
            self._on_error(message)

    def _record(self, event: object) -> None:
        if isinstance(event, _Command):
            self.store.record_command(
                self.run_id,
                event.host_id,
                event.command,
                event.exit_code,
                event.duration,
                event.stdout,
                event.stderr,
                event.action,
            )
        elif isinstance(event, RunStarted):
            self.check = self.check or event.check
        elif isinstance(event, TaskFinished):
            self._record_task(event)
        elif isinstance(event, HostFinished):
            self._record_host(event)
        elif isinstance(event, RunFinished):
            self._record_run(event)

    def _record_task(self, event: TaskFinished) -> None:
        key = (event.host, event.task_id)
        if event.item is not None:
            self._items.setdefault(key, []).append(event)
            return
        items = self._items.pop(key, [])
        with self._lock:
            self._stats.setdefault(event.host, HostStats()).add(event)
            if event.status in ("failed", "unreachable") and not event.ignored:
                self._last_failure[event.host] = event
            offered = event.result.get("host_key") if event.status == "unreachable" else None
            if isinstance(offered, Mapping):
                self._host_keys[event.host] = {"host": event.host, **offered}
        self._write_task_row(event, items)
        # a failed module may still say what it learnt (docker_containers: docker_error)
        wanted = event.record and not self.check and event.status != "unreachable"
        facts = facts_of(event)
        if (wanted or facts is not None) and self.store.server(event.host) is None:
            return  # not a server_room host (e.g. an ad-hoc name): its results are in task rows
        if wanted:
            self.store.update_res(event.host, dict(event.record))
        if facts is not None:
            self.store.record_facts(event.host, facts, run_id=self.run_id)

    def _write_task_row(self, event: TaskFinished, items: list[TaskFinished]) -> None:
        message, stdout, stderr, diff = event.msg, event.stdout, event.stderr, event.diff
        if items:
            lines = [
                f"[{item.item}] {item.status}" + (f": {item.msg}" if item.msg else "")
                for item in items
            ]
            message = "\n".join([message, *lines] if message else lines)
            stdout = stdout or _join_items(items, "stdout")
            stderr = stderr or _join_items(items, "stderr")
            diff = diff or _join_items(items, "diff")
        if event.ignored:
            message = f"{message} (ignored)" if message else "failed (ignored)"
        self.store.record_task_result(
            self.run_id,
            event.host,
            event.task,
            event.status,
            location=event.location,
            duration=event.duration,
            stdout=stdout,
            stderr=stderr,
            diff=diff,
            message=message,
            ignored=event.ignored,
        )

    def _flush_orphan_items(self) -> None:
        # Loop items whose summary never came (the run was cut mid-loop): keep them as one row,
        # with the worst status among them, rather than lose them.
        order = ("unreachable", "failed", "changed", "ok", "skipped")
        for (host, _task_id), items in list(self._items.items()):
            worst = min((item.status for item in items), key=order.index)
            first = items[0]
            summary = TaskFinished(
                host=host,
                task_id=first.task_id,
                task=first.task,
                stage=first.stage,
                status=worst,
                duration=sum(item.duration for item in items),
                msg="interrupted during the loop",
                location=first.location,
            )
            try:
                self._write_task_row(summary, items)
            except Exception as exc:
                self._fail(f"TaskFinished: {exc}", exc)
        self._items.clear()

    def _record_host(self, event: HostFinished) -> None:
        now = iso(utc_now())
        if self.store.server(event.host) is None:
            return  # not a server_room host (e.g. an ad-hoc name): its results are in task rows
        with self._lock:
            seen = event.host in self._stats
        res: dict[str, Any] | None
        if event.status == "interrupted" and not seen:
            res = None  # stopped before its first task: nothing learnt about the host
        elif event.status == "unreachable":
            res = {"reachable": False, "last_error": event.reason or "unreachable"}
        else:
            res = {"reachable": True, "last_seen": now}
        if res is not None:
            self.store.update_res(event.host, res)
        if self.check or not self.resumable:
            return
        if event.status == "ok":
            self.store.set_next_action(event.host, {})
            return
        with self._lock:
            failure = self._last_failure.get(event.host)
        pending = self._pending(event, failure, now)
        if pending is not None:
            self.store.set_next_action(event.host, pending)

    def _pending(
        self, event: HostFinished, failure: TaskFinished | None, now: str
    ) -> dict[str, Any] | None:
        """The `next_action` of a host that did not finish, or None to keep the current one."""
        stage = event.stage or (failure.stage if failure else None)
        task_id = event.task_id or (failure.task_id if failure else None)
        detail = event.reason or (failure.msg if failure else "")
        reason = f"{event.status}: {detail}" if detail else event.status
        pending: dict[str, Any] = {"run_id": self.run_id, "reason": reason, "at": now}
        if self.playbook is not None:
            pending["playbook"] = self.playbook
        if stage is None:
            # Nothing says where the host stopped (e.g. unreachable before its first stage
            # was known): keep the stage an earlier run left pending, update the why and when.
            row = self.store.server(event.host)
            previous = dict(row.next_action) if row else {}
            if not previous:
                return None  # nothing to resume from; `res.last_error` says why
            if previous.get("playbook"):
                pending["playbook"] = previous["playbook"]  # its stage belongs to that one
            return {**previous, **pending}
        pending["stage"] = stage
        if task_id is not None:
            pending["task"] = task_id
        if failure is not None and failure.task_id == task_id:
            if failure.location:
                pending["location"] = failure.location
            pending["task_name"] = failure.task
        return pending

    def _record_run(self, event: RunFinished) -> None:
        summary = run_summary(event.stats, event.duration, event.check or self.check)
        self._add_host_keys(summary)
        status = self._explain(event.status, summary)
        self._write_end(status, summary)
        with self._lock:
            self._finished = True
            self.end_recorded = True

    def _add_host_keys(self, summary: dict[str, Any]) -> None:
        with self._lock:
            if self._host_keys:
                summary["host_keys"] = [self._host_keys[h] for h in sorted(self._host_keys)]

    def _write_end(self, status: str, summary: dict[str, Any]) -> None:
        """The run's final status; on a full disk, once more after giving the log's space
        back, so that the run is not left 'running'."""
        try:
            self.store.finish_run(self.run_id, status, summary)
        except StateError:
            with contextlib.suppress(StateError):
                self.store.reclaim_wal()
            self.store.finish_run(self.run_id, status, summary)

    def _explain(self, status: str, summary: dict[str, Any]) -> str:
        """The status to record: 'error' once a write failed (results are missing), with the
        reason in the summary; an interrupted run says what stopped it."""
        with self._lock:
            failure, lost = self.failure, len(self.errors)
        if failure is not None:
            summary["reason"] = f"{lost} state write(s) failed, the first: {failure}"
            return "error"
        if status == "interrupted" and self.stop_reason():
            summary["reason"] = self.stop_reason()
        return status

    def _finish_unfinished(self, status: str, reason: str) -> None:
        with self._lock:
            if self._finished:
                return
            stats = {host: HostStats(**asdict(s)) for host, s in self._stats.items()}
            self._finished = True
        summary = run_summary(stats, None, self.check)
        summary["reason"] = self.stop_reason() or reason
        self._add_host_keys(summary)
        if status != "interrupted":
            status = self._explain(status, summary)
        try:
            run = self.store.run(self.run_id)
            if run is not None and run.status == "running":
                self._write_end(status, summary)
            with self._lock:
                self.end_recorded = True
        except Exception as exc:
            self._fail(f"finishing run {self.run_id}: {exc}", exc)


def run_summary(
    stats: Mapping[str, HostStats], duration: float | None, check: bool
) -> dict[str, Any]:
    """The `runs.summary` object: per-host recap counts, their totals, duration, check mode."""
    hosts = {host: asdict(s) for host, s in sorted(stats.items())}
    totals = {name: sum(h[name] for h in hosts.values()) for name in asdict(HostStats())}
    summary: dict[str, Any] = {"hosts": hosts, "totals": totals, "check": check}
    if duration is not None:
        summary["duration"] = round(duration, 3)
    return summary


def facts_of(event: TaskFinished) -> dict[str, Any] | None:
    """The facts a task gathered, from its result's `facts` (our facts module) or
    `ansible_facts`; None for set_fact (its variables are not host facts) and for failures."""
    if event.item is not None or event.status not in ("ok", "changed"):
        return None
    result = event.result
    facts = result.get("facts")
    if not isinstance(facts, Mapping):
        facts = result.get("ansible_facts")
        # set_fact's and include_vars' variables are not host facts
        if result.get("module") in ("set_fact", "ansible.builtin.set_fact", "include_vars"):
            return None
    if not isinstance(facts, Mapping) or not facts:
        return None
    return dict(facts)


def _join_items(items: list[TaskFinished], name: str) -> str:
    parts = []
    for item in items:
        text: str = getattr(item, name)
        if text:
            parts.append(f"== item {item.item} ==\n{text.rstrip(chr(10))}")
    return "\n".join(parts)
