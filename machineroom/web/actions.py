"""Collections and applies started from the dashboard: each one is a RunRequest with the
server's inventory and state database, run by a child process of the CLI (`python -m
machineroom run-request -`, the request as JSON on its stdin: runs/execute.py), so it lands in
the run history and the audit log like any other run.

The request's trigger, `web:TOKEN-NAME:NONCE`, is recorded in `runs.trigger`, which is how the
dashboard finds the run of an action. No value travels in argv or the environment.

A synchronous collection (`POST /api/hosts/{id}/collect`) holds a slot of the same
ActionManager while it waits, so it obeys the same limits. Action logs live in a folder only
the server's user can read (apply diffs may show configuration), removed when it stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machineroom.runs.connect import ConnectSettings
from machineroom.runs.execute import CHILD_ARGS, request_file
from machineroom.runs.request import RunRequest
from machineroom.state.records import iso, utc_now
from machineroom.web.errors import ApiError

MAX_RUNNING = 4  # actions at once from the web (synchronous collects included); more is a 409
INTERRUPT_GRACE = 3.0  # seconds a timed-out synchronous child gets after SIGINT
STARTUP_LIMIT = 30.0  # seconds a synchronous child may take to open its run
OUTPUT_TAIL = 4000  # characters of a child's output the API shows
KEEP_FINISHED = 200  # finished actions remembered
# what an unknown host key's message says in a dashboard run (the CLI's names its flag)
TRUST_ADVICE = (
    "If that fingerprint is the host's, an admin can trust the key on the dashboard, "
    "from the page of an apply or collection started on its Actions page."
)
ACTION_TRUST_ADVICE = (
    "If that fingerprint is the host's, an admin can trust the key on the dashboard: /actions/{id}"
)


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
        self,
        inventory_paths: Sequence[str],
        state_path: str,
        cwd: Path | None,
        max_running: int = MAX_RUNNING,
        connect: ConnectSettings | None = None,
    ) -> None:
        # what every request gets: the server's inventory and state database, and the
        # connection settings `serve` was given (beside the project's: runs/execute.py)
        self.inventory_paths = tuple(inventory_paths)
        self.state_path = state_path
        self.connect = dataclasses.replace(
            connect or ConnectSettings(), unknown_key_advice=TRUST_ADVICE
        )
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

    def request(self, kind: str, target: str, **fields: Any) -> RunRequest:
        """A request on this server's inventory and state database; the child takes the
        connection settings of the repository's configuration, as a command typed there,
        with `serve`'s --known-hosts and --vault-password-file beside them."""
        return RunRequest(
            kind=kind,
            target=target,
            inventory_paths=self.inventory_paths,
            state_path=self.state_path,
            connect=self.connect,
            connect_from_settings=True,
            **fields,
        )

    def start(self, label: str, request: RunRequest, by: str) -> Action:
        """Start a child running `request`, its trigger `web:BY:NONCE` (`label` names the
        target: the pattern, or the playbook as listed); 409 when the same action is already
        running or max_running actions are."""
        kind = request.kind
        with self._lock:
            self._check_free(kind, label)
            nonce = secrets.token_hex(6)
            trigger = f"web:{by}:{nonce}"
            advice = ACTION_TRUST_ADVICE.format(id=nonce)
            connect = dataclasses.replace(request.connect, unknown_key_advice=advice)
            request = dataclasses.replace(request, trigger=trigger, connect=connect)
            argv = child_argv()
            log_path = self._logs / f"{nonce}.log"
            with log_path.open("wb") as log, request_file(request) as stdin:
                process = subprocess.Popen(
                    argv,
                    stdin=stdin,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env={**os.environ, "NO_COLOR": "1"},
                    # Its own session: Ctrl-C on the server does not interrupt an apply.
                    start_new_session=True,
                )
            action = Action(nonce, kind, label, request.check, by, trigger, argv, log_path, process)
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


def child_argv() -> list[str]:
    """How the server starts a run: this Python, the CLI reading a request on stdin."""
    return [sys.executable, "-m", "machineroom", *CHILD_ARGS]


def run_with_timeout(
    request: RunRequest,
    cwd: Path | None,
    timeout: float,
    begun: Callable[[], bool] | None = None,
) -> Any:
    """Run `request` in a child to completion; on timeout interrupt its process group
    (SIGINT, so it can record the run as interrupted), kill the group after INTERRUPT_GRACE
    seconds, and raise 408. A killed child leaves its run 'running': the caller marks it
    interrupted.

    `begun()` says whether the child's run has started (its row exists): the `timeout`
    counts from then, so that a slow start on a busy machine (the interpreter and its
    imports) is not charged to the work and a run cut short is always recorded. The start
    itself may take up to STARTUP_LIMIT seconds."""
    argv = child_argv()
    with request_file(request) as stdin:
        process = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, "NO_COLOR": "1"},
            start_new_session=True,
        )
    launched = time.monotonic()
    deadline = None if begun is not None else launched + timeout
    while True:
        now = time.monotonic()
        if deadline is None and (begun is None or begun() or now - launched > STARTUP_LIMIT):
            deadline = now + timeout
        wait = 0.1 if deadline is None else max(0.0, deadline - now)
        try:
            out, err = process.communicate(timeout=wait)
            return subprocess.CompletedProcess(argv, process.returncode, out, err)
        except subprocess.TimeoutExpired:  # retrying communicate loses no output
            if deadline is not None and time.monotonic() >= deadline:
                break
    stop_group(process, INTERRUPT_GRACE)
    raise ApiError(408, f"the command did not finish within {timeout:g} s")


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
