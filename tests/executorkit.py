"""Running a playbook on fake hosts, for executor unit tests: no lab, no SSH.

`play_on_fakes(tmp_path, yaml, answers)` writes the playbook, loads it, gives each host a
`FakeConnection` answering `answers` (shared, or per host id), runs it through
`run_playbook` and returns a `FakeRun` with the events, the connections and the RunShared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from machineroom.connection.fake import Answer, FakeConnection, FakePool, Reply
from machineroom.events import Event, EventBus, HostFinished, RunFinished, TaskFinished
from machineroom.executor.hoststate import Connections, RunOptions, RunShared
from machineroom.executor.play import run_playbook
from machineroom.executor.runner import Runner
from machineroom.inventory.model import Group, Host, Inventory
from machineroom.playbook.load import load_playbook
from machineroom.templating import Templar

HOSTS = ("a", "b", "c")


@dataclass
class FakeRun:
    """What a run on fake hosts left: its events, connections and shared state."""

    events: list[Event]
    pool: FakePool
    run: RunShared
    finished: RunFinished
    log: list[tuple[str, str, str, float]] = field(default_factory=list)

    def tasks(self, host: str | None = None, *, items: bool = False) -> list[TaskFinished]:
        """TaskFinished events (of one host), loop items left out unless `items`."""
        return [
            e
            for e in self.events
            if isinstance(e, TaskFinished)
            and (host is None or e.host == host)
            and (items or e.item is None)
        ]

    def task(self, host: str, name: str) -> TaskFinished:
        """The (summary) event of task `name` on `host`."""
        found = [e for e in self.tasks(host) if e.task == name]
        assert len(found) == 1, (host, name, self.tasks(host))
        return found[0]

    def statuses(self, name: str) -> dict[str, str]:
        """Each host's status for task `name` (hosts that did not report it left out)."""
        return {e.host: e.status for e in self.tasks() if e.task == name}

    def host_results(self) -> dict[str, str]:
        """Each host's HostFinished status."""
        return {e.host: e.status for e in self.events if isinstance(e, HostFinished)}

    def sent(self, host: str, piece: str) -> list[str]:
        """Commands sent to `host` that contain `piece`."""
        return self.pool.connections[host].ran(piece)


def logged(log: list[tuple[str, str, str, float]], host: str, reply: Reply) -> Answer:
    """An answer that notes (host, 'start'/'end', command, time) around `reply`'s delay."""
    lock = threading.Lock()

    def answer(command: str, stdin: bytes | None) -> Reply:
        with lock:
            log.append((host, "start", command, time.monotonic()))
        if reply.delay:
            time.sleep(reply.delay)
        with lock:
            log.append((host, "end", command, time.monotonic()))
        return Reply(reply.exit_code, reply.stdout, reply.stderr, raises=reply.raises)

    return answer


def play_on_fakes(
    tmp_path: Path,
    playbook_yaml: str,
    answers: Mapping[str, Answer] | Mapping[str, Mapping[str, Answer]] | None = None,
    *,
    hosts: Sequence[str] = HOSTS,
    per_host: bool = False,
    unreachable: Mapping[str, str] | None = None,
    options: RunOptions | None = None,
    runner: Runner | None = None,
    during: Callable[[RunShared], None] | None = None,
    via_registry: bool = False,
) -> FakeRun:
    """Run the playbook on fake hosts `hosts` (group `all` and `web`). `answers`: command
    piece -> Reply for every host, or (with `per_host`) host -> such a mapping. `during`
    is called in a thread once the run started (to stop it, say). `via_registry`: the hosts
    have `connection: fake`, registered in connection/registry.py, and a real ConnectionPool
    opens them (the FakePool is then only where the fakes are kept)."""
    path = tmp_path / "site.yml"
    path.write_text(playbook_yaml)
    playbook = load_playbook(path)
    kind = "fake" if via_registry else "ssh"
    host_list = [
        Host(id=h, host=f"10.9.9.{i}", user="root", connection=kind) for i, h in enumerate(hosts, 1)
    ]
    ids = tuple(hosts)
    inventory = Inventory(
        source="fake",
        hosts=MappingProxyType({h.id: h for h in host_list}),
        groups=MappingProxyType({"all": Group("all", hosts=ids), "web": Group("web", hosts=ids)}),
    )
    pool = FakePool(unreachable=dict(unreachable or {}))
    for host in host_list:
        mine: Mapping[str, Any] = (answers or {}).get(host.id, {}) if per_host else answers or {}
        pool.add(FakeConnection(host, dict(mine)))
    events: list[Event] = []
    connections: Connections = pool
    if via_registry:
        from machineroom.connection.pool import ConnectionPool

        connections = ConnectionPool()
    run = RunShared(
        # a fake answers commands one by one; it cannot run a per-host program's sh
        options=options or RunOptions(programs=False),
        inventory=inventory,
        pool=connections,
        bus=EventBus([events.append]),
        templar=Templar(),
        playbook_dir=str(tmp_path),
    )
    helper = None
    if during is not None:
        helper = threading.Thread(target=during, args=(run,), daemon=True)
        helper.start()
    finished = run_playbook(
        playbook, [host_list for _ in playbook.plays], run, run_id=7, runner=runner
    )
    if helper is not None:
        helper.join(5)
    return FakeRun(events, pool, run, finished)
