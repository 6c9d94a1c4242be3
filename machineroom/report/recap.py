"""The recap table printed at the end of a run, and the terminal styling every reporter shares.

Colour is plain ANSI SGR codes: only when the stream is a terminal, `NO_COLOR` is empty or
unset (https://no-color.org) and `TERM` is not `dumb`. No library is needed for that much.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import TextIO

from machineroom.events import HostStats

CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "bright_black": "90",
}

# One colour per status, in the console and the recap alike.
STATUS_COLOURS = {
    "ok": "green",
    "changed": "yellow",
    "skipped": "cyan",
    "failed": "red",
    "unreachable": "magenta",
    "interrupted": "magenta",
    "error": "red",
    "rescued": "cyan",
    "ignored": "blue",
}

RECAP_FIELDS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")


def use_color(stream: TextIO) -> bool:
    """Whether `stream` should get ANSI colour."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def paint(text: str, *styles: str, color: bool = True) -> str:
    """`text` wrapped in the ANSI codes of `styles` (names of CODES), or as is."""
    if not color or not styles or not text:
        return text
    codes = ";".join(CODES[s] for s in styles)
    return f"\x1b[{codes}m{text}\x1b[0m"


def format_duration(seconds: float) -> str:
    """`0.42s`, `12.3s`, `3m05s`, `1h02m03s`: short, and exact enough for a recap."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s"


def host_colour(stats: HostStats) -> str:
    """The colour of a host's name in the recap, as Ansible picks it: its worst outcome."""
    if stats.unreachable:
        return "magenta"
    if stats.failed:
        return "red"
    if stats.changed:
        return "yellow"
    return "green"


def render_recap(
    stats: Mapping[str, HostStats],
    *,
    run_id: int | None,
    status: str,
    duration: float,
    check: bool = False,
    color: bool = False,
) -> str:
    """The PLAY RECAP block: one line per host with its counts, then the run's outcome line.

    ```
    PLAY RECAP *********************************************************************
    web1   : ok=3    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
    run 12: ok in 4.21s
    ```
    """
    lines = [paint("PLAY RECAP ".ljust(80, "*"), "bold", color=color)]
    width = max((len(host) for host in stats), default=0)
    for host in sorted(stats):
        counts = asdict(stats[host])
        name = paint(host.ljust(width), host_colour(stats[host]), color=color)
        cells = []
        for field in RECAP_FIELDS:
            # Ansible's layout: the count left-aligned in 4 columns, so the names line up.
            cell = f"{field}={counts[field]:<4}"
            if counts[field]:
                cell = paint(cell, STATUS_COLOURS[field], color=color)
            cells.append(cell)
        lines.append(f"{name} : {' '.join(cells)}".rstrip())
    lines.append(outcome_line(run_id, status, duration, check=check, color=color))
    return "\n".join(lines) + "\n"


def outcome_line(
    run_id: int | None, status: str, duration: float, *, check: bool = False, color: bool = False
) -> str:
    """`run 12: failed in 3m05s (check mode)`: the run's id, outcome and duration."""
    who = f"run {run_id}" if run_id is not None else "run"
    mode = " (check mode: nothing was changed)" if check else ""
    word = paint(status, STATUS_COLOURS.get(status, "bold"), "bold", color=color)
    return f"{who}: {word} in {format_duration(duration)}{mode}"
