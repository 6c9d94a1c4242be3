"""`machineroom collect` and `collect --install-restricted-key` as recorded runs.

A collection is a one-task run of the `collect` module on every host (hosts in parallel,
one remote command each), recorded like `apply`: a run row, a task row per host, the audit
log. A host whose inventory names a `collect_key` is reached with that restricted key
(`restricted_login`), whose forced command is the installed copy of the script.

The samples are written by the main thread once the run is over (the run's recorder owns
the database while it runs): `collect_hosts` returns each host's report, and has stored what
the hosts that answered said. Alert rules (fleet/) are evaluated by the caller after that.

The install is a generated playbook (a folder, the script, the restricted key), run as any
playbook is: task rows, check mode, `--json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.events import Event, HostFinished, TaskFinished
from machineroom.modules.collect_script import (
    INSTALLED_SCRIPT,
    Collector,
    ParsedCollection,
    add_rates,
    build_script,
    collectors_from,
)
from machineroom.runs.one_task import run_one_task
from machineroom.runs.request import RunResult
from machineroom.runs.session import RunRecord, Subscriber, run_prepared, start_run_row

if TYPE_CHECKING:
    from machineroom.inventory.model import Host
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.workspace import Workspace
    from machineroom.state.metrics import HostCollection

AUDIT_LABEL = "(collect metrics)"  # the audit log's stand-in for the long script
TASK_NAME = "collect"  # the task's name in events and task rows
DEFAULT_HOST_TIMEOUT = 60.0  # seconds a host's collection may take without --timeout
RESTRICTED_KEY_OPTIONS = (
    f'command="/bin/sh {INSTALLED_SCRIPT}",no-port-forwarding,no-X11-forwarding,'
    "no-agent-forwarding,no-pty,no-user-rc"
)


@dataclass(frozen=True)
class HostReport:
    """One host's collection as the command reports it."""

    host_id: str
    reachable: bool
    metrics: Mapping[str, float]
    containers: Sequence[Mapping[str, str]]
    problems: Sequence[str]
    error: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class Collection:
    """A collection run: how it ended, and each host's report in the hosts' order (hosts
    a stop left unfinished have none)."""

    result: RunResult
    reports: list[HostReport] = field(default_factory=list)

    @property
    def down(self) -> list[str]:
        """The hosts that gave no collection (unreachable, timed out, no script output)."""
        return [r.host_id for r in self.reports if not r.reachable]

    @property
    def status(self) -> str:
        """The collection's status word: a host without a collection makes it unreachable."""
        if self.result.status in ("interrupted", "error"):
            return self.result.status
        return "unreachable" if self.down else "ok"


def collectors_of(host: Host) -> tuple[Collector, ...]:
    """The custom collectors the inventory declares for a host (var `collectors`: a mapping
    of name to a command line, or to {command, timeout}); errors name where it was set."""
    where = host.var_sources.get("collectors", f"host {host.id}")
    return collectors_from(host.vars.get("collectors"), host.id, where)


def restricted_login(host: Host) -> Host | None:
    """The host as the restricted collection key logs in (vars `collect_key`, `collect_user`),
    or None when the inventory names no such key: no password, no other key."""
    key = host.vars.get("collect_key")
    if not key:
        return None
    user = host.vars.get("collect_user") or host.user
    return dataclasses.replace(
        host,
        ssh_key=os.path.expanduser(str(key)),  # `~/.ssh/...` as the docs write it
        user=str(user) if user else None,
        password=None,
        become_password=None,
    )


