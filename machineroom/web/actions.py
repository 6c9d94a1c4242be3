"""Collections and applies started from the dashboard: each one is the CLI itself, run as a
child process (`python -m machineroom collect|apply ...`) with the server's inventory and
state database, so it lands in the run history and the audit log like any other run.

$MACHINEROOM_TRIGGER=web:TOKEN-NAME:NONCE goes into the child's environment; `start_run`
copies it into `runs.trigger`, which is how the dashboard finds the run of an action. Values
go to the child as argv (never through a shell), after `--` where they are positional.

A synchronous collection (`POST /api/hosts/{id}/collect`) holds a slot of the same
ActionManager while it waits, so it obeys the same limits. Action logs live in a folder only
the server's user can read (apply diffs may show configuration), removed when it stops.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machineroom.state.records import iso, utc_now
from machineroom.web.errors import ApiError

MAX_RUNNING = 4  # actions at once from the web (synchronous collects included); more is a 409
INTERRUPT_GRACE = 3.0  # seconds a timed-out synchronous child gets after SIGINT
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


@dataclass(frozen=True)
class Claim:
    """A slot held by a synchronous command (not an Action: nothing is kept once it ends)."""

    kind: str
    target: str
    by: str
    started_at: str = field(default_factory=lambda: iso(utc_now()))


class ActionManager:
    """Starts, reaps and remembers the dashboard's child processes."""

    def __init__(
        self, cli_args: list[str], cwd: Path | None, max_running: int = MAX_RUNNING
    ) -> None:
        # cli_args: the -i/--state options every child gets.
        self.cli_args = cli_args
        self.cwd = cwd
        self.max_running = max_running
        self._lock = threading.Lock()
        self._actions: dict[str, Action] = {}
        self._claims: dict[str, Claim] = {}
        # mkdtemp makes it 0700: the logs hold apply output and diffs.
        self._logs = Path(tempfile.mkdtemp(prefix="machineroom-web-"))

    def _check_free(self, kind: str, target: str) -> None:
        # Called with the lock held: 409 when the same action runs or every slot is taken.
        busy: list[Action | Claim] = [a for a in self._actions.values() if a.running]
        busy += self._claims.values()
        for other in busy:
            if other.kind == kind and other.target == target:
                which = f"action {other.id}, " if isinstance(other, Action) else ""
                raise ApiError(
                    409,
                    f"{kind} {target!r} is already running ({which}started "
                    f"by {other.by} at {other.started_at})",
                )
        if len(busy) >= self.max_running:
            raise ApiError(409, f"{len(busy)} actions are running; wait for one to end")

    @contextlib.contextmanager
    def claim(self, kind: str, target: str, by: str) -> Iterator[Claim]:
        """Hold a slot while a synchronous command runs; 409 as start() would."""
        key = secrets.token_hex(6)
        with self._lock:
            self._check_free(kind, target)
            held = self._claims[key] = Claim(kind, target, by)
        try:
            yield held
        finally:
            with self._lock:
                del self._claims[key]

    def start(
        self, kind: str, target: str, by: str, args: list[str], check: bool = False
    ) -> Action:
        """Start `machineroom KIND [options] ... args`; 409 when the same action is already
        running or max_running actions are."""
        with self._lock:
            self._check_free(kind, target)
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
        run of its own that finishes and records itself without the server. Remove the logs
        (a child still running keeps writing to its open, now unlinked, file)."""
        deadline = time.monotonic() + grace
        for action in self.all():
            if action.running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    action.process.wait(max(0.0, deadline - time.monotonic()))
        shutil.rmtree(self._logs, ignore_errors=True)


def run_with_timeout(argv: list[str], cwd: Path | None, env: dict[str, str], timeout: float) -> Any:
    """Run a child to completion; on timeout interrupt its process group (SIGINT, so it
    can record the run as interrupted), kill the group after INTERRUPT_GRACE seconds, and
    raise 408. A killed child leaves its run 'running': the caller marks it interrupted."""
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
        stop_group(process, INTERRUPT_GRACE)
        raise ApiError(408, f"the command did not finish within {timeout:g} s") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGINT to the child's process group (it leads a session of its own), then SIGKILL to
    the whole group when it has not ended within `grace` seconds: `collect` waits for its
    remote commands on SIGINT, and killing the leader alone would leave them running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
