"""`machineroom apply` (run a playbook) and `machineroom plan` (show what it would do): options
in, a RunRequest to machineroom/runs/, the result rendered, an exit code out."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from machineroom.cli.ansible_habits import ansible_playbook_options
from machineroom.cli.context import connection_options, inventory_options, make_workspace
from machineroom.runs.apply import PLAN_FORMATS
from machineroom.runs.request import RunRequest, RunResult

if TYPE_CHECKING:
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.habits import AnsibleHabits

F = TypeVar("F", bound=Callable[..., Any])
SELECTION = ("playbook", "limit", "tags", "skip_tags", "stages", "extra_vars")


def playbook_options(func: F) -> F:
    """Options shared by apply and plan: what to run, where, with which variables; handed to
    the command as one `selection` dict."""
    options = [
        click.argument("playbook", type=click.Path(exists=True, dir_okay=False)),
        click.option("-l", "--limit", help="Only hosts matching this pattern too."),
        click.option("-t", "--tags", multiple=True, help="Only tasks with these tags."),
        click.option("--skip-tags", multiple=True, help="Leave out tasks with these tags."),
        click.option("--stage", "stages", multiple=True, help="Only these stages; repeatable."),
        click.option(
            "-e",
            "--extra-vars",
            "extra_vars",
            multiple=True,
            help="key=value, JSON, or @file.yml; highest precedence; repeatable.",
        ),
    ]

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        kwargs["selection"] = {name: kwargs.pop(name) for name in SELECTION}
        return func(*args, **kwargs)

    wrapped: Any = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def _request(selection: dict[str, Any], **fields: Any) -> RunRequest:
    """The RunRequest of an apply or plan with these options."""
    return RunRequest(
        kind="apply",
        target=selection["playbook"],
        limit=selection["limit"],
        tags=tuple(selection["tags"]),
        skip_tags=tuple(selection["skip_tags"]),
        stages=tuple(selection["stages"]),
        extra_vars=tuple(selection["extra_vars"]),
        **fields,
    )


@click.command("plan")
@playbook_options
@inventory_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(PLAN_FORMATS),
    default="text",
    show_default=True,
)
@click.option("--check", is_flag=True, help="Plan as for a check-mode run.")
def plan_command(
    selection: dict[str, Any],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    output_format: str,
    check: bool,
) -> None:
    """Show what PLAYBOOK would run on which hosts, without connecting to any."""
    from machineroom.runs.apply import plan_playbook

    workspace = make_workspace(inventory_paths, state_path)
    text = plan_playbook(_request(selection, check=check), workspace, output_format)
    click.echo(text, nl=False)


@click.command("apply")
@playbook_options
@inventory_options
@connection_options
@click.option("-C", "--check", is_flag=True, help="Change nothing; report what would change.")
@click.option("-D", "--diff", is_flag=True, help="Show diffs of files and attributes.")
@click.option(
    "--resume",
    is_flag=True,
    help="Only hosts a previous run left pending, from the stage where they stopped.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout at the end.")
@click.option("-v", "--verbose", count=True, help="More output (-v ok tasks, -vv command output).")
@click.option(
    "--no-programs",
    is_flag=True,
    help="Send every task to its host as a command of its own, not in per-host programs.",
)
@ansible_playbook_options
def apply_command(
    selection: dict[str, Any],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    connect: ConnectSettings,
    check: bool,
    diff: bool,
    resume: bool,
    as_json: bool,
    verbose: int,
    no_programs: bool,
    habits: AnsibleHabits,
) -> None:
    """Run PLAYBOOK on the inventory's hosts, in parallel, recording everything.

    Exit status: 0 ok, 2 a host failed, 3 a host was unreachable, 4 invalid input (nothing
    was contacted), 99 interrupted. ansible-playbook's flags work too (`-b`, `-K`, `-u`,
    `-k`, `--private-key`, `--start-at-task`, `--list-hosts`, `--list-tasks`, `--list-tags`,
    `--syntax-check`, `--force-handlers`, `--flush-cache`): see docs/cli.md.
    """
    from machineroom.report import make_reporter
    from machineroom.runs.apply import apply_playbook
    from machineroom.runs.playbook_flags import describe_playbook

    if habits.describes:
        text = describe_playbook(
            _request(selection), habits, lambda: make_workspace(inventory_paths, state_path)
        )
        click.echo(text, nl=False)
        return
    if habits.flush_cache:
        click.echo(
            "--flush-cache: nothing to flush: machineroom keeps no fact cache (facts are "
            "gathered afresh in every run)",
            err=True,
        )
    request = _request(
        selection,
        inventory_paths=inventory_paths,
        state_path=state_path,
        check=check,
        diff=diff,
        resume=resume,
        verbosity=verbose,
        habits={k: v for k, v in dataclasses.asdict(habits).items() if v},
        options={"programs": False} if no_programs else {},
        connect=connect,
    )
    workspace = make_workspace(inventory_paths, state_path)
    reporter = make_reporter(as_json=as_json, verbosity=verbose, diff=diff)
    result = apply_playbook(request, workspace, [reporter], prompt=terminal_prompt)
    sys.exit(finish(result))


def terminal_prompt(text: str, private: bool) -> str:
    """Ask on the terminal (stderr), hiding a private answer (vars_prompt)."""
    value: str = click.prompt(text, hide_input=private, default="", show_default=False, err=True)
    return value


def finish(result: RunResult) -> int:
    """Print the run's notes for the person who started it; the command's exit status."""
    for note in result.notes:
        click.echo(note, err=True)
    return result.exit_code
