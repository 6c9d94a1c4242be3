"""schedules.yml: named schedules, each a timing (cron or every) and one action.

`load_schedules(path)` reads and validates the file into `Schedule`s: the schema first
(unknown keys with did-you-mean, at file:line:col), then cron expressions, durations,
timezones and playbook paths (relative to the file's folder); all errors are raised
together. A schedule's action becomes a RunRequest (`Schedule.request`) for each run. The loop
that runs them is in scheduler.py; docs/schedules.md is the user's guide.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machineroom.errors import InputError, InputErrors, Location
from machineroom.fleet.cron import Cron, CronError, Every, parse_cron, parse_duration, parse_every
from machineroom.runs.connect import ConnectSettings
from machineroom.runs.request import RunRequest
from machineroom.yamlio import key_location_of, load_yaml, location_of, to_plain

ACTIONS = ("collect", "apply", "run")
APPLY_ONLY = ("check", "diff", "limit", "tags", "extra_vars")
TRIGGER_PREFIX = "schedule:"


@dataclass(frozen=True)
class Schedule:
    """One named schedule of schedules.yml, validated."""

    name: str
    timing: Cron | Every
    action: str  # collect | apply | run
    target: str  # collect: the host pattern; apply: the playbook's path; run: the hosts
    command: str | None = None  # run: the remote command
    become: bool = False  # run: through sudo
    check: bool = False  # apply's options from here on
    diff: bool = False
    limit: str | None = None
    tags: tuple[str, ...] = ()
    extra_vars: str | None = None  # as JSON, the way -e takes it
    timeout: float | None = None
    enabled: bool = True
    catch_up: bool = True
    location: Location = field(default_factory=lambda: Location("schedules.yml"))

    @property
    def trigger(self) -> str:
        """What the runs it starts carry in `runs.trigger`."""
        return TRIGGER_PREFIX + self.name

    def request(
        self,
        inventory_paths: Sequence[str],
        state_path: str,
        connect: ConnectSettings | None = None,
    ) -> RunRequest:
        """The RunRequest of one run of this schedule, on this inventory and state database;
        its trigger is the schedule's, its recorded command line `machineroom ` + describe()."""
        return RunRequest(
            kind=self.action,
            target=self.target,
            inventory_paths=tuple(inventory_paths),
            state_path=state_path,
            limit=self.limit,
            tags=self.tags,
            extra_vars=() if self.extra_vars is None else (self.extra_vars,),
            check=self.check,
            diff=self.diff,
            command=self.command,
            become=self.become,
            connect=connect or ConnectSettings(),
            connect_from_settings=connect is None,  # the child reads them at each run
            trigger=self.trigger,
            command_line="machineroom " + self.describe(),
        )

    def describe(self) -> str:
        """The action as a command line, e.g. `apply site.yml --check`."""
        words = [self.action, self.target]
        if self.become:
            words.append("--become")
        if self.check:
            words.append("--check")
        if self.diff:
            words.append("--diff")
        if self.limit:
            words += ["--limit", self.limit]
        if self.tags:
            words += ["--tags", ",".join(self.tags)]
        if self.extra_vars is not None:
            words += ["-e", self.extra_vars]
        if self.command is not None:
            words += ["--", self.command]
        return " ".join(shlex.quote(w) for w in words)


# -- loading --------------------------------------------------------------------------------


def load_schedules(path: str | Path) -> list[Schedule]:
    """Read schedules.yml: schema first, then cron expressions, durations, timezones and
    playbook paths (relative to the file's folder). All errors are raised together."""
    from machineroom.schema import validate

    source = str(path)
    data = load_yaml(path)
    if data is None:
        data = {}
    validate(data, "schedules", source)
    entries = data.get("schedules") or {}
    schedules: list[Schedule] = []
    errors: list[InputError] = []
    for name, entry in entries.items():
        try:
            schedules.append(_load_one(name, entry, entries, Path(path).resolve().parent))
        except InputErrors as many:
            errors.extend(many.errors)
        except InputError as one:
            errors.append(one)
    if errors:
        raise InputErrors(errors)
    return schedules


def _load_one(name: str, entry: Any, parent: Any, folder: Path) -> Schedule:
    label = f"schedule '{name}'"
    where = key_location_of(parent, name)
    errors: list[InputError] = []

    def fail(key: str | None, problem: str, expected: str | None = None) -> None:
        at = location_of(entry, key, where) if key else where
        errors.append(InputError(f"{label}: {key + ': ' if key else ''}{problem}", at, expected))

    timing: Cron | Every | None = None
    kinds = [k for k in ("cron", "every") if k in entry]
    if len(kinds) != 1:
        fail(
            None,
            "has both cron and every"
            if kinds
            else "says neither when (cron) nor how often (every)",
            "either cron: '*/5 * * * *' or every: 5m",
        )
    elif "cron" in entry:
        try:
            timing = parse_cron(str(entry["cron"]), _opt_str(entry.get("timezone")))
        except CronError as exc:
            key = "timezone" if exc.problem.startswith("unknown timezone") else "cron"
            fail(key, exc.problem, exc.expected)
    else:
        if "timezone" in entry:
            fail("timezone", "applies to cron only", "no timezone with every: (it counts in UTC)")
        try:
            timing = parse_every(entry["every"])
        except CronError as exc:
            fail("every", exc.problem, exc.expected)
    timeout = None
    if "timeout" in entry:
        try:
            timeout = parse_duration(entry["timeout"])
        except CronError as exc:
            fail("timeout", exc.problem, exc.expected)
    actions = [a for a in ACTIONS if a in entry]
    target = ""
    command = None
    become = False
    if len(actions) != 1:
        fail(
            None,
            ("has " + " and ".join(actions) + "; a schedule runs one action")
            if actions
            else "has no action",
            "one of collect: PATTERN, apply: PLAYBOOK, run: {hosts, command}",
        )
    else:
        action = actions[0]
        for key in APPLY_ONLY:
            if key in entry and action != "apply":
                fail(key, f"applies to apply only, not to {action}")
        if action == "collect":
            target = str(entry["collect"])
        elif action == "run":
            spec = entry["run"]
            target = str(spec["hosts"])
            become = bool(spec.get("become"))
            command = str(spec["command"])
        else:
            playbook = folder / str(entry["apply"])
            if not playbook.is_file():
                fail("apply", f"playbook {str(entry['apply'])!r} not found in {folder}")
            target = str(playbook)
    if errors:
        raise InputErrors(errors)
    assert timing is not None
    tags = entry.get("tags") or ()
    extra_vars = entry.get("extra_vars")
    return Schedule(
        name=name,
        timing=timing,
        action=actions[0],
        target=target,
        command=command,
        become=become,
        check=bool(entry.get("check")),
        diff=bool(entry.get("diff")),
        limit=str(entry["limit"]) if entry.get("limit") else None,
        tags=(str(tags),) if isinstance(tags, str) else tuple(map(str, tags)),
        extra_vars=json.dumps(to_plain(extra_vars), sort_keys=True) if extra_vars else None,
        timeout=timeout,
        enabled=bool(entry.get("enabled", True)),
        catch_up=bool(entry.get("catch_up", True)),
        location=where,
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
