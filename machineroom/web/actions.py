"""Collections and applies started from the dashboard: each one is the CLI itself, run as a
child process (`python -m machineroom collect|apply ...`) with the server's inventory and
state database, so it lands in the run history and the audit log like any other run.

$MACHINEROOM_TRIGGER=web:TOKEN-NAME:NONCE goes into the child's environment; `start_run`
copies it into `runs.trigger`, which is how the dashboard finds the run of an action. Values
go to the child as argv (never through a shell), after `--` where they are positional.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machineroom.state.records import iso, utc_now
from machineroom.web.errors import ApiError

MAX_RUNNING = 4  # actions at once from the web; more is a 409
OUTPUT_TAIL = 4000  # characters of a child's output the API shows
KEEP_FINISHED = 200  # finished actions remembered


@dataclass
class Action:
    """One child process started by the dashboard."""

    id: str
    kind: str  # collect | apply
    target: str  # the pattern or the playbook name
    check: bool
    by: str  # token name
    trigger: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    started_at: str = field(default_factory=lambda: iso(utc_now()))
    finished_at: str | None = None
    exit_code: int | None = None
    run_id: int | None = None

    @property
    def running(self) -> bool:
        """Whether the child has not exited yet."""
        return self.exit_code is None

    def output_tail(self) -> str:
        """The end of the child's output (stdout and stderr)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - OUTPUT_TAIL))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""


class ActionManager:
    """Starts, reaps and remembers the dashboard's child processes."""

    def __init__(self, cli_args: list[str], cwd: Path | None) -> None:
        # cli_args: the -i/--state options every child gets.
        self.cli_args = cli_args
        self.cwd = cwd
        self._lock = threading.Lock()
        self._actions: dict[str, Action] = {}
        self._logs = Path(tempfile.mkdtemp(prefix="machineroom-web-"))

    def start(
        self, kind: str, target: str, by: str, args: list[str], check: bool = False
    ) -> Action:
        """Start `machineroom KIND [options] ... args`; 409 when the same action is already
        running or MAX_RUNNING actions are."""
        with self._lock:
            running = [a for a in self._actions.values() if a.running]
            for other in running:
                if other.kind == kind and other.target == target:
                    raise ApiError(
                        409,
                        f"{kind} {target!r} is already running (action {other.id}, started "
                        f"by {other.by} at {other.started_at})",
                    )
            if len(running) >= MAX_RUNNING:
                raise ApiError(409, f"{len(running)} actions are running; wait for one to end")
            nonce = secrets.token_hex(6)
            trigger = f"web:{by}:{nonce}"
            argv = [sys.executable, "-m", "machineroom", kind, *self.cli_args, *args]
            log_path = self._logs / f"{nonce}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env={**os.environ, "MACHINEROOM_TRIGGER": trigger, "NO_COLOR": "1"},
                    # Its own session: Ctrl-C on the server does not interrupt an apply.
                    start_new_session=True,
                )
            action = Action(nonce, kind, target, check, by, trigger, argv, log_path, process)
            self._actions[nonce] = action
            self._forget_old()
        threading.Thread(target=self._reap, args=(action,), daemon=True).start()
        return action

    def _reap(self, action: Action) -> None:
        code = action.process.wait()
        with self._lock:
            action.exit_code = code
            action.finished_at = iso(utc_now())

    def _forget_old(self) -> None:
        finished = [a for a in self._actions.values() if not a.running]
        for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            self._actions.pop(old.id, None)
            old.log_path.unlink(missing_ok=True)

    def get(self, action_id: str) -> Action | None:
        """The action with this id, or None."""
        with self._lock:
            return self._actions.get(action_id)

    def all(self) -> list[Action]:
        """Every remembered action, newest first."""
        with self._lock:
            return sorted(self._actions.values(), key=lambda a: a.started_at, reverse=True)

    def running_playbooks(self) -> set[str]:
        """Names of the playbooks being applied now."""
        with self._lock:
            return {a.target for a in self._actions.values() if a.kind == "apply" and a.running}

    def close(self, grace: float = 5.0) -> None:
        """Wait up to `grace` seconds for running children, then leave them: each is a CLI
        run of its own that finishes and records itself without the server."""
        deadline = time.monotonic() + grace
        for action in self.all():
            if action.running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    action.process.wait(max(0.0, deadline - time.monotonic()))


def run_with_timeout(argv: list[str], cwd: Path | None, env: dict[str, str], timeout: float) -> Any:
    """Run a child to completion; on timeout interrupt it (SIGINT, so it records the run as
    interrupted), then kill it, and raise 408."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.communicate(timeout=3)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            process.kill()
            process.communicate()
        raise ApiError(408, f"the command did not finish within {timeout:g} s") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)
