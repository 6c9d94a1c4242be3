"""A per-host program: several tasks' remote steps sent to a host as ONE sh program.

The walker plans a run of consecutive tasks whose inputs do not depend on one another's
results (executor/program_plan.py) and starts their steps here, each in a subshell of its own,
between markers, stopping after the first that fails (unless its errors are ignored). The
program runs in a thread of its own; its output is split by task as it arrives, so that the
walker, taking the tasks one by one as it always does, gets each task's output as soon as
that task ended on the host and reports it then (same events, rows and diffs as one command
per task). A task the walker reaches that the program did not run (it stopped before, or the
walker went another way) simply runs alone.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from machineroom.connection.base import Become, Connection
from machineroom.connection.command import acting
from machineroom.connection.output import CappedOutput, count_not_kept
from machineroom.errors import Interrupted, MachineroomError
from machineroom.modules.base import CommandOutput, ModuleContext

if TYPE_CHECKING:
    from machineroom.executor.hoststate import HostState


# How long the command that stops a given-up program may take.
_KILL_TIMEOUT = 30.0


@dataclass(frozen=True)
class ProgramStep:
    """One task's part of a program: what the walker would have sent for it alone, and the
    rendered call it came from (so that the walker does not render it twice)."""

    task_id: str
    script: str  # the environment's exports + the module's script
    stdin: bytes | None
    go_on: bool  # the program goes on after this step fails (its errors are ignored)
    args: Mapping[str, Any] = field(repr=False)
    ctx: ModuleContext = field(repr=False)
    target: Any = field(repr=False)  # executor/delegation.py Target: the host itself
    timeout: float | None = None  # the step's own (fact gathering's gather_timeout)
    sets_facts: bool = False  # later steps must not read facts
    action: str = ""  # the call as the task wrote it, for the audit log (action_text.py)


def compose(marker: str, steps: list[ProgramStep]) -> tuple[str, bytes]:
    """The program's sh text and its stdin (the steps' stdin, one after the other).

    Each step runs in a subshell, so its `exit` and its variables stay its own; a step with
    input reads exactly its bytes, and what it leaves unread is drained so that the next
    step's input starts where it should. GNU `head -c` reads no further than it is asked;
    busybox's and BSD's read ahead through stdio, so there `dd ibs=1` (a read a byte) takes
    a step's bytes, and the last step with input simply reads the rest. Markers on both
    streams say where each step begins and ends, and with which exit code. Every process of
    the program carries MR_PROGRAM=<marker> (and the marker is in its shells' command
    line), by which `Program` kills what is left of it when the walker gives it up.
    """
    with_input = [index for index, step in enumerate(steps) if step.stdin]
    parts: list[str] = [f"export MR_PROGRAM={marker}\n"]
    if len(with_input) > 1:
        parts.append(
            'case $(head --version 2>/dev/null) in *"GNU coreutils"*) mr_exact=1 ;; '
            "*) mr_exact= ;; esac\n"
            'mr_take() { if [ -n "$mr_exact" ]; then head -c "$1"; '
            'else dd ibs=1 count="$1" 2>/dev/null; fi; }\n'
        )
    stdin = bytearray()
    for index, step in enumerate(steps):
        begin = f"{marker} B {index}"
        parts.append(f"printf '%s\\n' '{begin}'; printf '%s\\n' '{begin}' >&2\n")
        if step.stdin and index == with_input[-1]:
            stdin += step.stdin
            parts.append(f"(\n{step.script}\n)\n")
        elif step.stdin:
            stdin += step.stdin
            parts.append(
                f"mr_take {len(step.stdin)} | {{ (\n{step.script}\n)\n"
                "mr_rc=$?; cat >/dev/null; exit $mr_rc; }\n"
            )
        else:
            parts.append(f"(\n{step.script}\n) </dev/null\n")
        parts.append(
            "mr_rc=$?\n"
            f"printf '\\n%s %s\\n' '{marker} E {index}' \"$mr_rc\"; "
            f"printf '\\n%s\\n' '{marker} E {index}' >&2\n"
        )
        if not step.go_on:
            parts.append('[ "$mr_rc" = 0 ] || exit 0\n')
    return "".join(parts), bytes(stdin)


def kill_line(marker: str) -> str:
    """A shell line that kills every process of the program `marker` names: by the variable
    in its environment, and its shells by their command line (`[m]r_` keeps the line from
    matching itself)."""
    pattern = f"[{marker[0]}]{marker[1:]}"
    return (
        f"{{ grep -lzx 'MR_PROGRAM={pattern}' /proc/[0-9]*/environ;"
        f" grep -lz '{pattern}' /proc/[0-9]*/cmdline; }} 2>/dev/null"
        " | cut -d/ -f3 | sort -u | xargs -r kill -KILL 2>/dev/null; true"
    )


class _Split:
    """One stream of a program (stdout or stderr) cut into its steps' outputs as it comes."""

    def __init__(self, program: Program, stream: int) -> None:
        self.program = program
        self.stream = stream
        self.mark = program.marker.encode()
        self.buf = bytearray()
        self.current: int | None = None
        self.outputs: dict[int, CappedOutput] = {}

    def add(self, data: bytes) -> None:
        """Take the next piece: step output goes to its step, markers move the step on."""
        self.buf += data
        while self._next():
            pass

    def _next(self) -> bool:
        buf, mark = self.buf, self.mark
        if self.current is None:
            at = buf.find(mark)
            if at < 0:
                del buf[: max(0, len(buf) - len(mark))]  # between steps: nothing to keep
                return False
            end = buf.find(b"\n", at)
            if end < 0:
                del buf[:at]
                return False
            fields = buf[at:end].split()
            del buf[: end + 1]
            if len(fields) == 3 and fields[1] == b"B":
                self.current = int(fields[2])
                self.outputs[self.current] = CappedOutput()
                self.program.began(self.current)
            return True
        out = self.outputs[self.current]
        at = buf.find(b"\n" + mark)
        if at < 0:
            keep = len(mark) + 1  # a marker may be arriving in pieces
            if len(buf) > keep:
                out.add(bytes(buf[:-keep]))
                del buf[:-keep]
            return False
        end = buf.find(b"\n", at + 1)
        if end < 0:
            out.add(bytes(buf[:at]))
            del buf[:at]
            return False
        out.add(bytes(buf[:at]))
        fields = buf[at + 1 : end].split()
        del buf[: end + 1]
        code = int(fields[3]) if len(fields) > 3 else None
        self.program.ended(self.current, self.stream, code)
        self.current = None
        return True

    def step_text(self, index: int) -> str:
        """What step `index` printed on this stream so far."""
        out = self.outputs.get(index)
        return out.text() if out is not None else ""

    def text(self) -> str:
        """The whole stream as the program's own result (the audit log) shows it: each
        step's output under a line naming its task."""
        steps = self.program.steps
        return "".join(
            f"[{steps[index].task_id}]\n{out.text()}\n" for index, out in self.outputs.items()
        )


