"""Durations as users write them: `30s`, `10m`, `24h`, `7d`, `2w` (or a plain number of
seconds), for --since, --retention, alert windows and schedule intervals."""

from __future__ import annotations

import re

from machineroom.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in `text`; a UsageError naming `what` and the accepted forms otherwise."""
    match = _DURATION.fullmatch(str(text))
    if not match:
        raise UsageError(
            f"{what}: {text!r} is not a duration; expected a number and a unit, "
            "e.g. 30s, 10m, 24h, 7d, 2w"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
