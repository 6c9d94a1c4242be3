"""Stopping a command from outside: SIGINT, SIGTERM and SIGHUP all take the path of Ctrl-C.

Python turns SIGINT into KeyboardInterrupt in the main thread, and every command that touches
hosts handles that one way: no task starts any more, the commands running on hosts are killed
(by their MACHINEROOM_RUN tag), the results so far are kept, the run is recorded `interrupted`
and the command exits 99. `stop_on_signals()` makes SIGTERM (CI systems, `timeout`, service
managers, the scheduler's timeout) and SIGHUP (a closed terminal or SSH session) raise the same
exception, so there is one stop path, and remembers which signal came, for the run's summary.
A signal that was ignored when the process started (`nohup`, `cmd &` in a script) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from machineroom.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_received: list[int] = []  # stop signals received by this process, in order


class RunAborted(Interrupted):
    """A second stop signal ended the run at once; the database is consistent, the run
    marked interrupted. The process should end now (worker threads may still be running)."""

    def __init__(self) -> None:
        super().__init__("aborted: run marked interrupted")


def _stop(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread; the
    previous handlers come back at the end. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _install(_stop)
    try:
        yield
    finally:
        _restore(previous)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within: stop signals are ignored, so that the last writes of a stopping run land;
    afterwards they stop the command again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _install(signal.SIG_IGN)
    try:
        yield
    finally:
        _restore(previous)


def ignore_stops() -> None:
    """Ignore stop signals from now on (the process is about to end after an abort)."""
    if threading.current_thread() is threading.main_thread():
        _install(signal.SIG_IGN)


def received_stop() -> bool:
    """Whether a stop signal (or Ctrl-C) reached this process."""
    return bool(_received)


def stop_reason() -> str:
    """How the command was stopped: `interrupted (SIGTERM)`; `interrupted` when no signal
    is known (e.g. a KeyboardInterrupt raised in-process)."""
    if not _received:
        return "interrupted"
    return f"interrupted ({signal.Signals(_received[0]).name})"


def _install(handler: Any) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN and handler is not signal.SIG_IGN:
            continue  # nohup and friends: the user asked for this one to be ignored
        previous[signum] = signal.signal(signum, handler)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
