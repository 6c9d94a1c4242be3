"""When a schedule is due: cron expressions and fixed intervals, and their next due time.

`parse_cron("*/5 * * * *", "Europe/Berlin")` and `parse_every("5m")` both return a `Timing`
whose `next_after(moment)` is the first due time strictly after `moment` (aware datetimes,
answered in UTC).

Cron follows Vixie cron (`man 5 crontab`): five fields (minute, hour, day of month, month,
day of week), `*`, ranges `a-b`, steps `*/n` and `a-b/n` (and `a/n`, meaning `a-max/n`, as
cronie reads it), lists `a,b-c`, month and weekday names (`jan`, `mon`; 0 and 7 are Sunday),
and the macros `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
`@hourly`. `@reboot` is refused: the scheduler has no notion of a boot. When both day fields
are restricted a day matches if EITHER does (`0 0 1 * mon` = the 1st and every Monday); a
field that starts with `*` (`*`, `*/2`) counts as unrestricted, as in Vixie cron.

Times are wall-clock times in the schedule's timezone (UTC unless given). Across DST changes:
a time the spring-forward jump skips runs once, as much later as the jump (02:30 -> 03:30);
in the repeated autumn hour a fixed-hour time (`30 1 * * *`) runs once, at its first
occurrence, while an every-hour expression (hour field starting with `*`) runs in both, so
`*/15 * * * *` keeps firing every 15 real minutes.

`every: 5m` intervals are anchored to the Unix epoch: due at every multiple of the interval
since 1970-01-01T00:00Z, so `every: 5m` fires at :00, :05, ... and a restart keeps the rhythm.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from typing import Protocol

from machineroom.errors import InputError, did_you_mean

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names for lowest..)
FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, WEEKDAYS),
)
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: in leap years
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# How far the search for a cron match goes before declaring the expression never due.
SEARCH_YEARS = 30


class CronError(InputError):
    """A cron expression, interval or timezone that cannot be read; `field` names the part."""

    def __init__(self, problem: str, expected: str | None = None, field: str = "") -> None:
        self.field = field
        super().__init__(f"{field} field: {problem}" if field else problem, None, expected)


class Timing(Protocol):
    """When something is due."""

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment` (aware), in UTC."""
        ...

    def describe(self) -> str:
        """The timing as the user wrote it, e.g. `cron '*/5 * * * *' (UTC)`."""
        ...


