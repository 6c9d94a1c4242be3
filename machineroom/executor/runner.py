"""Where hosts walk: the `Runner` seam, and `ThreadRunner`, today's threads.

The executor hands a runner one batch of a play as `HostWalk`s (each walks one host through
the play, emitting its events on the run's bus and meeting the other hosts only through the
run's Coordinator, executor/coordinator.py) and how many may walk at once. The runner is the
only part of the executor that knows how hosts run in parallel: a runner on other processes or
machines pairs with a Coordinator of its own and needs nothing else from the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

POLL = 0.2  # seconds: how often the waiting thread lets Ctrl-C (KeyboardInterrupt) in


class HostWalk(Protocol):
    """One host's walk of a play (executor/walker.py HostWalker)."""

    @property
    def host_id(self) -> str:
        """The host it walks."""
        ...

    def walk(self) -> None:
        """Walk the host through the play; events go to the run's bus."""


class Runner(Protocol):
    """Runs hosts' walks of a play, at most `at_once` at a time, until all have ended."""

    def run_walks(
        self, walks: Sequence[HostWalk], *, at_once: int, interrupt: Callable[[], None]
    ) -> None:
        """Run every walk; return when all ended. On Ctrl-C (KeyboardInterrupt in the
        calling thread) call `interrupt` (it stops the run: no task starts and running
        commands are killed), wait for the walks to end, then raise it again."""


class ThreadRunner:
    """Walks hosts in threads of this process (the default runner)."""

    def run_walks(
        self, walks: Sequence[HostWalk], *, at_once: int, interrupt: Callable[[], None]
    ) -> None:
        """See Runner.run_walks."""
        if not walks:
            return
        pool = ThreadPoolExecutor(max_workers=max(1, at_once), thread_name_prefix="host")
        futures = [pool.submit(walk.walk) for walk in walks]
        try:
            for future in futures:
                while True:  # a bounded wait: the main thread gets Ctrl-C between waits
                    try:
                        future.result(timeout=POLL)
                        break
                    except TimeoutError:
                        continue
        except KeyboardInterrupt:
            # first Ctrl-C (or SIGTERM, SIGHUP): no new task starts; running commands are killed
            interrupt()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
