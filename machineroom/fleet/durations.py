"""Durations given on the command line (`--since 24h`, `--retention 35d`): the grammar of
schedules.yml (`30s`, `10m`, `1h30m`, `7d`, `2w`, or a number of seconds), as usage errors."""

from __future__ import annotations

from machineroom.errors import UsageError
from machineroom.fleet.cron import CronError
from machineroom.fleet.cron import parse_duration as parse_schedule_duration


def parse_duration(text: str, what: str = "duration", allow_zero: bool = False) -> float:
    """Seconds in `text`; a UsageError naming the option `what` otherwise. With
    `allow_zero`, `0` is accepted (e.g. a retention of 0: keep everything)."""
    if allow_zero and text.strip() == "0":
        return 0.0
    try:
        return parse_schedule_duration(text)
    except CronError:
        raise UsageError(
            f"{what}: {text!r} is not a duration; expected a number and a unit, "
            "e.g. 30s, 10m, 24h, 7d, 2w"
        ) from None
