"""What a person sees while a run goes: Ansible-like lines, or live progress on a terminal.

Two event subscribers share one way of wording results:
- `PlainReporter` writes lines only (`PLAY [...]`, `TASK [...]`, `changed: [web1]`,
  `failed: [web1] => msg`): for logs, pipes and CI.
- `LiveReporter` keeps one status line at the bottom of the terminal, redrawn in place (hosts
  done, tasks done, what a few hosts are doing, elapsed time), and prints changes and failures
  above it as they happen.
`console_reporter()` picks one for a stream. Both print the recap when the run finishes.

Verbosity: 0 prints changes, failures and unreachable hosts; 1 (`-v`) adds ok and skipped
results, messages and command output; 2 (`-vv`) adds stderr of successful tasks.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from machineroom.events import (
    Event,
    HostFinished,
    PlayStarted,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from machineroom.report.recap import STATUS_COLOURS, paint, render_recap, use_color
from machineroom.report.terminal import visible_event

# The word a result line starts with; "skipping" as Ansible prints it.
WORDS = {
    "ok": "ok",
    "changed": "changed",
    "skipped": "skipping",
    "failed": "failed",
    "unreachable": "unreachable",
}
REDRAW_INTERVAL = 0.25  # seconds between status-line redraws when no event comes
HOSTS_SHOWN = 3  # hosts whose current task the status line names


class _ConsoleReporter:
    """What both console reporters share: the wording of results, diffs and the recap."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        verbosity: int = 0,
        diff: bool = False,
        color: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.verbosity = verbosity
        self.diff = diff
        self.color = use_color(self.stream) if color is None else color
        self.check = False
        self._looped: set[tuple[str, str]] = set()  # (host, task_id) whose items were shown
        self._unreachable_shown: set[str] = set()

    def _paint(self, text: str, *styles: str) -> str:
        return paint(text, *styles, color=self.color)

    def _shows(self, event: TaskFinished) -> bool:
        """Whether a result gets a line at this verbosity."""
        if event.item is None and (event.host, event.task_id) in self._looped:
            # Its items had their lines; the summary adds only a failure's message.
            return event.status in ("failed", "unreachable") and bool(event.msg)
        if event.status in ("changed", "failed", "unreachable"):
            return True
        return self.verbosity >= 1 or _is_debug(event)

    def result_lines(self, event: TaskFinished, *, task_name: bool) -> list[str]:
        """The lines of one result: `changed: [web1] => (item=x)`, output and diff under it."""
        if event.item is not None:
            self._looped.add((event.host, event.task_id))
        if event.status == "unreachable":
            self._unreachable_shown.add(event.host)
        word = WORDS[event.status]
        head = f"{word}: [{event.host}]"
        if task_name:
            head += " handler:" if event.handler else ""
            head += f" {task_title(event.stage, event.task)}"
        if event.item is not None:
            head += f" => (item={event.item})"
        failed = event.status in ("failed", "unreachable")
        if _is_debug(event) and event.status == "ok":
            head += f" => {event.msg}"  # what debug is for: shown as it is, at any verbosity
        elif event.msg and (failed or self.verbosity >= 1):
            head += f" => {first_line(event.msg) if not failed else event.msg}"
        code = event.result.get("rc") if event.status == "failed" else None
        if isinstance(code, int) and not isinstance(code, bool) and f"rc={code}" not in head:
            head += f" (rc={code})"
        lines = [self._paint(head, STATUS_COLOURS[event.status])]
        if event.ignored:
            lines.append(self._paint("...ignoring", "cyan"))
        if self.verbosity == 0 and event.status == "failed":
            # what went wrong, without -v: the end of stderr (of stdout when stderr is empty)
            lines.extend(self._paint(line, "yellow") for line in tail_lines(event))
        if self.verbosity >= 1 and event.stdout:
            lines.extend(indent(event.stdout))
        if event.stderr and (self.verbosity >= 2 or (self.verbosity >= 1 and failed)):
            lines.extend(self._paint(line, "yellow") for line in indent(event.stderr))
        if self.diff and event.diff and event.status in ("changed", "failed", "ok"):
            lines.extend(self.diff_lines(event.diff))
        return lines

    def diff_lines(self, diff: str) -> list[str]:
        """A unified diff, coloured like git's."""
        lines = []
        for line in diff.rstrip("\n").splitlines():
            if line.startswith(("+++", "---")):
                lines.append(self._paint(line, "bold"))
            elif line.startswith("+"):
                lines.append(self._paint(line, "green"))
            elif line.startswith("-"):
                lines.append(self._paint(line, "red"))
            elif line.startswith("@@"):
                lines.append(self._paint(line, "cyan"))
            else:
                lines.append(line)
        return lines

    def host_lines(self, event: HostFinished) -> list[str]:
        """A host that went unreachable with no task result saying so gets its own line."""
        if event.status != "unreachable" or event.host in self._unreachable_shown:
            return []
        self._unreachable_shown.add(event.host)
        reason = f" => {event.reason}" if event.reason else ""
        return [self._paint(f"unreachable: [{event.host}]{reason}", STATUS_COLOURS["unreachable"])]

    def recap(self, event: RunFinished) -> str:
        """The recap block for the finished run."""
        return render_recap(
            event.stats,
            run_id=event.run_id,
            status=event.status,
            duration=event.duration,
            check=event.check or self.check,
            color=self.color,
        )

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # A closed pipe (`| head`) or stream must not stop the run or its recording.
            pass