class Program:
    """Steps running on one host as one command; the walker claims them in order."""

    def __init__(self, steps: list[ProgramStep], become: Become | None) -> None:
        self.steps = steps
        self.become = become
        self.marker = "mr_" + secrets.token_hex(10)
        self._lock = threading.Condition()
        self._claimed = 0
        self._began: set[int] = set()
        self._codes: dict[int, int] = {}  # step -> exit code, once its stdout marker came
        self._stderr_done: set[int] = set()
        self._ended: set[int] = set()
        self._finished = False
        self._error: BaseException | None = None
        self._connection: Connection | None = None
        self._host = ""
        self._out = _Split(self, 0)
        self._err = _Split(self, 1)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ running

    def start(self, connection: Connection, timeout: float | None) -> None:
        """Send the program on `connection` from a thread of its own."""
        script, stdin = compose(self.marker, self.steps)
        self._connection = connection
        self._host = connection.host.id
        self._thread = threading.Thread(
            target=self._run,
            args=(connection, script, stdin, timeout),
            name=f"machineroom-program-{connection.host.id}",
            daemon=True,
        )
        self._thread.start()

    def not_started(self, error: BaseException) -> None:
        """The host could not be reached: the first step gets `error`, as its own command
        would have."""
        with self._lock:
            self._began.add(0)
            self._error = error
            self._finished = True

    def _stopping(self) -> bool:
        """Whether the run is stopping (its connection kills every command of ours)."""
        return bool(getattr(self._connection, "stopping", False))

    def _run(
        self, connection: Connection, script: str, stdin: bytes, timeout: float | None
    ) -> None:
        try:
            with acting("\n".join(step.action for step in self.steps if step.action)):
                connection.run(
                    script,
                    stdin=stdin or None,
                    timeout=timeout,
                    become=self.become,
                    sinks=(self._out, self._err),
                )
        except BaseException as exc:  # given to the walker with the step it cut
            self._error = exc
        finally:
            with self._lock:
                self._finished = True
                self._lock.notify_all()

    def began(self, index: int) -> None:
        """A stream saw step `index` begin."""
        with self._lock:
            self._began.add(index)
            self._lock.notify_all()

    def ended(self, index: int, stream: int, code: int | None) -> None:
        """A stream saw step `index` end (stdout's marker carries the exit code)."""
        with self._lock:
            if stream == 0:
                self._codes[index] = code if code is not None else -1
            else:
                self._stderr_done.add(index)
            if index in self._codes and index in self._stderr_done:
                self._ended.add(index)
                self._lock.notify_all()

    # ------------------------------------------------------------------ the walker's side

    def claim(self, task_id: str) -> ProgramStep | None:
        """The next step when it is `task_id`'s. When the walker went another way, the rest
        of the program is stopped on the host; a later step of `task_id` that had begun by
        then is still the task's (it is not run a second time), else None: it runs alone."""
        with self._lock:
            if self._claimed < len(self.steps) and self.steps[self._claimed].task_id == task_id:
                self._claimed += 1
                return self.steps[self._claimed - 1]
            later = range(self._claimed, len(self.steps))
            wanted = next((i for i in later if self.steps[i].task_id == task_id), None)
        self.finish()
        with self._lock:
            if wanted is not None and wanted in self._began:
                return self.steps[wanted]
        return None

    def exhausted(self) -> bool:
        """True when every step was claimed (or the program was given up)."""
        with self._lock:
            return self._claimed >= len(self.steps)

    def output(self, step: ProgramStep) -> CommandOutput | None:
        """The claimed step's output, once the host ran it. None when the program ended
        before the step began (it stopped at an earlier failure): the caller runs it alone.
        A step the program was cut in (connection lost, timeout, the run stopped) raises
        what cut it, as its own command would have."""
        index = next(i for i, mine in enumerate(self.steps) if mine is step)
        with self._lock:
            while index not in self._ended and not self._finished:
                self._lock.wait()
            ended = index in self._ended
            if ended and (self._codes[index] == 0 or not self._stopping()):
                return CommandOutput(
                    self._codes[index],
                    self._out.step_text(index),
                    self._err.step_text(index),
                    count_not_kept(self._out.step_text(index)),
                )
            if not ended and index not in self._began and self._error is None:
                return None  # the program stopped before it, at a failure: run it alone
        if ended:  # failed while the run stops: killed by the stop, most likely
            self.finish()
            raise self._error or Interrupted(
                f"{self._host}: the run was stopped: command killed on the host"
            )
        error = self._error
        if error is not None:
            raise error
        stderr = self._err.step_text(index) + "\n(the per-host program ended inside this task)"
        return CommandOutput(-1, self._out.step_text(index), stderr)

    def finish(self) -> None:
        """No more steps are claimed: what is left of the program is killed on the host (the
        walker gave it up: those steps must not run unreported), then it is waited for."""
        with self._lock:
            given_up = self._claimed < len(self.steps) and not self._finished
            self._claimed = len(self.steps)
        if given_up and self._connection is not None:
            with contextlib.suppress(MachineroomError):
                self._connection.run(
                    kill_line(self.marker), become=self.become, timeout=_KILL_TIMEOUT
                )
        if self._thread is not None:
            self._thread.join()


def claim_step(state: HostState, task_id: str) -> ProgramStep | None:
    """The step of the host's program for the task the walker is running, if the program
    holds it; a program the walker left (another task came) is let finish and dropped."""
    program = state.program
    if program is None:
        return None
    step = program.claim(task_id)
    if step is None:
        state.program = None
    return step


def end_program(state: HostState) -> None:
    """Let the host's program, if any, finish on the host and drop it."""
    program, state.program = state.program, None
    if program is not None:
        program.finish()
