"""ansible-playbook's common flags as options of `machineroom apply`, and `-u/-k/--private-key`
on commands that connect. What each does is in machineroom/runs/habits.py; the listing flags
(`--list-hosts`, `--list-tasks`, `--list-tags`, `--syntax-check`) print ansible-playbook's
listing and connect to nothing; `--flush-cache` says machineroom keeps no fact cache.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from machineroom.runs.habits import AnsibleHabits

F = TypeVar("F", bound=Callable[..., Any])


LOGIN_OPTIONS = [
    click.option("-u", "--user", help="Login user of hosts whose inventory names none."),
    click.option(
        "-k", "--ask-pass", is_flag=True, help="Ask for the SSH password (hosts with none)."
    ),
    click.option(
        "--private-key",
        "--key-file",
        "private_key",
        type=click.Path(dir_okay=False),
        help="SSH key of hosts whose inventory names none.",
    ),
]

PLAYBOOK_OPTIONS = [
    click.option(
        "-b", "--become", is_flag=True, help="Every play becomes root (sudo), as `become: true`."
    ),
    click.option("--become-user", help="User to become where the play names none."),
    click.option("--become-method", help="sudo (default) or su."),
    click.option("-K", "--ask-become-pass", is_flag=True, help="Ask for the sudo password once."),
    *LOGIN_OPTIONS,
    click.option(
        "--start-at-task", metavar="NAME", help="Skip the tasks before the first named NAME (glob)."
    ),
    click.option("--list-hosts", is_flag=True, help="List each play's hosts; run nothing."),
    click.option("--list-tasks", is_flag=True, help="List each play's tasks; run nothing."),
    click.option("--list-tags", is_flag=True, help="List each play's tags; run nothing."),
    click.option(
        "--syntax-check", is_flag=True, help="Load and validate the playbook; run nothing."
    ),
    click.option(
        "--force-handlers", is_flag=True, help="Run notified handlers even on failed hosts."
    ),
    click.option("--flush-cache", is_flag=True, help="Accepted: machineroom keeps no fact cache."),
]
HABIT_NAMES = [f.name for f in dataclasses.fields(AnsibleHabits)]


def ansible_playbook_options(func: F) -> F:
    """ansible-playbook's flags, passed to the command as one `habits: AnsibleHabits`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in HABIT_NAMES}
        return func(*args, habits=AnsibleHabits(**values), **kwargs)

    command: Any = wrapper
    for option in reversed(PLAYBOOK_OPTIONS):
        command = option(command)
    return command  # type: ignore[no-any-return]


def login_options(func: F) -> F:
    """`-u`, `-k`, `--private-key` for commands that connect (`run`)."""
    command: Any = func
    for option in reversed(LOGIN_OPTIONS):
        command = option(command)
    return command  # type: ignore[no-any-return]
