"""The run's Coordinator across machines: the controller keeps the one real Coordinator
(executor/coordinator.py's LocalCoordinator, the code a local run uses) and serves it;
walkers on workers reach it through `RemoteCoordinator`, over the run's Dask queues.

A call that answers (strategy linear's gate, a task slot, a throttle, run_once) waits for
its reply; one that only informs (a host done, a walk ended, a play aborted) does not. The
stop and abort flags are mirrored on each worker (the controller sends `stop` and `abort`
as they happen), so the walkers' frequent checks cost nothing. Without strategy linear a
gate and a task slot are nothing, and are decided on the worker.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from machineroom.errors import Interrupted
from machineroom.executor.coordinator import (
    Flag,
    LocalCoordinator,
    OnceClaim,
    OnceKey,
    OnceResult,
    Position,
)

REPLY_WAIT = 0.5  # seconds: a waiting walker rechecks whether its shard was given up


@dataclass
class _Waiting:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None


class RemoteCoordinator:
    """A worker's stand-in for the controller's Coordinator (the Coordinator protocol)."""

    def __init__(
        self, shard: int, lock_step: bool, send: Callable[[tuple[Any, ...]], None]
    ) -> None:
        self.stop: Flag = threading.Event()
        self._abort = threading.Event()
        self._shard = shard
        self._lock_step = lock_step
        self._send = send
        self._seq = itertools.count(1)
        self._waiting: dict[int, _Waiting] = {}
        self._lock = threading.Lock()
        self.gone = threading.Event()  # the controller gave the shard up: stop waiting

    # --- messages from the controller (the shard's dispatcher thread) ---

    def replied(self, seq: int, value: Any) -> None:
        """The reply to call `seq` arrived."""
        with self._lock:
            waiting = self._waiting.pop(seq, None)
        if waiting is not None:
            waiting.value = value
            waiting.done.set()

    def aborted(self) -> None:
        """The controller aborted the play."""
        self._abort.set()

    # --- the Coordinator protocol ---

    def begin_batch(
        self,
        hosts: Sequence[str],
        *,
        lock_step: bool,
        forks: int,
        max_fail_percentage: float | None = None,
    ) -> None:
        """Batches begin on the controller."""
        raise NotImplementedError("a batch begins on the controller")

    def abort_play(self) -> None:
        """See Coordinator.abort_play."""
        self._abort.set()
        self._tell("abort_play")

    def play_aborted(self) -> bool:
        """See Coordinator.play_aborted (the mirrored flag)."""
        return self._abort.is_set()

    def arrive(self, host: str, position: Position) -> None:
        """See Coordinator.arrive."""
        if self._lock_step:
            self._call("arrive", host, position)

    def host_done(self, host: str, *, failed: bool) -> None:
        """See Coordinator.host_done."""
        self._tell("host_done", host, failed)

    def walk_ended(self, host: str, *, failed: bool) -> None:
        """See Coordinator.walk_ended."""
        self._tell("walk_ended", host, failed)

    def task_slot(self) -> AbstractContextManager[None]:
        """See Coordinator.task_slot."""
        if not self._lock_step:
            return nullcontext()
        return self._held("task_slot", ())

    def throttle(self, task_id: str, limit: int) -> AbstractContextManager[None]:
        """See Coordinator.throttle."""
        return self._held("throttle", (task_id, limit))

    def claim_once(self, host: str, key: OnceKey) -> OnceClaim:
        """See Coordinator.claim_once."""
        claim = self._call("claim_once", host, key)
        assert isinstance(claim, OnceClaim)
        return claim

    def finish_once(self, key: OnceKey, result: OnceResult) -> None:
        """See Coordinator.finish_once."""
        self._tell("finish_once", key, result)

    @contextmanager
    def _held(self, kind: str, args: tuple[Any, ...]) -> Iterator[None]:
        ticket = self._call(f"{kind}_enter", *args)
        try:
            yield
        finally:
            self._tell(f"{kind}_exit", ticket)

    def _tell(self, method: str, *args: Any) -> None:
        self._send(("tell", self._shard, 0, method, args))

    def _call(self, method: str, *args: Any) -> Any:
        seq = next(self._seq)
        waiting = _Waiting()
        with self._lock:
            self._waiting[seq] = waiting
        self._send(("call", self._shard, seq, method, args))
        while not waiting.done.wait(REPLY_WAIT):
            if self.gone.is_set():
                raise Interrupted("the controller gave this shard up")
        return waiting.value


class CoordinatorService:
    """The controller's side: carries out the workers' calls on the run's LocalCoordinator.

    Calls that may wait (a gate, a slot, run_once) run on threads of their own; the others
    at once, in the order they came. `reply(shard, seq, value)` sends an answer back.
    """

    def __init__(
        self, coordinator: LocalCoordinator, reply: Callable[[int, int, Any], None]
    ) -> None:
        self.coordinator = coordinator
        self._reply = reply
        # a thread per waiting call (a linear play's gate holds one per host): no bound of
        # ours may be below the number of hosts, or the gate would wait for ever
        self._pool = ThreadPoolExecutor(max_workers=1_000_000, thread_name_prefix="mr-coord")
        self._held: dict[
            int, tuple[int, AbstractContextManager[None]]
        ] = {}  # ticket -> (shard, held)
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()

    def handle(self, shard: int, seq: int, method: str, args: tuple[Any, ...]) -> None:
        """One call (`seq` > 0: answer it) or notice (`seq` == 0) from shard `shard`."""
        coordinator = self.coordinator
        if method == "host_done":
            coordinator.host_done(args[0], failed=bool(args[1]))
        elif method == "walk_ended":
            coordinator.walk_ended(args[0], failed=bool(args[1]))
        elif method == "abort_play":
            coordinator.abort_play()
        elif method == "finish_once":
            coordinator.finish_once(args[0], args[1])
        elif method.endswith("_exit"):
            with self._lock:
                held = self._held.pop(int(args[0]), None)
            if held is not None:
                held[1].__exit__(None, None, None)
        else:
            self._pool.submit(self._answer, shard, seq, method, args)

    def _answer(self, shard: int, seq: int, method: str, args: tuple[Any, ...]) -> None:
        coordinator = self.coordinator
        value: Any = None
        if method == "arrive":
            coordinator.arrive(args[0], tuple(args[1]))
        elif method == "claim_once":
            value = coordinator.claim_once(args[0], tuple(args[1]))
        elif method in ("task_slot_enter", "throttle_enter"):
            held = (
                coordinator.task_slot()
                if method == "task_slot_enter"
                else coordinator.throttle(str(args[0]), int(args[1]))
            )
            held.__enter__()
            with self._lock:
                value = next(self._tickets)
                self._held[value] = (shard, held)
        self._reply(shard, seq, value)

    def release_shard(self, shard: int) -> None:
        """Give back the task slots and throttles a lost shard's hosts held."""
        with self._lock:
            mine = [t for t, (number, _) in self._held.items() if number == shard]
            held = [self._held.pop(t)[1] for t in mine]
        for each in held:
            each.__exit__(None, None, None)

    def close(self) -> None:
        """Release what is still held and stop the threads (their waits end with the run's
        stop flag)."""
        with self._lock:
            held, self._held = [h for _, h in self._held.values()], {}
        for each in held:
            each.__exit__(None, None, None)
        self._pool.shutdown(wait=False, cancel_futures=True)
