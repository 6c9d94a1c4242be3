"""What a run shows: live console progress, Ansible-like lines, the recap, `--json`.

Every reporter is an event subscriber (`bus.subscribe(reporter)`) with a `close()` to call in a
`finally`. They write to the stream they are given and nothing else; picking exit codes is the
CLI's job. `make_reporter()` builds what `apply` needs from its options. See docs/output.md.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from machineroom.events import Event
from machineroom.report.console import (
    LiveReporter,
    PlainReporter,
    console_reporter,
)
from machineroom.report.json_report import JsonReporter
from machineroom.report.recap import format_duration, paint, render_recap, use_color


class Reporter(Protocol):
    """An event subscriber that may hold a thread or a half-drawn line until closed."""

    def __call__(self, event: Event) -> None: ...
    def close(self) -> None: ...


class Reporters:
    """Several reporters as one subscriber, in order (e.g. JSON on stdout, progress on stderr)."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def __call__(self, event: Event) -> None:
        """Hand `event` to each reporter."""
        for reporter in self.reporters:
            reporter(event)

    def close(self) -> None:
        """Close each reporter."""
        for reporter in self.reporters:
            reporter.close()


def make_reporter(
    *,
    as_json: bool = False,
    verbosity: int = 0,
    diff: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> Reporters:
    """The reporter for a run's options.

    Without `as_json`: live progress when stdout is a terminal, plain lines otherwise.
    With `as_json`: the JSON document alone on stdout; live progress goes to stderr, and only
    when stderr is a terminal (a person is watching; a pipe or CI log gets nothing extra).
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if not as_json:
        return Reporters(console_reporter(out, verbosity=verbosity, diff=diff))
    reporters: list[Reporter] = [JsonReporter(out)]
    if _isatty(err):
        reporters.append(LiveReporter(err, verbosity=verbosity, diff=diff))
    return Reporters(*reporters)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = [
    "JsonReporter",
    "LiveReporter",
    "PlainReporter",
    "Reporter",
    "Reporters",
    "console_reporter",
    "format_duration",
    "make_reporter",
    "paint",
    "render_recap",
    "use_color",
]
