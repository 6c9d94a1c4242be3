"""`ClusterRunner`: the executor's Runner (executor/runner.py) that walks hosts on Dask workers.

For each `serial` batch of a play the controller deals the batch's hosts to workers by zone
(client.py), submits one shard per worker (shard.py), and serves the workers while they walk:
their events go on the run's bus (recorded and shown exactly as a local run's), their
audited commands to the audit log, their Coordinator calls to the run's LocalCoordinator
(coordination.py). When every shard has come back, the hosts' states it returned replace
the controller's, so later plays and the recap see them.

Faults: a worker that leaves mid-run (its process killed, its machine gone) loses its
shard: the hosts whose walk had not ended are reported interrupted (resumable with
`apply --resume` from the stage they were in), and never walked again (a shard the scheduler
restarts elsewhere is refused). Ctrl-C here stops every shard (their commands are killed on
the hosts) and waits for them to come back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from machineroom.cluster.client import Cluster, Worker, spread, zone_workers
from machineroom.cluster.coordination import CoordinatorService
from machineroom.cluster.shard import (
    Connecting,
    Payload,
    ShardResult,
    ShardSpec,
    project_print,
    walk_shard,
)
from machineroom.cluster.wire import dumps, loads, seal, shard_queue_name, unseal, up_queue_name
from machineroom.errors import UsageError
from machineroom.events import StageStarted
from machineroom.executor.coordinator import LocalCoordinator
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.inventory.model import Host, Inventory, Secret

WAIT = 0.2  # seconds between checks of the stop flag while shards walk
WATCH_EVERY = 1.0  # seconds between checks that the shards' workers are still there
STOP_WAIT = 60.0  # seconds a stopped run waits for its shards to come back
SYNC_WAIT = 30.0  # seconds to wait for the last messages of finished shards


@dataclasses.dataclass
class _Shard:
    number: int
    worker: Worker
    hosts: list[str]
    future: Any = None
    claimed_by: str | None = None  # the address of the worker that began it
    ended: set[str] = dataclasses.field(default_factory=set)  # hosts whose walk ended


class ClusterRunner:
    """Walks each batch's hosts on the cluster's workers (a Runner)."""

    def __init__(
        self,
        cluster: Cluster,
        connecting: Connecting,
        *,
        vault_key: Any = None,
        secrets_known: Sequence[str] = (),
        on_command: Callable[[Host, Any], None] | None = None,
    ) -> None:
        from cryptography.fernet import Fernet

        self.cluster = cluster
        self.connecting = connecting
        self.vault_key = vault_key
        self.secrets_known = tuple(secrets_known)
        self.on_command = on_command
        self.token = secrets.token_hex(8)
        self._key = Fernet.generate_key()
        self._numbers = itertools.count(1)
        self._shards: dict[int, _Shard] = {}
        self._states: dict[str, HostState] = {}
        self._run: RunShared | None = None
        self._service: CoordinatorService | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._stop_sent = False
        self._abort_sent = False
        self._markers: dict[int, threading.Event] = {}
        self._queues: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._prints: dict[str, str] = {}
        self._portable: tuple[Inventory, Inventory] | None = None
        self.lost: dict[str, str] = {}  # host -> why it was lost (for the run's notes)

    # --- before the run ---

    def check_zones(self, hosts: Sequence[Host]) -> None:
        """Every zone of these hosts has a worker (a UsageError naming the missing ones)."""
        zone_workers(hosts, self.cluster.workers(), self.cluster.address.text)

    # --- the Runner protocol ---

    def run_walks(
        self, walks: Sequence[Any], *, at_once: int, interrupt: Callable[[], None]
    ) -> None:
        """See Runner.run_walks: the walks' hosts walk on the workers."""
        if not walks:
            return
        run: RunShared = walks[0].run
        play_state: PlayShared = walks[0].play_state
        self._start(run)
        self._abort_sent = False
        for walk in walks:
            self._states[walk.host_id] = walk.state
        hosts = [walk.state.host for walk in walks]
        dealt = spread(
            hosts, zone_workers(hosts, self.cluster.workers(), self.cluster.address.text)
        )
        lock_step = play_state.play.strategy == "linear"
        play_state.gathers_facts(run.playbook_dir)  # decided once, here
        shards = []
        for worker, members in dealt:
            shard = _Shard(next(self._numbers), worker, [h.id for h in members])
            share = (
                len(members)
                if lock_step
                else max(1, math.ceil(at_once * len(members) / len(walks)))
            )
            spec = self._spec(shard, run, play_state, lock_step, share)
            self._shards[shard.number] = shard
            shard.future = self.cluster.client.submit(
                walk_shard,
                spec,
                key=f"machineroom-{self.token}-shard-{shard.number}",
                workers=[worker.address],
                allow_other_workers=False,
                pure=False,
            )
            shards.append(shard)
        try:
            self._wait(shards, run)
        except KeyboardInterrupt:
            interrupt()
            self._broadcast("stop")
            self._wait(shards, run, deadline=time.monotonic() + STOP_WAIT)
            raise
        finally:
            self._sync()

    def _spec(
        self, shard: _Shard, run: RunShared, play_state: PlayShared, lock_step: bool, at_once: int
    ) -> ShardSpec:
        mine = set(shard.hosts)
        # the shard's hosts whole (a program is this process's: the worker starts its own);
        # the others as hostvars and delegation need them, without facts and results
        light = {
            s.host.id: replace(s, host=_portable_host(s.host), program=None)
            if s.host.id in mine
            else HostState(
                _portable_host(s.host),
                failed=s.failed,
                unreachable=s.unreachable,
                ended=s.ended,
                stage=s.stage,
            )
            for s in play_state.hosts
        }
        shared = PlayShared(
            play=play_state.play,
            hosts=[light[s.host.id] for s in play_state.hosts],
            batch=[light[s.host.id] for s in play_state.batch],
            once_passes=dict(play_state.once_passes),
            _gather=play_state._gather,
        )
        payload = Payload(
            play_state=shared,
            options=run.options,
            inventory=self._portable_inventory(run.inventory),
            playbook_dir=run.playbook_dir,
            server_res={h: run.server_res[h] for h in mine if h in run.server_res},
            vault_in_vars=run.vault_in_vars,
            added_hosts=set(run.added_hosts),
            connecting=self.connecting,
            vault_key=self.vault_key,
            secrets=self.secrets_known,
        )
        folder = os.path.realpath(run.playbook_dir)
        if folder not in self._prints:
            self._prints[folder] = project_print(folder)
        return ShardSpec(
            token=self.token,
            number=shard.number,
            host_ids=tuple(shard.hosts),
            lock_step=lock_step,
            at_once=at_once,
            project=(folder, self._prints[folder]),
            payload=seal(payload, self._key),
            key=self._key,
        )

    def _portable_inventory(self, inventory: Inventory) -> Inventory:
        """The inventory with passwords kept in this machine's environment variables made
        plain (a worker's environment is not ours); it travels sealed."""
        if self._portable is not None and self._portable[0] is inventory:
            return self._portable[1]
        hosts = {host_id: _portable_host(host) for host_id, host in inventory.hosts.items()}
        portable = replace(inventory, hosts=MappingProxyType(hosts))
        self._portable = (inventory, portable)
        return portable

    # --- while shards walk ---

    def _wait(
        self, shards: Sequence[_Shard], run: RunShared, deadline: float | None = None
    ) -> None:
        from distributed import wait

        pending = {s.number: s for s in shards}
        watched = time.monotonic()
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                for shard in pending.values():
                    self._lose(shard, "its worker did not stop in time")
                return
            if run.stop.is_set():
                self._broadcast("stop")
            futures = [s.future for s in pending.values()]
            with contextlib.suppress(TimeoutError):
                wait(futures, timeout=WAIT, return_when="FIRST_COMPLETED")
            for number, shard in list(pending.items()):
                if shard.future.done():
                    self._finish(shard, run)
                    del pending[number]
            if time.monotonic() - watched >= WATCH_EVERY and pending:
                watched = time.monotonic()
                alive = {w.address for w in self.cluster.workers()}
                for number, shard in list(pending.items()):
                    address = shard.claimed_by or shard.worker.address
                    if address not in alive:
                        self._lose(shard, f"worker {shard.worker.name} left the cluster")
                        del pending[number]

    def _finish(self, shard: _Shard, run: RunShared) -> None:
        future = shard.future
        if future.status != "finished":
            why = future.exception() if future.status == "error" else "cancelled"
            self._lose(shard, f"worker {shard.worker.name}: {why}")
            return
        result: ShardResult = unseal(future.result(), self._key)
        if result.refused:
            self._lose(shard, f"worker {shard.worker.name} left the cluster")
            return
        if result.error is not None:
            self._lose(shard, result.error)
            run.stop_run(error=result.error)
            return
        self._sync()  # every event of the shard is on the bus before its states are
        for host_id, state in result.states.items():
            mine = self._states.get(host_id)
            if mine is None:
                continue
            for each in dataclasses.fields(HostState):
                if each.name not in ("program", "host"):  # the host: ours keeps its secrets
                    setattr(mine, each.name, getattr(state, each.name))
        if result.inventory is not None:
            base = run.inventory
            run.inventory = merged_inventory(base, self._portable_inventory(base), result.inventory)
            for state in self._states.values():
                now = run.inventory.hosts.get(state.host.id)
                if now is not None and now is not base.hosts.get(state.host.id):
                    state.host = replace(now, connection=state.host.connection)
        run.added_hosts |= result.added_hosts
        if result.new_host_keys and self.connecting.known_hosts:
            _append_host_keys(self.connecting.known_hosts[0][0], result.new_host_keys)

    def _lose(self, shard: _Shard, reason: str) -> None:
        """Shard lost: its hosts still walking end interrupted, nobody waits for them."""
        if shard.future is not None:
            shard.future.cancel()
        self._send(shard.number, ("gone",))
        coordinator = self._coordinator()
        for host_id in shard.hosts:
            if host_id in shard.ended:
                continue
            state = self._states.get(host_id)
            if state is not None:
                state.lost = reason
            self.lost[host_id] = reason
            shard.ended.add(host_id)
            coordinator.walk_ended(host_id, failed=False)

    # --- the controller's end of the queues ---

    def _coordinator(self) -> LocalCoordinator:
        assert self._run is not None
        coordinator = self._run.coordinator
        assert isinstance(coordinator, LocalCoordinator)
        return coordinator

    def _start(self, run: RunShared) -> None:
        if self._thread is not None:
            return
        self._run = run
        self._service = CoordinatorService(self._coordinator(), self._reply)
        self._thread = threading.Thread(target=self._serve, name="mr-cluster", daemon=True)
        self._thread.start()

    def _queue(self, name: str) -> Any:
        from distributed import Queue

        with self._lock:
            found = self._queues.get(name)
            if found is None:
                found = self._queues[name] = Queue(name, client=self.cluster.client)
            return found

    def _send(self, number: int, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(Exception):
            self._queue(shard_queue_name(self.token, number)).put(dumps([message]))

    def _reply(self, number: int, seq: int, value: Any) -> None:
        # the play's abort goes with every answer: a host let through a gate must know that
        # the failure which opened it aborted the play
        self._send(number, ("reply", seq, value, self._coordinator().play_aborted()))

    def _broadcast(self, kind: str) -> None:
        sent = self._stop_sent if kind == "stop" else self._abort_sent
        if sent:
            return
        if kind == "stop":
            self._stop_sent = True
        else:
            self._abort_sent = True
        for shard in list(self._shards.values()):
            if shard.future is not None and not shard.future.done():
                self._send(shard.number, (kind,))

    def _serve(self) -> None:
        up = self._queue(up_queue_name(self.token))
        run = self._run
        assert run is not None and self._service is not None
        while not self._closing.is_set():
            try:
                batch = loads(up.get())  # no timeout: Dask logs each one; close() wakes it
            except Exception:  # the scheduler is gone: the wait loop notices
                if self._closing.wait(WAIT):
                    return
                continue
            for message in batch:
                if message[0] == "close":
                    return
                self._handle(message, run)
            if run.stop.is_set():
                self._broadcast("stop")
            if self._coordinator().play_aborted():
                self._broadcast("abort")

    def _handle(self, message: tuple[Any, ...], run: RunShared) -> None:
        kind = message[0]
        if kind == "event":
            event = message[1]
            if isinstance(event, StageStarted) and event.host in self._states:
                self._states[event.host].stage = event.stage
            run.bus.emit(event)
        elif kind == "command":
            if self.on_command is not None:
                host = run.inventory.hosts.get(message[1]) or Host(id=message[1], host=message[1])
                self.on_command(host, message[2])
        elif kind in ("call", "tell"):
            _, number, seq, method, args = message
            shard = self._shards.get(number)
            if method == "walk_ended" and shard is not None:
                if args[0] in shard.ended:
                    return  # already given up as lost
                shard.ended.add(args[0])
            assert self._service is not None
            self._service.handle(number, seq, method, args)
        elif kind == "claim":
            _, number, address, _name = message
            shard = self._shards.get(number)
            if shard is None or shard.claimed_by is not None or shard.hosts == list(shard.ended):
                self._send(number, ("refuse",))
            else:
                shard.claimed_by = address
                self._send(number, ("go",))
        elif kind == "marker":
            done = self._markers.pop(message[1], None)
            if done is not None:
                done.set()

    def _sync(self) -> None:
        """Wait until the controller has handled every message sent before now."""
        if self._thread is None or not self._thread.is_alive():
            return
        number = next(self._numbers)
        done = self._markers[number] = threading.Event()
        try:
            self._queue(up_queue_name(self.token)).put(dumps([("marker", number)]))
        except Exception:
            return
        done.wait(SYNC_WAIT)

    def abandon(self) -> None:
        """A second Ctrl-C: tell every shard to stop, cancel them, wait for nothing more."""
        self._stop_sent = False
        self._broadcast("stop")
        for shard in self._shards.values():
            if shard.future is not None:
                with contextlib.suppress(Exception):
                    shard.future.cancel()
        self.close()

    def close(self) -> None:
        """Stop serving (after the run) and release the cluster."""
        self._closing.set()
        if self._thread is not None:
            with contextlib.suppress(Exception):
                self._queue(up_queue_name(self.token)).put(dumps([("close",)]))
            self._thread.join(timeout=5)
        if self._service is not None:
            self._service.close()
        self.cluster.close()


def _portable_host(host: Host) -> Host:
    """`host` with passwords kept in this machine's environment variables made plain."""
    changes: dict[str, Any] = {}
    for name in ("password", "become_password"):
        secret: Secret | None = getattr(host, name)
        if secret is not None and secret.kind == "env":
            changes[name] = Secret("plain", secret.reveal(), secret.location)
    return replace(host, **changes) if changes else host


def merged_inventory(base: Inventory, sent: Inventory, changed: Inventory) -> Inventory:
    """`base` with what add_host / group_by made in `changed` (a shard's, from `sent`, the
    portable copy of `base` it was given): hosts it added or changed (groups joined when
    several changed a host; our passwords kept), groups' members and children joined."""
    hosts = dict(base.hosts)
    for host_id, host in changed.hosts.items():
        mine = hosts.get(host_id)
        if mine is None:
            hosts[host_id] = host
        elif host != sent.hosts.get(host_id):
            joined = tuple(dict.fromkeys((*mine.groups, *host.groups)))
            hosts[host_id] = replace(
                host,
                groups=joined,
                password=mine.password,
                become_password=mine.become_password,
            )
    groups = dict(base.groups)
    for name, group in changed.groups.items():
        mine_group = groups.get(name)
        if mine_group is None:
            groups[name] = group
        else:
            groups[name] = replace(
                mine_group,
                hosts=tuple(dict.fromkeys((*mine_group.hosts, *group.hosts))),
                children=tuple(dict.fromkeys((*mine_group.children, *group.children))),
            )
    return replace(base, hosts=MappingProxyType(hosts), groups=MappingProxyType(groups))


def _append_host_keys(path: str, lines: str) -> None:
    """Host keys a worker accepted (--accept-new-host-keys), added to the project's file."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(lines)


def connecting_for(options: Any, inventory: Inventory) -> Connecting:
    """What workers need to connect as this controller's ConnectOptions say: the known_hosts
    files' text (the project's first) and the key files the inventory names."""
    files: list[tuple[str, str]] = []
    for path in dict.fromkeys(options.known_hosts_files):
        try:
            text = open(path, encoding="utf-8", errors="replace").read()  # noqa: SIM115
        except OSError:
            text = ""
        if text or path == options.project_known_hosts:
            files.append((path, text))
    keys: dict[str, str] = {}
    for host in inventory.hosts.values():
        if host.ssh_key:
            path = os.path.expanduser(host.ssh_key)
            if path not in keys and os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    keys[path] = f.read()
    return Connecting(
        known_hosts=tuple(files),
        accept_new_host_keys=options.accept_new_host_keys,
        connect_timeout=options.connect_timeout,
        command_timeout=options.command_timeout,
        key_material=keys,
    )


def secrets_carried(
    connecting: Connecting, inventory: Inventory, vault_key: Any, known: Sequence[str]
) -> list[str]:
    """What secret a run would send to workers, in words (empty: none)."""
    found = []
    if vault_key is not None:
        found.append("the vault key")
    with_password = [
        h.id
        for h in inventory.hosts.values()
        if h.password is not None or h.become_password is not None
    ]
    if with_password:
        more = ", ..." if len(with_password) > 3 else ""
        found.append(f"passwords of {', '.join(with_password[:3])}{more}")
    if connecting.key_material:
        found.append(f"key file {next(iter(connecting.key_material))}")
    if known and not found:
        found.append("values decrypted while loading")
    return found


def refuse_plain(address: str, carried: Sequence[str], setting_source: str | None) -> None:
    """A tcp:// cluster would send `carried` in clear: a UsageError naming the setting."""
    where = f" (set in {setting_source})" if setting_source else ""
    raise UsageError(
        f"--cluster {address}{where}: this run carries secrets ({'; '.join(carried)}), which "
        "a tcp:// cluster would send in clear; use a tls:// address, with cluster_tls_ca, "
        "cluster_tls_cert and cluster_tls_key in machineroom.yml"
    )
