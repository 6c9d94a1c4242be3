"""The executor's Coordinator (what hosts share) and ThreadRunner, on their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from machineroom.executor.coordinator import LocalCoordinator, OnceResult
from machineroom.executor.runner import ThreadRunner


def _threads(*targets: Callable[[], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_gate_holds_a_host_until_every_live_host_arrived() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b"], lock_step=True, forks=5)
    passed: list[str] = []

    def host_a() -> None:
        coordinator.arrive("a", (0, 0))
        passed.append("a")

    threads = _threads(host_a)
    time.sleep(0.1)
    assert passed == []  # b has not arrived yet
    coordinator.arrive("b", (0, 0))
    _join(threads)
    assert passed == ["a"]


def test_a_host_that_ended_its_walk_is_not_waited_for() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b"], lock_step=True, forks=5)
    threads = _threads(lambda: coordinator.arrive("a", (0, 1)))
    time.sleep(0.05)
    coordinator.walk_ended("b", failed=True)
    _join(threads)


def test_the_stop_flag_releases_the_gate() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b"], lock_step=True, forks=5)
    threads = _threads(lambda: coordinator.arrive("a", (0, 0)))
    coordinator.stop.set()
    _join(threads)


def test_free_strategy_has_no_gate_and_no_slots() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b"], lock_step=False, forks=1)
    coordinator.arrive("a", (0, 0))  # returns at once
    with coordinator.task_slot(), coordinator.task_slot():
        pass  # no fork limit on tasks: the runner limits walking hosts instead


def test_task_slots_let_forks_tasks_run_at_once() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b", "c"], lock_step=True, forks=2)
    running = 0
    most = 0
    lock = threading.Lock()

    def task() -> None:
        nonlocal running, most
        with coordinator.task_slot():
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.05)
            with lock:
                running -= 1

    _join(_threads(task, task, task, task))
    assert most == 2


def test_throttle_limits_one_task() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b", "c"], lock_step=False, forks=10)
    inside: list[int] = []
    count = 0
    lock = threading.Lock()

    def task() -> None:
        nonlocal count
        with coordinator.throttle("t1", 1):
            with lock:
                count += 1
                inside.append(count)
            time.sleep(0.03)
            with lock:
                count -= 1

    _join(_threads(task, task, task))
    assert max(inside) == 1


def test_max_fail_percentage_aborts_the_play() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b", "c", "d"], lock_step=False, forks=4, max_fail_percentage=30)
    coordinator.host_done("a", failed=True)  # 25%: not over 30
    assert not coordinator.play_aborted()
    coordinator.host_done("b", failed=False)  # ended (end_host): not a failure
    assert not coordinator.play_aborted()
    coordinator.walk_ended("c", failed=True)  # 50%
    assert coordinator.play_aborted()
    coordinator.begin_batch(["e"], lock_step=False, forks=4, max_fail_percentage=30)
    assert not coordinator.play_aborted()  # a new batch starts clean


def test_run_once_first_host_runs_the_others_take_its_result() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b", "c"], lock_step=False, forks=3)
    claims: dict[str, object] = {}

    def host(name: str) -> Callable[[], None]:
        def claim() -> None:
            claims[name] = coordinator.claim_once(name, ("t1", 1))

        return claim

    waiting = _threads(host("b"), host("c"))
    time.sleep(0.05)
    assert claims == {}  # b and c wait for a, the batch's first host
    assert coordinator.claim_once("a", ("t1", 1)).action == "run"
    result = OnceResult(runner="a", status="changed", changes={"registered": {"x": 1}})
    coordinator.finish_once(("t1", 1), result)
    _join(waiting)
    assert {name: c.action for name, c in claims.items()} == {"b": "take", "c": "take"}  # type: ignore[attr-defined]
    assert claims["b"].result == result  # type: ignore[attr-defined]


def test_run_once_passes_to_the_next_host_when_the_first_is_done() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b"], lock_step=False, forks=2)
    coordinator.host_done("a", failed=True)
    assert coordinator.claim_once("b", ("t1", 1)).action == "run"


def test_run_once_skipped_when_the_play_aborts() -> None:
    coordinator = LocalCoordinator()
    coordinator.begin_batch(["a", "b"], lock_step=False, forks=2)
    claims: list[str] = []
    threads = _threads(lambda: claims.append(coordinator.claim_once("b", ("t", 1)).action))
    time.sleep(0.05)
    coordinator.abort_play()
    _join(threads)
    assert claims == ["skip"]


class _Walk:
    def __init__(self, host_id: str, seen: list[int], lock: threading.Lock) -> None:
        self.host_id = host_id
        self._seen = seen
        self._lock = lock
        self.active = [0]

    def walk(self) -> None:
        with self._lock:
            self.active[0] += 1
            self._seen.append(self.active[0])
        time.sleep(0.03)
        with self._lock:
            self.active[0] -= 1


def test_thread_runner_walks_at_most_n_hosts_at_once() -> None:
    seen: list[int] = []
    lock = threading.Lock()
    walks = [_Walk(f"h{i}", seen, lock) for i in range(6)]
    shared = [0]
    for walk in walks:
        walk.active = shared
    ThreadRunner().run_walks(walks, at_once=2, interrupt=lambda: None)
    assert len(seen) == 6 and max(seen) <= 2


def test_thread_runner_passes_a_walk_error_on() -> None:
    class Broken:
        host_id = "x"

        def walk(self) -> None:
            raise RuntimeError("bug in a walk")

    with pytest.raises(RuntimeError, match="bug in a walk"):
        ThreadRunner().run_walks([Broken()], at_once=1, interrupt=lambda: None)
