"""Schedules: the cron parser, schedules.yml validation, the loop with an injected clock, and
`machineroom scheduler` as a subprocess running collect, apply and run against a real host."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from clirun import machineroom

from machineroom.errors import InputError
from machineroom.fleet.cron import CronError, parse_cron, parse_duration, parse_every
from machineroom.fleet.scheduler import Event, Scheduler
from machineroom.fleet.schedules import load_schedules
from machineroom.lab import Lab
from machineroom.runs.request import RunRequest
from machineroom.state import StateStore, open_state


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def upcoming(expression: str, start: str, count: int, zone: str | None = None) -> list[str]:
    """The next `count` due times after `start` (UTC), as `YYYY-MM-DD HH:MM` in UTC."""
    cron = parse_cron(expression, zone)
    moment = utc(start)
    found = []
    for _ in range(count):
        moment = cron.next_after(moment)
        found.append(moment.strftime("%Y-%m-%d %H:%M"))
    return found


# -- cron expressions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("* * * * *", "2025-01-01 00:00:30", ["2025-01-01 00:01", "2025-01-01 00:02"]),
        ("*/15 * * * *", "2025-01-01 00:50", ["2025-01-01 01:00", "2025-01-01 01:15"]),
        ("5,35 */6 * * *", "2025-01-01 06:40", ["2025-01-01 12:05", "2025-01-01 12:35"]),
        ("0-10/5 9-17/4 * * *", "2025-01-01 09:06", ["2025-01-01 09:10", "2025-01-01 13:00"]),
        ("30/15 * * * *", "2025-01-01 00:31", ["2025-01-01 00:45", "2025-01-01 01:30"]),
        # names, case-insensitive; 7 and 0 are Sunday
        ("0 12 * JAN,jul mon-fri", "2025-06-30 13:00", ["2025-07-01 12:00", "2025-07-02 12:00"]),
        ("0 0 * * 7", "2025-01-01 00:00", ["2025-01-05 00:00", "2025-01-12 00:00"]),
        ("0 0 * * sun,0", "2025-01-01 00:00", ["2025-01-05 00:00", "2025-01-12 00:00"]),
        # both day fields restricted: either matches (the 13th, and every Friday)
        ("0 0 13 * fri", "2025-06-01 00:00", ["2025-06-06 00:00", "2025-06-13 00:00"]),
        ("0 0 13 * fri", "2025-06-13 00:00", ["2025-06-20 00:00", "2025-06-27 00:00"]),
        # a day field starting with '*' counts as unrestricted: both must match
        ("0 0 */2 * fri", "2025-06-01 00:00", ["2025-06-13 00:00", "2025-06-27 00:00"]),
        # month ends and leap years
        ("0 0 31 * *", "2025-01-31 00:00", ["2025-03-31 00:00", "2025-05-31 00:00"]),
        ("0 0 29 2 *", "2025-01-01 00:00", ["2028-02-29 00:00", "2032-02-29 00:00"]),
        ("0 0 29 2 *", "2096-03-01 00:00", ["2104-02-29 00:00"]),  # 2100 is no leap year
        ("59 23 31 12 *", "2025-12-31 23:59", ["2026-12-31 23:59"]),
        # macros
        ("@hourly", "2025-01-01 00:00", ["2025-01-01 01:00", "2025-01-01 02:00"]),
        ("@daily", "2025-01-01 00:00", ["2025-01-02 00:00"]),
        ("@weekly", "2025-01-01 00:00", ["2025-01-05 00:00"]),
        ("@monthly", "2025-01-15 00:00", ["2025-02-01 00:00", "2025-03-01 00:00"]),
        ("@yearly", "2025-01-01 00:00", ["2026-01-01 00:00"]),
        ("@annually", "2025-06-01 00:00", ["2026-01-01 00:00"]),
    ],
)
def test_cron_next_due_times(expression: str, start: str, expected: list[str]) -> None:
    assert upcoming(expression, start, len(expected)) == expected


def test_day_of_week_step_and_range_of_names() -> None:
    cron = parse_cron("0 0 * * */2")
    assert cron.weekdays == frozenset({0, 2, 4, 6})
    assert parse_cron("0 0 * * sat-sun".replace("sat-sun", "5-7")).weekdays == {0, 5, 6}


def test_timezone_wall_clock_and_dst_changes() -> None:
    # Berlin: UTC+1 in winter, UTC+2 in summer
    assert upcoming("0 3 * * *", "2025-01-10 12:00", 1, "Europe/Berlin") == ["2025-01-11 02:00"]
    assert upcoming("0 3 * * *", "2025-07-10 12:00", 1, "Europe/Berlin") == ["2025-07-11 01:00"]
    # 2025-03-30 02:00 CET jumps to 03:00 CEST: 02:30 runs once, an hour later (03:30 CEST)
    assert upcoming("30 2 * * *", "2025-03-29 12:00", 3, "Europe/Berlin") == [
        "2025-03-30 01:30",
        "2025-03-31 00:30",
        "2025-04-01 00:30",
    ]
    # hourly keeps one run per real hour across the jump
    assert upcoming("0 * * * *", "2025-03-29 23:30", 3, "Europe/Berlin") == [
        "2025-03-30 00:00",  # 01:00 CET
        "2025-03-30 01:00",  # 03:00 CEST (02:00 does not exist: the same instant)
        "2025-03-30 02:00",
    ]
    # 2025-10-26 03:00 CEST falls back to 02:00 CET: a fixed 02:30 runs once ...
    assert upcoming("30 2 * * *", "2025-10-25 12:00", 2, "Europe/Berlin") == [
        "2025-10-26 00:30",
        "2025-10-27 01:30",
    ]
    # ... while an every-hour expression runs in both passes of the repeated hour
    assert upcoming("*/30 * * * *", "2025-10-25 23:45", 5, "Europe/Berlin") == [
        "2025-10-26 00:00",  # 02:00 CEST
        "2025-10-26 00:30",  # 02:30 CEST
        "2025-10-26 01:00",  # 02:00 CET
        "2025-10-26 01:30",  # 02:30 CET
        "2025-10-26 02:00",  # 03:00 CET
    ]
    # New York, US rules: the same idea on other dates
    assert upcoming("30 2 * * *", "2025-03-09 00:00", 1, "America/New_York") == [
        "2025-03-09 07:30"  # 03:30 EDT
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field: 61 is outside 0-59; expected numbers 0-59"),
        ("* 24 * * *", "hour field: 24 is outside 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is outside 1-31"),
        ("* * * 13 *", "month field: 13 is outside 1-12"),
        ("* * * * 8", "day-of-week field: 8 is outside 0-7"),
        ("* * * janu *", "month field: unknown name 'janu' (did you mean 'jan'?)"),
        ("* * * * mno", "day-of-week field: unknown name 'mno' (did you mean 'mon'?)"),
        ("*/0 * * * *", "minute field: step '0' is not a positive number"),
        ("30-10 * * * *", "minute field: range 30-10 goes backwards"),
        ("1,,2 * * * *", "minute field: empty list item"),
        ("x * * * *", "minute field: 'x' is not a number"),
        ("* * * *", "'* * * *' has 4 field(s); expected 5 fields: minute hour"),
        ("0 0 30 2 *", "day-of-month field: day 30 never occurs in feb"),
        ("@reboot", "@reboot is not supported"),
        ("@daly", "unknown macro '@daly' (did you mean '@daily'?)"),
    ],
)
def test_bad_cron_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert message in str(caught.value)


def test_timezones_and_durations() -> None:
    with pytest.raises(CronError, match=r"unknown timezone 'Europe/Berln' \(did you mean"):
        parse_cron("* * * * *", "Europe/Berln")
    assert parse_duration("1h30m") == 5400
    assert parse_duration(90) == 90
    assert parse_duration("2d") == 172800
    with pytest.raises(CronError, match="is not a duration"):
        parse_duration("5 minutes")
    every = parse_every("5m")
    # anchored to the epoch: :00, :05, ... whatever the start
    assert every.next_after(utc("2025-01-01 10:02:13")) == utc("2025-01-01 10:05:00")
    assert every.next_after(utc("2025-01-01 10:05:00")) == utc("2025-01-01 10:10:00")
    assert every.count_between(utc("2025-01-01 10:05"), utc("2025-01-01 10:21")) == 4


# -- schedules.yml --------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_schedules_load_into_run_requests(tmp_path: Path) -> None:
    write(tmp_path / "playbooks" / "site.yml", "- hosts: all\n  tasks: []\n")
    path = write(
        tmp_path / "schedules.yml",
        """\
        schedules:
          metrics:
            every: 5m
            collect: all
          drift:
            cron: "0 3 * * *"
            timezone: Europe/Berlin
            apply: playbooks/site.yml
            check: true
            diff: true
            limit: web
            tags: [docker, env]
            extra_vars: {release: "1.2"}
            timeout: 30m
          cleanup:
            cron: "@weekly"
            run: {hosts: "web:&prod", command: "docker system prune -f", become: true}
            enabled: false
        """,
    )
    metrics, drift, cleanup = load_schedules(path)
    collect = metrics.request(["inv"], "db")
    assert (collect.kind, collect.target, collect.inventory_paths) == ("collect", "all", ("inv",))
    assert collect.state_path == "db" and collect.trigger == "schedule:metrics"
    assert collect.command_line == "machineroom collect all"
    apply = drift.request([], "db")
    assert (apply.kind, apply.target) == ("apply", str(tmp_path / "playbooks" / "site.yml"))
    assert apply.check and apply.diff and apply.limit == "web"
    assert apply.tags == ("docker", "env") and apply.extra_vars == ('{"release": "1.2"}',)
    assert apply.trigger == "schedule:drift"
    assert drift.describe() == (
        f"apply {tmp_path / 'playbooks' / 'site.yml'} --check --diff --limit web "
        """--tags docker,env -e '{"release": "1.2"}'"""
    )
    assert drift.timeout == 1800 and drift.trigger == "schedule:drift"
    run = cleanup.request([], "db")
    assert (run.kind, run.target, run.command, run.become) == (
        "run",
        "web:&prod",
        "docker system prune -f",
        True,
    )
    assert not (run.check or run.diff or run.limit or run.tags or run.extra_vars)
    # what crosses to the child is the JSON of the request, whole
    assert RunRequest.from_json(run.to_json()) == run
    assert not cleanup.enabled
    assert cleanup.describe() == "run 'web:&prod' --become -- 'docker system prune -f'"


def test_invalid_schedules_report_file_line_and_expectation(tmp_path: Path) -> None:
    path = write(
        tmp_path / "schedules.yml",
        """\
        schedules:
          a:
            cron: "61 * * * *"
            collect: all
          b:
            every: 5m
            colect: all
          c:
            every: soon
            apply: missing.yml
          d:
            cron: "* * * * *"
            every: 1m
            run: {hosts: all, command: uptime}
            check: true
          e:
            cron: "@daily"
            timezone: Mars/Olympus
            collect: all
            apply: missing.yml
        """,
    )
    with pytest.raises(InputError) as caught:
        load_schedules(path)
    lines = str(caught.value).splitlines()
    assert any(
        line.startswith(f"{path}:7:5:")
        and "schedule 'b': unknown key 'colect' (did you mean 'collect'?)" in line
        for line in lines
    ), lines
    # the schema error stops before the semantic checks: fix it and the rest shows
    (tmp_path / "schedules.yml").write_text(path.read_text().replace("colect", "collect"))
    with pytest.raises(InputError) as caught:
        load_schedules(path)
    text = str(caught.value)
    assert f"{path}:3:11: schedule 'a': cron: minute field: 61 is outside 0-59" in text
    assert f"{path}:9:12: schedule 'c': every: 'soon' is not a duration" in text
    assert f"{path}:10:12: schedule 'c': apply: playbook 'missing.yml' not found" in text
    assert f"{path}:11:3: schedule 'd': has both cron and every" in text
    assert f"{path}:15:12: schedule 'd': check: applies to apply only, not to run" in text
    assert "schedule 'e': timezone: unknown timezone 'Mars/Olympus'" in text
    assert "schedule 'e': has collect and apply; a schedule runs one action" in text


def test_schema_errors_for_types_and_missing_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "schedules.yml",
        """\
        schedules:
          a:
            every: 5m
            run: {hosts: all}
            enabled: "yes"
        """,
    )
    with pytest.raises(InputError) as caught:
        load_schedules(path)
    text = str(caught.value)
    assert f"{path}:4:10: schedule 'a': run: missing required key 'command'" in text
    assert f"{path}:5:14: schedule 'a': enabled: 'yes' is not true or false" in text
    write(tmp_path / "other.yml", "schedule: {}\n")
    with pytest.raises(InputError, match="unknown key 'schedule' \\(did you mean 'schedules'"):
        load_schedules(tmp_path / "other.yml")


# -- the loop, with an injected clock and fake processes -----------------------------------


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def wait(self, stop: Any, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class FakeChild:
    next_pid = 4_000_000  # above any real pid: a stray signal could not reach a process

    def __init__(self, argv: list[str], request: RunRequest) -> None:
        FakeChild.next_pid += 1
        self.pid = FakeChild.next_pid
        self.argv = argv
        self.request = request
        self.code: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.code

    def wait(self, timeout: float | None = None) -> int:
        if self.code is None:
            self.code = -9
        return self.code

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGKILL:
            self.code = -9


class Harness:
    """A Scheduler over a real state database, a fake clock and fake children."""

    def __init__(self, tmp_path: Path, schedules_yml: str, start: str) -> None:
        write(tmp_path / "site.yml", "- hosts: all\n  tasks: []\n")
        self.path = write(tmp_path / "schedules.yml", schedules_yml)
        self.store: StateStore = open_state(tmp_path / "state.db")
        self.clock = FakeClock(utc(start))
        self.children: list[FakeChild] = []
        self.events: list[Event] = []
        self.scheduler = self.make()

    def make(self) -> Scheduler:
        return Scheduler(
            load_schedules(self.path),
            self.store,
            ["machineroom"],
            ["inv.yml"],
            "db",
            path=self.path,
            on_event=self.events.append,
            clock=self.clock,
            launcher=self.launch,
            grace=5,
        )

    def launch(self, argv: list[str], request: RunRequest, log: IO[bytes]) -> FakeChild:
        child = FakeChild(argv, request)
        self.children.append(child)
        return child

    def at(self, seconds: float) -> list[tuple[str, str]]:
        """Advance the clock, do one round; the (schedule, event) pairs it produced."""
        self.clock.advance(seconds)
        before = len(self.events)
        self.scheduler.step()
        return [(e.schedule, e.event) for e in self.events[before:]]

    def db(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.store.path) as db:
            return list(db.execute(sql))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[[str, str], Harness]]:
    made: list[Harness] = []

    def make(text: str, start: str = "2025-01-01 12:00:00") -> Harness:
        made.append(Harness(tmp_path, text, start))
        return made[-1]

    yield make
    for h in made:
        h.scheduler.shutdown()  # closes the output files of runs still going
        h.store.close()


def test_due_schedule_starts_with_trigger_and_overlap_is_skipped(harness: Any) -> None:
    h = harness(
        """\
        schedules:
          tick:
            every: 10s
            run: {hosts: all, command: uptime}
        """
    )
    assert h.at(0) == []
    assert h.at(10) == [("tick", "started")]
    child = h.children[0]
    # no value in argv: the request goes to the child's stdin
    assert child.argv == ["machineroom", "run-request", "-"]
    asked = child.request
    assert (asked.kind, asked.target, asked.command) == ("run", "all", "uptime")
    assert (asked.inventory_paths, asked.state_path) == (("inv.yml",), "db")
    assert asked.trigger == "schedule:tick"
    assert h.at(10) == [("tick", "skipped")]  # still running: not queued, not doubled
    assert "still running" in h.events[-1].detail
    child.code = 0
    assert h.at(5) == [("tick", "finished")]
    assert h.events[-1].detail.startswith("exit 0")
    assert h.at(5) == [("tick", "started")]
    assert len(h.children) == 2
    rows = h.db("SELECT schedule, event, due_at FROM schedule_events ORDER BY id")
    assert [r[1] for r in rows] == ["started", "skipped", "finished", "started"]
    assert rows[0][2] == "2025-01-01T12:00:10.000Z" and rows[1][2] == "2025-01-01T12:00:20.000Z"


def test_missed_runs_are_reported_once_and_caught_up_once(harness: Any) -> None:
    h = harness(
        """\
        schedules:
          tick:
            every: 1m
            collect: all
          quiet:
            every: 1m
            collect: all
            catch_up: false
        """,
        start="2025-01-01 12:00:30",
    )
    assert h.at(30) == [("tick", "started"), ("quiet", "started")]
    for child in h.children:
        child.code = 0
    # the machine slept (or SIGSTOP) for ten minutes and more
    assert h.at(640) == [
        ("tick", "finished"),
        ("quiet", "finished"),
        ("tick", "missed"),
        ("tick", "started"),
        ("quiet", "missed"),
    ]
    missed = [e for e in h.events if e.event == "missed"]
    assert missed[0].detail.startswith("10 due time(s) missed since 2025-01-01T12:02:00Z")
    assert "running once now to catch up" in missed[0].detail
    assert missed[1].detail.endswith("; not run")
    assert missed[0].due_at == utc("2025-01-01 12:11:00")  # the latest one missed
    assert len(h.children) == 3  # one catch-up run, never ten
    # back in rhythm: the next due time is on time again
    h.children[-1].code = 0
    assert h.at(30) == [("tick", "finished"), ("tick", "started"), ("quiet", "started")]


def test_restart_reports_due_times_missed_while_stopped(harness: Any) -> None:
    h = harness(
        """\
        schedules:
          hourly:
            cron: "0 * * * *"
            collect: all
        """,
        start="2025-01-01 11:59:59",
    )
    assert h.at(1) == [("hourly", "started")]
    h.children[0].code = 0
    assert h.at(5) == [("hourly", "finished")]
    # the scheduler is stopped for three hours and more, then started again
    h.clock.advance(3 * 3600 + 600)
    h.scheduler = h.make()
    assert h.at(0) == [("hourly", "missed"), ("hourly", "started")]
    missed = h.events[-2]
    assert missed.detail.startswith(
        "3 due time(s) missed since 2025-01-01T13:00:00Z while the scheduler was stopped;"
        " running once now to catch up"
    )
    assert "catching up" in h.events[-1].detail


def test_timeout_interrupts_then_kills_and_shutdown_stops_runs(harness: Any) -> None:
    h = harness(
        """\
        schedules:
          slow:
            every: 1m
            timeout: 10s
            run: {hosts: all, command: sleep 100}
          other:
            every: 1m
            collect: all
        """,
        start="2025-01-01 12:00:00",
    )
    h.at(60)
    slow, other = h.children
    assert h.at(10) == [("slow", "timeout")]
    assert slow.signals == [signal.SIGTERM]  # the run kills its commands, marks itself
    h.at(5)
    assert slow.signals == [signal.SIGTERM, signal.SIGKILL]  # after the grace period
    assert h.at(0) == [("slow", "finished")]
    assert "killed by signal 9" in h.events[-1].detail
    assert "timed out after 10s" in h.events[-1].detail
    h.scheduler.shutdown()
    assert other.signals[0] == signal.SIGTERM
    assert [e.event for e in h.events[-2:]] == ["stopping", "finished"]
    assert "stopped with the scheduler" in h.events[-1].detail


def test_reload_on_change_and_invalid_file_keeps_schedules(harness: Any) -> None:
    h = harness(
        """\
        schedules:
          tick:
            every: 10s
            collect: all
        """
    )
    h.at(0)
    original = h.path.read_text()
    h.path.write_text(original + "    timeout: never\n")
    os.utime(h.path, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    assert h.at(2) == [("", "invalid")]
    assert "timeout: 'never' is not a duration" in h.events[-1].detail
    assert "keeping the schedules in force" in h.events[-1].detail
    assert h.at(8) == [("tick", "started")]  # the old schedule still runs
    h.path.write_text(original.replace("tick", "tock"))
    os.utime(h.path, ns=(2, 2))
    assert h.at(1) == [("", "reloaded")]
    assert "added tock; removed tick" in h.events[-1].detail
    h.children[0].code = 0
    # the removed schedule's run is still followed to its end
    assert h.at(9) == [("tick", "finished"), ("tock", "started")]


# -- end to end: `machineroom scheduler` against a real SSH host ------------------------------


@pytest.fixture
def repo(tmp_path: Path, fleet_lab: Lab) -> Path:
    """An inventory repo with h8 of the fleet lab (the scheduler's host)."""
    host = fleet_lab.hosts[7]
    write(
        tmp_path / "inventory.yml",
        f"""\
        all:
          hosts:
            {host.name}: {{host: {host.address}, user: root, ssh_key: {fleet_lab.key}}}
        """,
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    write(
        tmp_path / "playbooks" / "drift.yml",
        """\
        - hosts: all
          gather_facts: false
          tasks:
            - copy: {content: "wanted\\n", dest: /srv/scheduled-drift}
        """,
    )
    return tmp_path


def db(repo: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(repo / ".machineroom" / "state.db", timeout=10) as conn:
        return list(conn.execute(sql))


def wait_for(what: Callable[[], bool], timeout: float, proc: subprocess.Popen[str]) -> None:
    """Poll until `what` holds; fail with the scheduler's output if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if what():
                return
        except sqlite3.OperationalError:
            pass  # the database is not created yet, or busy
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"timed out waiting\nstdout:\n{out}\nstderr:\n{err}")


def start_scheduler(repo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "machineroom", "scheduler", "--grace", "3"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished_runs(repo: Path, schedule: str) -> int:
    return int(
        db(
            repo,
            "SELECT count(*) FROM schedule_events e JOIN runs r ON r.id = e.run_id"
            f" WHERE e.schedule = '{schedule}' AND e.event = 'finished'"
            f" AND r.trigger = 'schedule:{schedule}' AND r.status != 'running'",
        )[0][0]
    )


def test_scheduler_runs_collect_apply_and_run_on_a_real_host(repo: Path) -> None:
    write(
        repo / "schedules.yml",
        """\
        schedules:
          uptime:
            every: 2s
            run: {hosts: all, command: "hostname; uptime"}
          drift:
            every: 3s
            apply: playbooks/drift.yml
            check: true
          slow:
            every: 1s
            run: {hosts: all, command: sleep 3}
          metrics:
            every: 3s
            collect: all
        """,
    )
    listed = machineroom("scheduler", "list", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    assert "uptime" in listed.stdout and "never ran" in listed.stdout
    proc = start_scheduler(repo)
    names = ("uptime", "drift", "slow", "metrics")
    wait_for(lambda: all(finished_runs(repo, n) >= 2 for n in names), 40, proc)

    # a pause (SIGSTOP: what a sleeping laptop looks like) leaves due times missed
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(3.5)  # the pause itself is what is tested; nothing to poll for
    os.kill(proc.pid, signal.SIGCONT)
    wait_for(
        lambda: db(repo, "SELECT count(*) FROM schedule_events WHERE event = 'missed'")[0][0] > 0,
        15,
        proc,
    )

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "Traceback" not in out + err

    # every scheduled run is in the history like a manual one, with its trigger
    runs = db(repo, "SELECT id, kind, status, trigger, command FROM runs ORDER BY id")
    assert {r[3] for r in runs} == {f"schedule:{n}" for n in names}
    assert all(r[2] != "running" for r in runs), runs
    kinds = {r[3]: r[1] for r in runs}
    assert kinds == {
        "schedule:uptime": "run",
        "schedule:drift": "apply",
        "schedule:slow": "run",
        "schedule:metrics": "collect",
    }
    ok = [r for r in runs if r[3] == "schedule:uptime" and r[2] == "ok"]
    assert len(ok) >= 2
    audit = db(repo, f"SELECT host_id, command, exit_code FROM audit_log WHERE run_id = {ok[0][0]}")
    assert audit == [("h8", "hostname; uptime", 0)]
    drift = db(
        repo,
        "SELECT count(*) FROM task_results t JOIN runs r ON r.id = t.run_id"
        " WHERE r.trigger = 'schedule:drift' AND t.status = 'changed'",
    )[0][0]
    assert drift >= 2  # check mode reports the drift on every run
    assert db(repo, "SELECT count(*) FROM samples")[0][0] > 0  # the collections stored

    # never two runs of one schedule at once; overlapping due times skipped with why
    slow = db(
        repo,
        "SELECT started_at, finished_at FROM runs WHERE trigger = 'schedule:slow' ORDER BY id",
    )
    for (_, end), (start, _) in itertools.pairwise(slow):
        assert end is not None and end <= start
    skipped = db(
        repo, "SELECT detail FROM schedule_events WHERE schedule = 'slow' AND event = 'skipped'"
    )
    assert skipped and all("still running" in d for (d,) in skipped)

    missed = db(repo, "SELECT schedule, detail FROM schedule_events WHERE event = 'missed'")
    assert any("paused or the machine slept" in d for _, d in missed), missed
    assert " missed " in out  # one console line per event

    # each start event carries its run; the console showed the same
    started = db(repo, "SELECT run_id FROM schedule_events WHERE event = 'started'")
    assert sum(r[0] is not None for r in started) >= len(started) - 4
    assert "uptime finished run=" in out and "exit 0, ok" in out

    history = machineroom("history", "-n", "100", cwd=repo)
    assert "machineroom run all" in history.stdout

    # started again after a pause: what it missed while stopped is reported; Ctrl-C exits 99
    time.sleep(2.5)  # let due times pass while no scheduler runs
    proc = start_scheduler(repo)
    wait_for(
        lambda: any(
            "while the scheduler was stopped" in d
            for (d,) in db(repo, "SELECT detail FROM schedule_events WHERE event = 'missed'")
        ),
        20,
        proc,
    )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 99, out + err
    assert all(r[0] != "running" for r in db(repo, "SELECT status FROM runs"))
    events = machineroom("scheduler", "events", "slow", "-n", "5", cwd=repo)
    assert events.returncode == 0 and "slow" in events.stdout


def test_invalid_schedules_exit_4_and_name_the_line(repo: Path) -> None:
    write(repo / "schedules.yml", "schedules:\n  a:\n    cron: '* * * *'\n    collect: all\n")
    out = machineroom("scheduler", cwd=repo)
    assert out.returncode == 4
    assert "schedules.yml:3:11: schedule 'a': cron: '* * * *' has 4 field(s)" in out.stderr
    (repo / "schedules.yml").unlink()
    out = machineroom("scheduler", "list", cwd=repo)
    assert out.returncode == 5 and "pass --schedules FILE" in out.stderr


def test_one_scheduler_per_state_database(tmp_path: Path) -> None:
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    web1: {host: 127.0.2.251}\n")
    (tmp_path / "schedules.yml").write_text(
        "schedules:\n  hourly:\n    every: 1h\n    run: {hosts: all, command: uptime}\n"
    )
    first = subprocess.Popen(
        [sys.executable, "-m", "machineroom", "scheduler"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = tmp_path / ".machineroom" / "state.db.scheduler.lock"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            lock.exists() and lock.read_text().strip() == str(first.pid)
        ):
            time.sleep(0.1)
        assert lock.read_text().strip() == str(first.pid)
        assert oct(lock.stat().st_mode & 0o777) == "0o600"
        second = machineroom("scheduler", cwd=tmp_path, timeout=30)
        assert second.returncode == 5, second.stderr
        assert "another scheduler already runs on" in second.stderr
        assert f"(pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 0
    # The lock goes with its process: a new scheduler may start.
    third = subprocess.Popen(
        [sys.executable, "-m", "machineroom", "scheduler"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and lock.read_text().strip() != str(third.pid):
            time.sleep(0.1)
        assert lock.read_text().strip() == str(third.pid)
    finally:
        third.kill()
        third.communicate(timeout=30)