class PlainReporter(_ConsoleReporter):
    """Ansible-like lines, no cursor movement: for pipes, logs and CI.

    Subscribe the instance (`bus.subscribe(reporter)`). A linear play (or a play of one host)
    reads as Ansible prints it: a `TASK [...]` banner (`RUNNING HANDLER [...]` for a handler),
    then its hosts' results. Under the free strategy several hosts run different tasks at once;
    a banner whenever the next line belongs to another task would repeat each banner and split
    a loop's items, so there every result line names its task instead
    (`changed: [web1] Install nginx`) and no task banner is printed.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        verbosity: int = 0,
        diff: bool = False,
        color: bool | None = None,
    ) -> None:
        super().__init__(stream, verbosity=verbosity, diff=diff, color=color)
        self._header: tuple[bool, str, str] | None = None
        self._task_lines = False  # this play's results name their task (free strategy)

    def __call__(self, event: Event) -> None:
        """Print what `event` calls for."""
        event = visible_event(event)  # a host's escape sequences are shown, not obeyed
        if isinstance(event, RunStarted):
            self.check = event.check
        elif isinstance(event, PlayStarted):
            self._header = None
            self._task_lines = event.strategy == "free" and len(event.hosts) > 1
            mode = " (check mode)" if self.check else ""
            self._write("\n" + self._paint(banner(f"PLAY [{event.name}]{mode}"), "bold") + "\n")
        elif isinstance(event, TaskFinished):
            if not self._shows(event):
                return
            text = ""
            if not self._task_lines and self._header != (event.handler, event.stage, event.task_id):
                self._header = (event.handler, event.stage, event.task_id)
                title = task_title(event.stage, event.task)
                kind = "RUNNING HANDLER" if event.handler else "TASK"
                text += "\n" + self._paint(banner(f"{kind} [{title}]"), "bold") + "\n"
            lines = self.result_lines(event, task_name=self._task_lines)
            self._write(text + "\n".join(lines) + "\n")
        elif isinstance(event, HostFinished):
            lines = self.host_lines(event)
            if lines:
                self._write("\n".join(lines) + "\n")
        elif isinstance(event, RunFinished):
            self._write("\n" + self.recap(event))

    def close(self) -> None:
        """Nothing to undo for plain lines; here so every reporter can be closed alike."""


class LiveReporter(_ConsoleReporter):
    """A status line redrawn in place on a terminal, with results printed above it.

    Subscribe the instance (`bus.subscribe(reporter)`) and call `close()` in a `finally`: it
    stops the redraw thread and clears the status line. `clock` is for tests.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        verbosity: int = 0,
        diff: bool = False,
        color: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        redraw_interval: float = REDRAW_INTERVAL,
    ) -> None:
        super().__init__(stream, verbosity=verbosity, diff=diff, color=color)
        self._clock = clock
        self._interval = redraw_interval
        self._lock = threading.Lock()  # the redraw thread and event delivery share the line
        self._started = clock()
        self._hosts: list[str] = []
        self._done: set[str] = set()
        self._current: dict[str, str] = {}  # host -> task title
        self._tasks_done = 0
        self._failed = 0
        self._changed = 0
        self._status_shown = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        """Update the counts, print what `event` calls for, redraw the status line."""
        event = visible_event(event)  # a host's escape sequences are shown, not obeyed
        with self._lock:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        lines: list[str] = []
        if isinstance(event, RunStarted):
            self.check = event.check
            self._started = self._clock()
            self._add_hosts(event.hosts)
            self._start_thread()
        elif isinstance(event, PlayStarted):
            self._add_hosts(event.hosts)
            mode = " (check mode)" if self.check else ""
            lines.append(self._paint(f"PLAY [{event.name}]{mode}", "bold"))
            self._start_thread()
        elif isinstance(event, TaskStarted):
            title = task_title(event.stage, event.task)
            self._current[event.host] = f"handler: {title}" if event.handler else title
        elif isinstance(event, TaskFinished):
            if event.item is None:
                self._current.pop(event.host, None)
                self._tasks_done += 1
                self._failed += event.status == "failed" and not event.ignored
                self._changed += event.status == "changed"
            if self._shows(event):
                lines.extend(self.result_lines(event, task_name=True))
        elif isinstance(event, HostFinished):
            self._done.add(event.host)
            self._current.pop(event.host, None)
            lines.extend(self.host_lines(event))
        elif isinstance(event, RunFinished):
            self._stop.set()
            self._clear_status()
            self._write("\n" + self.recap(event))
            return
        if lines:
            self._clear_status()
            self._write("\n".join(lines) + "\n")
        self._draw_status()

    def _add_hosts(self, hosts: tuple[str, ...]) -> None:
        for host in hosts:
            if host not in self._hosts:
                self._hosts.append(host)

    def _start_thread(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._tick, name="live-reporter", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        # Redraws so the elapsed time moves while every host sits in a long task.
        while not self._stop.wait(self._interval):
            with self._lock:
                if not self._stop.is_set():
                    self._draw_status()

    def status_text(self) -> str:
        """The status line's text (no colour): `2/5 hosts  14 tasks  1 failed  web1: ...`."""
        elapsed = int(self._clock() - self._started)
        parts = [f"{len(self._done)}/{len(self._hosts)} hosts", f"{self._tasks_done} tasks"]
        if self._changed:
            parts.append(f"{self._changed} changed")
        if self._failed:
            parts.append(f"{self._failed} failed")
        parts.append(f"{elapsed // 60}:{elapsed % 60:02d}")
        running = [host for host in self._hosts if host in self._current]
        shown = [f"{host}: {self._current[host]}" for host in running[:HOSTS_SHOWN]]
        if len(running) > HOSTS_SHOWN:
            shown.append(f"+{len(running) - HOSTS_SHOWN} more")
        return "  ".join(parts) + ("  | " + ", ".join(shown) if shown else "")

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, AttributeError, ValueError):
            return 80

    def _draw_status(self) -> None:
        # Cut to the terminal's width: a wrapped line could not be redrawn with \r.
        text = self.status_text()[: max(self._width() - 1, 10)]
        self._write("\r\x1b[K" + self._paint(text, "dim"))
        self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            self._write("\r\x1b[K")
            self._status_shown = False

    def close(self) -> None:
        """Stop redrawing and clear the status line (the recap, if printed, stays)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        with self._lock:
            self._clear_status()


def console_reporter(
    stream: TextIO | None = None,
    *,
    verbosity: int = 0,
    diff: bool = False,
    live: bool | None = None,
    color: bool | None = None,
) -> PlainReporter | LiveReporter:
    """The reporter for `stream` (default stdout): live on a terminal, plain lines elsewhere
    (a pipe, a file, `TERM=dumb`). `live` and `color` override the guess."""
    stream = stream if stream is not None else sys.stdout
    if live is None:
        live = _isatty(stream) and os.environ.get("TERM") != "dumb"
    if live:
        return LiveReporter(stream, verbosity=verbosity, diff=diff, color=color)
    return PlainReporter(stream, verbosity=verbosity, diff=diff, color=color)


def task_title(stage: str, task: str) -> str:
    """The task as Ansible names it: the executor already writes `docker : Install docker`
    for a role's task, so the stage adds nothing; `stage` is kept for callers' symmetry."""
    del stage
    return task


def _is_debug(event: TaskFinished) -> bool:
    return event.result.get("module") == "debug" and event.item is None


def banner(text: str, width: int = 80) -> str:
    """`TASK [name] ****...` padded with stars to `width`, as Ansible prints headers."""
    return f"{text} ".ljust(width, "*")


FAILURE_TAIL = 5  # lines of a failed task's output shown without -v


def tail_lines(event: TaskFinished) -> list[str]:
    """The last FAILURE_TAIL lines of a failed task's stderr (its stdout when stderr is
    empty), indented, after a line saying how many came before."""
    text = (event.stderr or event.stdout).rstrip("\n")
    if not text.strip() or text.strip() == event.msg.strip():
        return []
    lines = text.splitlines()
    shown = lines[-FAILURE_TAIL:]
    above = len(lines) - len(shown)
    plural = "s" if above > 1 else ""
    note = [f"    ... ({above} line{plural} above; -v shows all)"] if above else []
    return note + indent("\n".join(shown))


def first_line(text: str) -> str:
    """The first line of a message, for one-line displays."""
    return text.strip().splitlines()[0] if text.strip() else ""


def indent(text: str, prefix: str = "    ") -> list[str]:
    """Output lines indented under their result line."""
    return [prefix + line for line in text.rstrip("\n").splitlines()]


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
