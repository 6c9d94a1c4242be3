"""What `run PATTERN -- COMMAND` and `facts PATTERN` show: event subscribers printing each host
as its one task finishes, and the end of the run (summary line, `--json`).

`run`: a block per host, `── h1 | ok | 0.12s` (`failed (exit 1)`, `unreachable`), then its
stdout, its stderr in yellow, and why the command did not run when it did not. `facts`: a line
per host gathered, `h1   Ubuntu 24.04 x86_64, 4 CPUs, 7961 MB`; failures on stderr. Events come
masked (the event bus masks every secret); a host's text is shown, never obeyed (`visible`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from machineroom.events import Event, TaskFinished
from machineroom.report.recap import paint, use_color
from machineroom.report.terminal import visible

COLOURS = {"ok": "green", "failed": "red", "unreachable": "magenta"}


def command_status(event: TaskFinished) -> str:
    """A host's word for a command: ok, failed or unreachable (`raw` is always changed: a
    command that exited 0 is ok)."""
    if event.status in ("failed", "unreachable"):
        return event.status
    return "ok"


def command_outcome(event: TaskFinished) -> dict[str, Any]:
    """What `run --json` says of a host: status, exit code (None: the command did not end),
    stdout, stderr, why it did not run or end (error), duration in seconds."""
    rc = event.result.get("rc")
    exit_code = rc if isinstance(rc, int) else None
    status = command_status(event)
    return {
        "status": status,
        "exit_code": exit_code,
        "stdout": event.stdout,
        "stderr": event.stderr,
        # a command that ended says enough by its exit code; one that did not, why
        "error": event.msg if status != "ok" and exit_code is None else "",
        "duration": round(event.duration, 3),
    }


class CommandReporter:
    """Prints each host's block as its command finishes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.color = use_color(self.out)

    def __call__(self, event: Event) -> None:
        """A host's block when its command finished (or could not start)."""
        if isinstance(event, TaskFinished) and event.item is None:
            self._print(event.host, command_outcome(event))

    def _print(self, host: str, outcome: Mapping[str, Any]) -> None:
        status, code = outcome["status"], outcome["exit_code"]
        colour = COLOURS[status]
        exit_note = f" (exit {code})" if code not in (None, 0) else ""
        header = f"── {host} | {status}{exit_note} | {outcome['duration']:.2f}s"
        lines = [paint(header, colour, "bold", color=self.color)]
        if outcome["stdout"]:
            lines.append(visible(outcome["stdout"].rstrip("\n")))
        if outcome["stderr"]:
            lines.append(paint(visible(outcome["stderr"].rstrip("\n")), "yellow", color=self.color))
        if outcome["error"]:
            lines.append(paint(visible(outcome["error"]), colour, color=self.color))
        print("\n".join(lines), file=self.out, flush=True)

    def close(self) -> None:
        """Nothing held back: each block is printed whole as it comes."""


def command_summary(hosts: Mapping[str, Mapping[str, Any]], run_id: int | None) -> str:
    """`N host(s): a ok, b failed, c unreachable  (run ID)`."""
    counts = {s: sum(o["status"] == s for o in hosts.values()) for s in COLOURS}
    return (
        f"{len(hosts)} host(s): {counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['unreachable']} unreachable  (run {run_id})"
    )


def command_json(run_id: int | None, status: str, hosts: Mapping[str, Any]) -> str:
    """`run --json`: the run's id and status, each host's `command_outcome`."""
    return json.dumps({"run": run_id, "status": status, "hosts": dict(hosts)}, indent=2)


class FactsReporter:
    """Prints a line per host gathered (on `out`, unless `quiet`) and each failure (on `err`)."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, *, quiet: bool = False
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.quiet = quiet
        self.color = use_color(self.err)

    def __call__(self, event: Event) -> None:
        """A host's line when its facts came (or did not)."""
        if not isinstance(event, TaskFinished) or event.item is not None:
            return
        msg = visible(event.msg)
        if event.status == "unreachable":
            text = paint(f"{event.host}: unreachable: {msg}", "magenta", color=self.color)
            print(text, file=self.err, flush=True)
        elif event.status == "failed":
            print(paint(f"{event.host}: {msg}", "red", color=self.color), file=self.err, flush=True)
        elif not self.quiet:
            print(f"{event.host:<20} {msg}", file=self.out, flush=True)

    def close(self) -> None:
        """Nothing held back."""
