"""Ad-hoc commands: the same shell command on many hosts at once (`machineroom run`).

Each host gets one connection from the pool; at most `forks` hosts are worked on at once.
Results come back through `on_result` as each host finishes, so the caller can print them
while slower hosts still run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from machineroom.connection.base import Become, CommandResult
from machineroom.connection.pool import ConnectionPool
from machineroom.errors import CommandTimeout, ConnectionFailure, Interrupted, MachineroomError
from machineroom.inventory.model import Host

Status = Literal["ok", "failed", "unreachable"]


@dataclass(frozen=True)
class HostOutcome:
    """What happened on one host: its status, the command's result, or why there is none."""

    host: Host
    status: Status
    result: CommandResult | None = None
    error: str = ""
    duration: float = 0.0


def run_everywhere(
    hosts: Sequence[Host],
    command: str | Callable[[Host], str],
    pool: ConnectionPool,
    *,
    forks: int = 50,
    become: Callable[[Host], Become | None] | None = None,
    timeout: float | None = None,
    on_result: Callable[[HostOutcome], None] | None = None,
    stop: threading.Event | None = None,
) -> list[HostOutcome]:
    """Run `command` on every host (at most `forks` at once); outcomes in `hosts` order.

    `command` is one command line for every host, or a function giving each host its own.
    `become(host)` gives the sudo settings for a host (each host may have its own password).

    On Ctrl-C (or when `stop` is set) hosts that have not started are left out of the returned
    list and `stop` is set, so the caller can tell the run was interrupted; on Ctrl-C the
    commands running then are killed on their hosts and their hosts left out too.
    """
    stop = stop or threading.Event()
    lock = threading.Lock()

    def one(host: Host) -> HostOutcome | None:
        if stop.is_set():
            return None
        started = time.monotonic()
        try:
            text = command(host) if callable(command) else command
            result = pool.run(host, text, become=become(host) if become else None, timeout=timeout)
            outcome = HostOutcome(
                host, "ok" if result.ok else "failed", result, duration=time.monotonic() - started
            )
        except ConnectionFailure as exc:
            outcome = HostOutcome(
                host, "unreachable", error=exc.reason, duration=time.monotonic() - started
            )
        except Interrupted:
            return None  # killed by the stop: it did not finish, as if it had not started
        except CommandTimeout as exc:
            outcome = HostOutcome(
                host, "failed", error=str(exc), duration=time.monotonic() - started
            )
        except MachineroomError as exc:
            outcome = HostOutcome(
                host, "failed", error=str(exc), duration=time.monotonic() - started
            )
        if on_result is not None:
            with lock:  # one host's lines at a time on the terminal
                on_result(outcome)
        return outcome

    workers = ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts) or 1)))
    futures = [workers.submit(one, host) for host in hosts]
    try:
        outcomes = [future.result() for future in futures]
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM, SIGHUP): nothing new starts; running commands are killed.
        stop.set()
        pool.stop_commands()
        workers.shutdown(wait=True, cancel_futures=True)
        finished = [f.result() for f in futures if f.done() and not f.cancelled()]
        return [o for o in finished if o is not None]
    workers.shutdown(wait=True)
    return [o for o in outcomes if o is not None]