class _Readings:
    """The run's subscriber that turns each host's `collect` result into its samples (rates
    against the counters the database held before the run) and its report. Called on worker
    threads: it keeps what it made in memory, the main thread stores it after the run."""

    def __init__(
        self,
        previous: Mapping[str, Mapping[str, Any]],
        now: Callable[[], int],
        on_host: Callable[[HostReport], None] | None,
    ) -> None:
        self.previous = previous
        self.now = now
        self.on_host = on_host
        self.reports: dict[str, HostReport] = {}
        self.collections: list[HostCollection] = []
        self._pending: dict[str, tuple[HostCollection, HostReport]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Read a host's collection when its task finished (or could not reach it); keep it
        when the host is done, unless a stop cut it short (then it says nothing)."""
        if isinstance(event, HostFinished):
            with self._lock:
                pending = self._pending.pop(event.host, None)
                if pending is None or event.status == "interrupted":
                    return
                self.collections.append(pending[0])
                self.reports[event.host] = pending[1]
            if self.on_host is not None:
                self.on_host(pending[1])
            return
        if not isinstance(event, TaskFinished) or event.task != TASK_NAME or event.item is not None:
            return
        from machineroom.state.metrics import HostCollection

        at = self.now()
        result = event.result
        if event.status in ("ok", "changed") and "metrics" in result:
            parsed = ParsedCollection(
                metrics=dict(result["metrics"]),
                containers=[dict(c) for c in result.get("containers") or []],
                counters=dict(result.get("counters") or {}),
                problems=list(result.get("problems") or []),
            )
            counters = self.previous.get(event.host, {}).get("counters") or {}
            add_rates(parsed, counters, at)
            item = HostCollection(
                event.host, at, True, "", parsed.metrics, parsed.containers, parsed.counters
            )
            report = HostReport(
                event.host,
                True,
                parsed.metrics,
                parsed.containers,
                parsed.problems,
                duration=event.duration,
            )
        else:
            error = event.msg or str(result.get("msg") or "no result")
            item = HostCollection(event.host, at, reachable=False, error=error)
            report = HostReport(event.host, False, {}, [], [], error, event.duration)
        with self._lock:
            self._pending[event.host] = (item, report)


class HostLines:
    """A subscriber that tells `on_host(host, status, messages)` how each host ended, once
    it is done: its final status and what changed there (the changed tasks' messages), or
    why it failed. For a one-line-a-host report of a short playbook (the collector install)."""

    def __init__(self, on_host: Callable[[str, str, Sequence[str]], None]) -> None:
        self.on_host = on_host
        self.changes: dict[str, list[str]] = {}
        self.failures: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        """Note each task's change or failure; call `on_host` when the host is done."""
        if isinstance(event, TaskFinished) and event.item is None:
            if event.status == "changed":
                self.changes.setdefault(event.host, []).append(event.msg or event.task)
            elif event.status in ("failed", "unreachable") and not event.ignored:
                self.failures[event.host] = event.msg or event.status
        elif isinstance(event, HostFinished):
            if event.status in ("failed", "unreachable"):
                reason = self.failures.get(event.host) or event.reason or event.status
                self.on_host(event.host, event.status, [reason])
            elif event.status == "ok":
                self.on_host(event.host, event.status, self.changes.get(event.host, []))

    def close(self) -> None:
        """Nothing to flush: each host is told as it finishes."""


def collect_hosts(
    workspace: Workspace,
    pattern: str,
    connect: ConnectSettings,
    *,
    on_host: Callable[[HostReport], None] | None = None,
    trigger: str | None = None,
    command_line: str = "",
) -> Collection:
    """Collect from the hosts matching `pattern` as a recorded run and store the samples of
    those that answered (also when the run was stopped). `on_host` is called with each
    host's report as it finishes (on a worker thread). A bad `collectors` declaration is an
    InputError before any host is contacted."""
    hosts = workspace.select(pattern)
    for host in hosts:
        collectors_of(host)
    record = RunRecord(
        kind="collect",
        label=AUDIT_LABEL,
        args={"pattern": pattern},
        trigger=trigger,
        command_line=command_line,
    )
    # A host that hangs (even past the script's own limits) must not hold up the fleet: it
    # is reported without a collection and the others are stored.
    connect = dataclasses.replace(
        connect, command_timeout=connect.command_timeout or DEFAULT_HOST_TIMEOUT
    )
    store = workspace.open_state()
    try:
        # the row first, as soon as the hosts are known: whoever started the collection (the
        # dashboard waits a second or so) sees it running, and finds it stopped if cut short
        run_id = start_run_row(workspace, store, record)
        store.mark_interrupted_runs()
        # the executor's modules load after that (the better part of a second uncached)
        from machineroom.executor.hoststate import RunOptions
        from machineroom.runs.one_task import prepare_one_task
        from machineroom.state.metrics import now_unix

        try:
            prepared = prepare_one_task(workspace, pattern, "collect", {}, name=TASK_NAME)
        except BaseException as exc:
            stopped = isinstance(exc, KeyboardInterrupt)
            store.finish_run(
                run_id, "interrupted" if stopped else "error", {"reason": str(exc) or "stopped"}
            )
            raise
        prepared.play_hosts = [[restricted_login(h) or h for h in hs] for hs in prepared.play_hosts]
        readings = _Readings(store.metrics.host_statuses([h.id for h in hosts]), now_unix, on_host)
        result = run_prepared(
            workspace,
            store,
            prepared,
            record,
            RunOptions(forks=connect.forks),
            connect,
            [readings],
            audit_label=AUDIT_LABEL,
            resumable=False,  # what `apply --resume` continues is no collection's business
            run_id=run_id,
        )
        store.metrics.record_collections(readings.collections, result.run_id)
    finally:
        store.close()
    reports = [readings.reports[h.id] for h in hosts if h.id in readings.reports]
    return Collection(result, reports)


def finish_collection(
    workspace: Workspace, collection: Collection, summary: Mapping[str, Any]
) -> None:
    """Give the collection's run row its status (a host without a collection makes it
    unreachable, whatever its task said) and add `summary` to the recap in its summary."""
    run_id = collection.result.run_id
    if run_id is None:
        return
    store = workspace.open_state()
    try:
        row = store.run(run_id)
        recap = dict(row.summary) if row is not None else {}
        store.finish_run(run_id, collection.status, {**recap, **summary})
    finally:
        store.close()


def install_playbook(
    folder: Path, pattern: str, hosts: Sequence[Host], public_key: str, become: bool
) -> Path:
    """The generated playbook of `collect --install-restricted-key` in `folder`: the script
    (each host's own, with its collectors: files/HOST.sh) root's and 755 in its folder, and
    the public key in `collect_user`'s authorized_keys, restricted to running it."""
    files = folder / "files"
    files.mkdir()
    users = {}
    for host in hosts:
        (files / f"{host.id}.sh").write_text(build_script(collectors_of(host)))
        users[host.id] = str(host.vars.get("collect_user") or host.user or "root")
    owned = {"owner": "root", "group": "root", "mode": "0755"}
    play: dict[str, Any] = {
        "name": "install the restricted collector",
        "hosts": pattern,
        "gather_facts": False,
        "vars": {"collect_users": users},
        "tasks": [
            {
                "name": "collector folder",
                "file": {"path": str(Path(INSTALLED_SCRIPT).parent), "state": "directory"} | owned,
            },
            {
                "name": "collection script",
                "copy": {"src": "{{ inventory_hostname }}.sh", "dest": INSTALLED_SCRIPT} | owned,
            },
            {
                "name": "restricted key",
                "authorized_key": {
                    "user": "{{ collect_users[inventory_hostname] }}",
                    "key": public_key.strip(),
                    "key_options": RESTRICTED_KEY_OPTIONS,
                },
            },
        ],
    }
    if become:
        play["become"] = True
    path = folder / "install-collector.yml"
    path.write_text(json.dumps([play], indent=2) + "\n")  # JSON is YAML
    return path


def install_collector(
    workspace: Workspace,
    pattern: str,
    public_key: str,
    connect: ConnectSettings,
    subscribers: Sequence[Subscriber] = (),
    *,
    become: bool = False,
    check: bool = False,
    key_file: str = "",
    trigger: str | None = None,
    command_line: str = "",
) -> RunResult:
    """Install the collection script and the restricted public key on the hosts matching
    `pattern` (over their normal, administrative login), as a recorded playbook run."""
    from machineroom.runs.prepare import prepare

    hosts = workspace.select(pattern)
    if not hosts:
        return RunResult(None, "ok", notes=(f"no hosts matched '{pattern}': nothing to do",))
    with tempfile.TemporaryDirectory(prefix="machineroom-collector-") as folder:
        playbook = install_playbook(Path(folder), pattern, hosts, public_key, become)
        prepared = prepare(workspace, str(playbook), None, frozenset(), ())
        record = RunRecord(
            kind="collector-install",
            label="(install collector)",
            args={"pattern": pattern, "install": key_file, "check": check},
            trigger=trigger,
            command_line=command_line,
        )
        return run_one_task(workspace, prepared, record, connect, subscribers, check=check)
