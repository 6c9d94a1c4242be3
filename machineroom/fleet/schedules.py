"""schedules.yml: named schedules, each a timing (cron or every) and one action.

`load_schedules(path)` reads and validates the file into `Schedule`s: the schema first
(unknown keys with did-you-mean, at file:line:col), then cron expressions, durations,
timezones and playbook paths (relative to the file's folder); all errors are raised
together. The loop that runs them is in scheduler.py; docs/schedules.md is the user's guide.
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
    args: tuple[str, ...]  # CLI words after `machineroom`, up to the options
    command: str | None = None  # `run`: the remote command, passed after `--`
    timeout: float | None = None
    enabled: bool = True
    catch_up: bool = True
    location: Location = field(default_factory=lambda: Location("schedules.yml"))

    @property
    def trigger(self) -> str:
        """What the runs it starts carry in `runs.trigger`."""
        return TRIGGER_PREFIX + self.name

    def argv(self, common: Sequence[str]) -> list[str]:
        """The CLI arguments of one run, with `common` (-i, --state) before any `--`."""
        words = [*self.args, *common]
        if self.command is not None:
            words += ["--", self.command]
        return words

    def describe(self) -> str:
        """The action as a command line, e.g. `apply site.yml --check`."""
        words = list(self.args)
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
    args: tuple[str, ...] = ()
    command = None
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
            args = ("collect", str(entry["collect"]))
        elif action == "run":
            spec = entry["run"]
            args = ("run", str(spec["hosts"]), *(("--become",) if spec.get("become") else ()))
            command = str(spec["command"])
        else:
            playbook = folder / str(entry["apply"])
            if not playbook.is_file():
                fail("apply", f"playbook {str(entry['apply'])!r} not found in {folder}")
            args = ("apply", str(playbook), *_apply_options(entry))
    if errors:
        raise InputErrors(errors)
    assert timing is not None
    return Schedule(
        name=name,
        timing=timing,
        action=actions[0],
        args=args,
        command=command,
        timeout=timeout,
        enabled=bool(entry.get("enabled", True)),
        catch_up=bool(entry.get("catch_up", True)),
        location=where,
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _apply_options(entry: Any) -> list[str]:
    words = []
    if entry.get("check"):
        words.append("--check")
    if entry.get("diff"):
        words.append("--diff")
    if entry.get("limit"):
        words += ["--limit", str(entry["limit"])]
    tags = entry.get("tags")
    if tags:
        words += ["--tags", ",".join([tags] if isinstance(tags, str) else map(str, tags))]
    if entry.get("extra_vars"):
        words += ["-e", json.dumps(to_plain(entry["extra_vars"]), sort_keys=True)]
    return words
