"""What a run shows: live console progress, Ansible-like lines, the recap, `--json`.

Every reporter is an event subscriber (`bus.subscribe(reporter)`) with a `close()` to call in a
`finally`. They write to the stream they are given and nothing else; picking exit codes is the
CLI's job. See docs/output.md.
"""

from machineroom.report.console import (
    LiveReporter,
    PlainReporter,
    console_reporter,
)
from machineroom.report.json_report import JsonReporter
from machineroom.report.recap import format_duration, paint, render_recap, use_color

__all__ = [
    "JsonReporter",
    "LiveReporter",
    "PlainReporter",
    "console_reporter",
    "format_duration",
    "paint",
    "render_recap",
    "use_color",
]