@dataclass(frozen=True)
class Every:
    """Due every `seconds`, at multiples of it since the Unix epoch."""

    seconds: int
    text: str

    def next_after(self, moment: datetime) -> datetime:
        """The next multiple of the interval after `moment`."""
        stamp = moment.timestamp()
        # floor division on the integer part keeps exact multiples exact
        steps = int(stamp // self.seconds) + 1
        return datetime.fromtimestamp(steps * self.seconds, UTC)

    def count_between(self, first: datetime, last: datetime) -> int:
        """How many due times lie in [first, last] (first being one)."""
        if last < first:
            return 0
        return int((last - first).total_seconds() // self.seconds) + 1

    def describe(self) -> str:
        """`every 5m`."""
        return f"every {self.text}"


@dataclass(frozen=True)
class Cron:
    """A parsed five-field cron expression in a timezone."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    days_star: bool
    weekdays_star: bool
    hours_star: bool
    zone: tzinfo
    zone_name: str

    def describe(self) -> str:
        """`cron '0 3 * * *' (Europe/Berlin)`."""
        return f"cron {self.text!r} ({self.zone_name})"

    def day_matches(self, day: datetime) -> bool:
        """Whether the date matches the day-of-month and day-of-week fields (Vixie's OR)."""
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def walls(self, start: datetime) -> _WallIterator:
        """Matching naive wall-clock minutes from `start` (included) on, ascending."""
        return _WallIterator(self, start)

    def next_after(self, moment: datetime) -> datetime:
        """The first due instant strictly after `moment`, in UTC."""
        local = moment.astimezone(self.zone)
        wall = local.replace(tzinfo=None, second=0, microsecond=0)
        if _steady(self.zone, moment):
            # No offset change near: wall time and instants map one to one.
            for candidate in self.walls(wall + timedelta(minutes=1)):
                return _to_utc(candidate, self.zone, fold=0)
            raise CronError(f"{self.text!r} is never due", field="")
        # Near a DST change: look from two hours back (a repeated hour may still hold due
        # instants after `moment`) and keep the earliest instant found within a few hours.
        best: datetime | None = None
        best_wall: datetime | None = None
        for candidate in self.walls(wall - timedelta(hours=2)):
            if best_wall is not None and candidate > best_wall + timedelta(hours=3):
                break
            for instant in self._instants(candidate):
                if instant > moment and (best is None or instant < best):
                    best, best_wall = instant, candidate
        if best is None:
            raise CronError(f"{self.text!r} is never due")
        return best

    def _instants(self, wall: datetime) -> list[datetime]:
        first = _to_utc(wall, self.zone, fold=0)
        second = _to_utc(wall, self.zone, fold=1)
        if first == second:
            return [first]
        exists = first.astimezone(self.zone).replace(tzinfo=None) == wall
        if not exists:
            # skipped by a spring-forward jump: fold=0 reads it with the old offset, i.e.
            # as late after the jump as the wall time is into the gap
            return [first]
        # repeated by a fall-back: a second run only for every-hour expressions
        return [first, second] if self.hours_star else [first]


class _WallIterator:
    """Naive wall times matching a Cron, skipping whole months, days and hours that cannot."""

    def __init__(self, cron: Cron, start: datetime) -> None:
        self.cron = cron
        self.t = start.replace(second=0, microsecond=0)
        self.limit = start.year + SEARCH_YEARS

    def __iter__(self) -> _WallIterator:
        return self

    def __next__(self) -> datetime:
        cron, t = self.cron, self.t
        while t.year <= self.limit:
            if t.month not in cron.months:
                t = _next_month(t)
            elif not cron.day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in cron.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in cron.minutes:
                later = [m for m in cron.minutes if m > t.minute]
                t = (
                    t.replace(minute=min(later))
                    if later
                    else t.replace(minute=0) + timedelta(hours=1)
                )
            else:
                self.t = t + timedelta(minutes=1)
                return t
        self.t = t
        raise StopIteration


def _next_month(t: datetime) -> datetime:
    if t.month == 12:
        return t.replace(year=t.year + 1, month=1, day=1, hour=0, minute=0)
    return t.replace(month=t.month + 1, day=1, hour=0, minute=0)


def _to_utc(wall: datetime, zone: tzinfo, fold: int) -> datetime:
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _steady(zone: tzinfo, moment: datetime) -> bool:
    """Whether the zone keeps one UTC offset from 4 hours before `moment` to a day after.

    The fast path of next_after is only taken then; a due time more than a day away is
    found by walking whole days, and a change beyond that day cannot affect the first match
    after `moment` unless it falls before it, so the check also covers the answer's day.
    """
    if zone is UTC:
        return True
    offsets = {(moment + timedelta(hours=h)).astimezone(zone).utcoffset() for h in (-4, 0, 12, 24)}
    return len(offsets) == 1


def parse_cron(text: str, timezone: str | None = None) -> Cron:
    """Read a five-field cron expression or macro, in `timezone` (IANA name; UTC if None)."""
    zone, zone_name = parse_timezone(timezone)
    expression = text.strip()
    if expression.startswith("@"):
        if expression.lower() == "@reboot":
            raise CronError(
                "@reboot is not supported: the scheduler does not know about boots",
                "a cron expression or one of " + ", ".join(MACROS),
            )
        macro = MACROS.get(expression.lower())
        if macro is None:
            raise CronError(
                f"unknown macro {expression!r}" + did_you_mean(expression.lower(), MACROS),
                "one of " + ", ".join(MACROS),
            )
        expression = macro
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(
            f"{text!r} has {len(parts)} field(s)",
            "5 fields: minute hour day-of-month month day-of-week, or a macro like @daily",
        )
    values = [_parse_field(part, *spec) for part, spec in zip(parts, FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = values
    weekdays = frozenset(d % 7 for d in weekdays)
    days_star = parts[2].startswith("*")
    weekdays_star = parts[4].startswith("*")
    if weekdays_star:  # days ANDed with every weekday: the day itself must exist
        longest = max(MONTH_DAYS[m - 1] for m in months)
        if min(days) > longest:
            names = ", ".join(MONTHS[m - 1] for m in sorted(months))
            raise CronError(
                f"day {min(days)} never occurs in {names}",
                f"a day of month up to {longest}",
                field="day-of-month",
            )
    return Cron(
        text=text.strip(),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        days_star=days_star,
        weekdays_star=weekdays_star,
        hours_star=parts[1].startswith("*"),
        zone=zone,
        zone_name=zone_name,
    )


def _parse_field(
    text: str, name: str, low: int, high: int, names: list[str] | None
) -> frozenset[int]:
    expected = f"numbers {low}-{high}" + (f" or names ({names[0]}-{names[-1]})" if names else "")
    expected += ", '*', ranges a-b, steps */n or a-b/n, lists a,b"
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"empty list item in {text!r}", expected, name)
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"step {step_text!r} is not a positive number", expected, name)
            step = int(step_text)
        if base == "*":
            first, last = low, high
            if name == "day-of-week":
                last = 6  # `*/2` in day-of-week: Sunday, Tuesday, ...; 7 would repeat Sunday
        elif "-" in base:
            left, _, right = base.partition("-")
            first = _value(left, name, low, high, names, expected)
            last = _value(right, name, low, high, names, expected)
            if first > last:
                raise CronError(
                    f"range {base} goes backwards", f"a range low-high in {low}-{high}", name
                )
        else:
            first = _value(base, name, low, high, names, expected)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(
    text: str, name: str, low: int, high: int, names: list[str] | None, expected: str
) -> int:
    if text.isdigit():
        number = int(text)
        if not low <= number <= high:
            raise CronError(f"{number} is outside {low}-{high}", expected, name)
        return number
    if names is not None:
        lowered = text.lower()
        if lowered in names:
            return names.index(lowered) + low
        raise CronError(f"unknown name {text!r}" + did_you_mean(lowered, names), expected, name)
    raise CronError(f"{text!r} is not a number", expected, name)


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_timezone(name: str | None) -> tuple[tzinfo, str]:
    """An IANA timezone by name (None or 'UTC': UTC), with a did-you-mean when unknown."""
    if name is None or name in ("UTC", "Etc/UTC", "Z"):
        return UTC, "UTC"
    try:
        return zoneinfo.ZoneInfo(name), name
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"unknown timezone {name!r}" + did_you_mean(name, _zone_names()),
            "an IANA timezone name such as Europe/Berlin or America/New_York",
        ) from None


_DURATION = re.compile(r"(\d+)\s*([smhdw])")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration: a number of seconds, or `90s`, `5m`, `1h30m`, `2d`, `1w`."""
    if isinstance(text, bool):
        raise CronError(f"{text!r} is not a duration", "a duration such as 30s, 5m, 1h30m")
    if isinstance(text, int | float):
        if text <= 0:
            raise CronError(f"{text} is not positive", "a duration such as 30s, 5m, 1h30m")
        return float(text)
    compact = text.strip().lower()
    if compact.isdigit() and int(compact) > 0:
        return float(compact)
    pieces = _DURATION.findall(compact)
    if not pieces or _DURATION.sub("", compact).strip():
        raise CronError(
            f"{text!r} is not a duration",
            "a number of seconds or units s, m, h, d, w, e.g. 30s, 5m, 1h30m",
        )
    seconds = sum(int(amount) * UNITS[unit] for amount, unit in pieces)
    if seconds <= 0:
        raise CronError(f"{text!r} is not positive", "a duration such as 30s, 5m, 1h30m")
    return float(seconds)


def parse_every(text: str | int) -> Every:
    """An interval (`every: 5m`), whole seconds, at least one."""
    seconds = parse_duration(text)
    if seconds != int(seconds) or seconds < 1:
        raise CronError(f"{text!r} is not a whole number of seconds", "1s or more")
    return Every(int(seconds), str(text) if not isinstance(text, int) else f"{text}s")
