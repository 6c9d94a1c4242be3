"""`ClusterRunner`: the executor's Runner (executor/runner.py) that walks hosts on Dask workers.

For each `serial` batch of a play the controller deals the batch's hosts to workers by zone
(client.py), submits one shard per worker (shard.py), and serves the workers while they walk:
their events go on the run's bus (recorded and shown exactly as a local run's), their
audited commands to the audit log, secrets they learn to this process's registry, their
Coordinator calls to the run's LocalCoordinator (coordination.py). When a shard comes back,
the hosts' states it returned replace the controller's, so later plays and the recap see
them.

Faults: a worker that leaves mid-run (its process killed, its machine gone) loses its shard:
nothing more of it is heard, what its hosts held (task slots, throttles, a run_once turn, a
place at a gate) is given back, and its hosts whose results did not come back are reported
interrupted (resumable with `apply --resume` from the stage they were in; a host whose walk
had ended failed stays failed). They are never walked again: a shard the scheduler restarts
elsewhere is refused. Ctrl-C here stops every shard (their commands are killed on the hosts)
and waits for them to come back; a second one abandons them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from machineroom.cluster.client import Cluster, Worker, shares, spread, zone_workers
from machineroom.cluster.coordination import CoordinatorService
from machineroom.cluster.payload import (
    append_host_keys,
    merged_inventory,
    portable_host,
    portable_inventory,
    with_host_keys,
)
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
from machineroom.inventory.model import Host, Inventory
from machineroom.masking import SECRETS

WAIT = 0.2  # seconds between checks of the stop flag while shards walk
WATCH_EVERY = 1.0  # seconds between checks that the shards' workers are still there
STOP_WAIT = 60.0  # seconds a stopped run waits for its shards to come back
SYNC_WAIT = 30.0  # seconds to wait for the messages already sent to be handled


@dataclasses.dataclass
class _Shard:
    number: int
    worker: Worker
    hosts: list[str]
    sent: Inventory  # the (portable) inventory it was given
    future: Any = None
    claimed_by: str | None = None  # the address of the worker that began it
    ended: dict[str, bool] = dataclasses.field(default_factory=dict)  # walk ended: failed?
    settled: bool = False  # its result (or its loss) has been taken in
    given_up: bool = False  # lost: nothing more of it is heard
    broken: str | None = None  # why the controller could not reach it


class ClusterRunner:
    """Walks each batch's hosts on the cluster's workers (a Runner)."""

    def __init__(
        self,
        cluster: Cluster,
        connecting: Connecting,
        *,
        vault_key: Any = None,
        on_command: Callable[[Host, Any], None] | None = None,
    ) -> None:
        from cryptography.fernet import Fernet

        self.cluster = cluster
        self.connecting = connecting
        self.vault_key = vault_key
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
        self._lock = threading.Lock()  # guards the shards' claims and ended hosts, the queues
        self._prints: dict[str, str] = {}
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
        self._start(run)
        self._abort_sent = False
        for walk in walks:
            self._states[walk.host_id] = walk.state
        shards: list[_Shard] = []
        try:
            try:
                shards = self._submit(walks, run, at_once)
                self._wait(shards, run)
            except KeyboardInterrupt:
                # first Ctrl-C: no task starts, the commands running on the hosts are killed
                interrupt()
                self._broadcast("stop")
                try:
                    self._wait(shards, run, deadline=time.monotonic() + STOP_WAIT)
                except KeyboardInterrupt:
                    self.abandon()
                raise
        except (OSError, TimeoutError) as exc:  # the scheduler went away mid-run
            reason = f"the cluster's scheduler was lost: {exc}"
            for shard in shards:
                self._lose(shard, reason, sync=False)
            run.stop_run(error=reason)

    def _submit(self, walks: Sequence[Any], run: RunShared, at_once: int) -> list[_Shard]:
        """Deal the batch's hosts to workers and submit a shard to each."""
        play_state: PlayShared = walks[0].play_state
        hosts = [walk.state.host for walk in walks]
        try:
            by_zone = zone_workers(hosts, self.cluster.workers(), self.cluster.address.text)
        except UsageError as exc:  # a zone's workers left since the run began
            self._lose_hosts([h.id for h in hosts], str(exc).splitlines()[0])
            return []
        dealt, uncovered = spread(hosts, by_zone)
        self._lose_hosts([h.id for h in uncovered], "no worker of the cluster is left to walk it")
        lock_step = play_state.play.strategy == "linear"
        play_state.gathers_facts(run.playbook_dir)  # decided once, here
        sent = portable_inventory(run.inventory)
        # linear: every host walks (they meet at the gate; the Coordinator lets `forks` tasks
        # run at once); free: `forks` hosts at once over the whole batch
        sizes = [len(members) for _, members in dealt]
        each = sizes if lock_step else shares(at_once, sizes)
        shards = []
        for (worker, members), share in zip(dealt, each, strict=True):
            shard = _Shard(next(self._numbers), worker, [h.id for h in members], sent)
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
        return shards

    def _spec(
        self, shard: _Shard, run: RunShared, play_state: PlayShared, lock_step: bool, at_once: int
    ) -> ShardSpec:
        mine = set(shard.hosts)
        # the shard's hosts whole (a program is this process's: the worker starts its own);
        # the others as hostvars and delegation need them, without facts and results
        light = {
            s.host.id: replace(s, host=portable_host(s.host), program=None)
            if s.host.id in mine
            else HostState(
                portable_host(s.host),
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
            inventory=shard.sent,
            playbook_dir=run.playbook_dir,
            server_res={h: run.server_res[h] for h in mine if h in run.server_res},
            vault_in_vars=run.vault_in_vars,
            added_hosts=set(run.added_hosts),
            connecting=self.connecting,
            vault_key=self.vault_key,
            secrets=SECRETS.values(),  # all this process knows now, what workers learnt too
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

    # --- while shards walk ---

    def _wait(
        self, shards: Sequence[_Shard], run: RunShared, deadline: float | None = None
    ) -> None:
        from distributed import wait

        watched = time.monotonic()
        while True:
            pending = [s for s in shards if not s.settled]
            if not pending:
                return
            if deadline is not None and time.monotonic() > deadline:
                for shard in pending:
                    self._lose(shard, f"worker {shard.worker.name} did not stop in time")
                return
            if run.stop.is_set():
                self._broadcast("stop")
            with contextlib.suppress(TimeoutError):
                wait([s.future for s in pending], timeout=WAIT, return_when="FIRST_COMPLETED")
            for shard in pending:
                if shard.broken is not None:
                    self._lose(shard, shard.broken)
                elif shard.future.done():
                    self._finish(shard, run)
            if time.monotonic() - watched >= WATCH_EVERY:
                watched = time.monotonic()
                alive = {w.address for w in self.cluster.workers()}
                for shard in pending:
                    address = shard.claimed_by or shard.worker.address
                    if not shard.settled and address not in alive:
                        self._lose(shard, f"worker {shard.worker.name} left the cluster")

    def _finish(self, shard: _Shard, run: RunShared) -> None:
        future = shard.future
        name = shard.worker.name
        if future.status != "finished":
            why = future.exception() if future.status == "error" else "cancelled"
            self._lose(shard, f"worker {name}: {why}")
            return
        try:
            result: ShardResult = unseal(future.result(), self._key)
        except Exception as exc:
            self._lose(shard, f"worker {name}: its result could not be read: {exc}")
            return
        if result.refused:
            self._lose(shard, f"worker {name} left the cluster")
            return
        if result.error is not None:
            self._lose(shard, result.error)
            run.stop_run(error=result.error)
            return
        self._sync()  # every event of the shard is on the bus before its states are
        shard.settled = True
        for value in result.secrets:
            SECRETS.add(value)
        for host_id, state in result.states.items():
            mine = self._states.get(host_id)
            if mine is None:
                continue
            for each in dataclasses.fields(HostState):
                if each.name not in ("program", "host"):  # the host: ours keeps its secrets
                    setattr(mine, each.name, getattr(state, each.name))
        if result.inventory is not None:
            base = run.inventory
            run.inventory = merged_inventory(base, shard.sent, result.inventory)
            for state in self._states.values():
                now = run.inventory.hosts.get(state.host.id)
                if now is not None and now is not base.hosts.get(state.host.id):
                    state.host = replace(now, connection=state.host.connection)
        run.added_hosts |= result.added_hosts
        if result.new_host_keys and self.connecting.known_hosts:
            append_host_keys(self.connecting.known_hosts[0][0], result.new_host_keys)
            self.connecting = with_host_keys(self.connecting, result.new_host_keys)
        with contextlib.suppress(Exception):
            future.release()  # its sealed result need not stay on the worker

    def _lose(self, shard: _Shard, reason: str, *, sync: bool = True) -> None:
        """Shard lost: nothing more of it is heard, what its hosts held is given back, and
        its hosts whose results did not come back end interrupted (failed, if their walk had
        ended failed)."""
        if shard.given_up:
            return
        if sync:
            self._sync()  # take in the walk ends it sent before it was lost
        with self._lock:
            shard.given_up = shard.settled = True
            ended = dict(shard.ended)
        if shard.future is not None:
            with contextlib.suppress(Exception):
                shard.future.cancel()
        self._send(shard.number, ("gone",))
        if self._service is not None:
            self._service.release_shard(shard.number)
        failed = [h for h in shard.hosts if ended.get(h)]
        for host_id in failed:
            state = self._states.get(host_id)
            if state is not None and not (state.failed or state.unreachable):
                state.failed = True
                state.reason = f"failed on worker {shard.worker.name} ({reason})"
        self._lose_hosts([h for h in shard.hosts if not ended.get(h)], reason)

    def _lose_hosts(self, host_ids: Sequence[str], reason: str) -> None:
        coordinator = self._coordinator()
        for host_id in host_ids:
            state = self._states.get(host_id)
            if state is not None:
                state.lost = reason
            self.lost[host_id] = reason
            coordinator.forget(host_id)

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
        self._queue(up_queue_name(self.token))  # exists before any worker sends to it
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
        try:
            self._queue(shard_queue_name(self.token, number)).put(dumps([message]))
        except Exception as exc:
            shard = self._shards.get(number)
            if shard is not None and shard.broken is None and not shard.given_up:
                shard.broken = f"worker {shard.worker.name} cannot be reached: {exc}"

    def _reply(self, number: int, seq: int, value: Any) -> None:
        # the play's abort goes with every answer: a host let through a gate must know that
        # the failure which opened it aborted the play
        self._send(number, ("reply", seq, value, self._coordinator().play_aborted()))

    def _broadcast(self, kind: str) -> None:
        if kind == "stop":
            if self._stop_sent:
                return
            self._stop_sent = True
        else:
            if self._abort_sent:
                return
            self._abort_sent = True
        for shard in list(self._shards.values()):
            if not shard.settled:
                self._send(shard.number, (kind,))

    def _serve(self) -> None:
        up = self._queue(up_queue_name(self.token))
        run = self._run
        assert run is not None and self._service is not None
        while not self._closing.is_set():
            try:
                raw = up.get()  # no timeout: Dask logs each one; close() wakes it
            except Exception:
                if self._closing.wait(WAIT):
                    return
                continue
            try:
                batch = loads(raw)
            except Exception as exc:
                run.stop_run(error=f"a message from the cluster could not be read: {exc}")
                continue
            for message in batch:
                if message[0] == "close":
                    return
                try:
                    self._handle(message, run)
                except Exception as exc:
                    run.stop_run(error=f"a message from the cluster failed: {exc!r}")
            if run.stop.is_set():
                self._broadcast("stop")
            if self._coordinator().play_aborted():
                self._broadcast("abort")

    def _handle(self, message: tuple[Any, ...], run: RunShared) -> None:
        kind = message[0]
        if kind == "marker":
            done = self._markers.pop(message[1], None)
            if done is not None:
                done.set()
            return
        number = message[1]
        shard = self._shards.get(number)
        if kind == "claim":
            self._claim(shard, number, message[2], run)
            return
        if shard is None or shard.given_up:
            return  # a lost shard's late word: its hosts were reported already
        if kind == "event":
            event = message[2]
            if isinstance(event, StageStarted) and event.host in self._states:
                self._states[event.host].stage = event.stage
            run.bus.emit(event)
        elif kind == "command":
            if self.on_command is not None:
                host = run.inventory.hosts.get(message[2]) or Host(id=message[2], host="-")
                self.on_command(host, message[3])
        elif kind == "secret":
            SECRETS.add(message[2])
        elif kind in ("call", "tell"):
            _, _, seq, method, args = message
            if method == "walk_ended":
                with self._lock:
                    if args[0] in shard.ended:
                        return
                    shard.ended[args[0]] = bool(args[1])
            assert self._service is not None
            self._service.handle(number, seq, method, args)

    def _claim(self, shard: _Shard | None, number: int, address: str, run: RunShared) -> None:
        """A worker begins shard `number`: go (with the run's stop and abort as they are now),
        or refuse a shard already begun or given up (the scheduler's retry)."""
        with self._lock:
            refuse = shard is None or shard.given_up or shard.claimed_by is not None
            if not refuse:
                assert shard is not None
                shard.claimed_by = address
        if refuse:
            self._send(number, ("refuse",))
        else:
            stopped, aborted = run.stop.is_set(), self._coordinator().play_aborted()
            self._send(number, ("go", stopped, aborted))

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
        deadline = time.monotonic() + SYNC_WAIT
        while not done.wait(WAIT):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                return

    def abandon(self) -> None:
        """A second Ctrl-C: tell every shard to stop, cancel them, wait for nothing more."""
        self._stop_sent = False
        self._broadcast("stop")
        for shard in self._shards.values():
            if shard.future is not None and not shard.settled:
                with contextlib.suppress(Exception):
                    shard.future.cancel()
        self.close()

    def close(self) -> None:
        """Stop serving (after the run), release the run's queues and the cluster."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            with contextlib.suppress(Exception):
                self._queue(up_queue_name(self.token)).put(dumps([("close",)]))
            self._thread.join(timeout=5)
        if self._service is not None:
            self._service.close()
        for queue in self._queues.values():
            with contextlib.suppress(Exception):
                queue.close()
        self.cluster.close()
