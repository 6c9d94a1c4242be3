"""`machineroom apply` (run a playbook) and `machineroom plan` (show what it would do)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from machineroom.cli.context import (
    Workspace,
    connection_options,
    inventory_options,
    make_connect_options,
    make_workspace,
)
from machineroom.errors import ExitCode, InputErrors

if TYPE_CHECKING:
    from machineroom.inventory.model import Host
    from machineroom.playbook.model import Playbook

F = TypeVar("F", bound=Callable[..., Any])


def playbook_options(func: F) -> F:
    """Options shared by apply and plan: what to run, where, with which variables."""
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
    for option in reversed(options):
        func = option(func)
    return func


def _split(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(t.strip() for v in values for t in v.split(",") if t.strip())


@dataclass
class Prepared:
    """A validated playbook and the hosts of each of its plays."""

    playbook: Playbook
    play_hosts: list[list[Host]]
    extra_vars: dict[str, Any]
    extra_sources: dict[str, str]
    playbook_dir: str


def roles_path(playbook: str) -> list[str]:
    """Where roles are looked for besides the playbook's own `roles/`: the folder above it
    (`playbooks/site.yml` -> `roles/`), the repository's top, the current folder."""
    folder = Path(playbook).resolve().parent
    candidates = [folder.parent / "roles", Path.cwd() / "roles"]
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top:
        candidates.append(Path(top) / "roles")
    seen: list[str] = []
    for candidate in candidates:
        if candidate.is_dir() and str(candidate) not in seen:
            seen.append(str(candidate))
    return seen


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(playbook: str) -> str | None:
    """The commit of the playbook's repository, with `-dirty` when it has local changes."""
    folder = Path(playbook).resolve().parent
    commit = _git(folder, "rev-parse", "HEAD")
    if commit and _git(folder, "status", "--porcelain"):
        commit += "-dirty"
    return commit


def prepare(
    workspace: Workspace,
    playbook_path: str,
    limit: str | None,
    stages: frozenset[str],
    extra_vars: tuple[str, ...],
    only_hosts: set[str] | None = None,
) -> Prepared:
    """Load and validate everything before any host is contacted (errors: exit 4)."""
    from machineroom.inventory import missing_key_files, select_hosts
    from machineroom.playbook.load import load_playbook, select_stages
    from machineroom.vars import parse_extra_vars

    playbook = load_playbook(playbook_path, roles_path=roles_path(playbook_path))
    if stages:
        playbook = select_stages(playbook, stages)
    values, sources = parse_extra_vars(list(extra_vars))
    inventory = workspace.inventory
    allowed = {h.id for h in select_hosts(inventory, limit)} if limit else None
    retired = workspace.retired_ids()
    play_hosts = []
    for play in playbook.plays:
        hosts = select_hosts(inventory, play.hosts) if play.hosts else []
        hosts = [
            h
            for h in hosts
            if (allowed is None or h.id in allowed)
            and h.id not in retired
            and (only_hosts is None or h.id in only_hosts)
        ]
        play_hosts.append(hosts)
    missing = missing_key_files({h.id: h for hs in play_hosts for h in hs}.values())
    if missing:
        raise InputErrors(missing)
    return Prepared(
        playbook, play_hosts, values, sources, str(Path(playbook_path).resolve().parent)
    )


@click.command("plan")
@playbook_options
@inventory_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "dot", "mermaid"]),
    default="text",
    show_default=True,
)
@click.option("--check", is_flag=True, help="Plan as for a check-mode run.")
def plan_command(
    playbook: str,
    limit: str | None,
    tags: tuple[str, ...],
    skip_tags: tuple[str, ...],
    stages: tuple[str, ...],
    extra_vars: tuple[str, ...],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    output_format: str,
    check: bool,
) -> None:
    """Show what PLAYBOOK would run on which hosts, without connecting to any."""
    from machineroom.plan import compile_plan, render_dot, render_json, render_mermaid, render_text

    workspace = make_workspace(inventory_paths, state_path)
    prepared = prepare(workspace, playbook, limit, _split(stages), extra_vars)
    plan = compile_plan(
        prepared.playbook,
        workspace.inventory,
        prepared.play_hosts,
        tags=_split(tags),
        skip_tags=_split(skip_tags),
        stages=_split(stages),
        extra_vars=prepared.extra_vars,
        check=check,
        playbook_dir=prepared.playbook_dir,
    )
    render = {
        "text": render_text,
        "json": render_json,
        "dot": render_dot,
        "mermaid": render_mermaid,
    }[output_format]
    click.echo(render(plan), nl=False)


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
def apply_command(
    playbook: str,
    limit: str | None,
    tags: tuple[str, ...],
    skip_tags: tuple[str, ...],
    stages: tuple[str, ...],
    extra_vars: tuple[str, ...],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    forks: int,
    connect_timeout: float,
    command_timeout: float | None,
    known_hosts: tuple[str, ...],
    accept_new_host_keys: bool,
    vault_password_file: str | None,
    ask_vault_password: bool,
    check: bool,
    diff: bool,
    resume: bool,
    as_json: bool,
    verbose: int,
) -> None:
    """Run PLAYBOOK on the inventory's hosts, in parallel, recording everything.

    Exit status: 0 ok, 2 a host failed, 3 a host was unreachable, 4 invalid input (nothing
    was contacted), 99 interrupted.
    """
    from machineroom.cli.servers import sync_servers
    from machineroom.connection.pool import ConnectionPool
    from machineroom.events import EventBus
    from machineroom.executor.hoststate import RunOptions, RunShared
    from machineroom.executor.play import run_playbook
    from machineroom.report import make_reporter
    from machineroom.state.recorder import StateRecorder
    from machineroom.templating import Templar

    workspace = make_workspace(inventory_paths, state_path)
    store = workspace.open_state()
    store.mark_interrupted_runs()
    start_stage: dict[str, str] = {}
    only_hosts = None
    if resume:
        pending = {r.id: r.next_action for r in store.servers() if r.next_action.get("stage")}
        start_stage = {host: str(action["stage"]) for host, action in pending.items()}
        only_hosts = set(pending)
    prepared = prepare(workspace, playbook, limit, _split(stages), extra_vars, only_hosts)
    if resume and not any(prepared.play_hosts):
        click.echo("nothing to resume: no host has a pending stage", err=True)
        store.close()
        return
    sync_servers(store, list(workspace.inventory.hosts.values()))
    run_id = store.start_run(
        "apply",
        " ".join(["machineroom", *(shlex.quote(a) for a in sys.argv[1:])]),
        args={
            "limit": limit,
            "tags": sorted(_split(tags)),
            "check": check,
            "diff": diff,
            "stages": sorted(_split(stages)),
            "resume": resume,
            "extra_vars": sorted(prepared.extra_vars),
        },
        playbook=playbook,
        inventory=",".join(workspace.inventory_paths),
        git_commit=git_commit(playbook),
    )
    for host in workspace.inventory.hosts.values():
        for secret in (host.password, host.become_password):
            if secret is not None and secret.kind == "plain":
                store.add_secret(secret.value)
    recorder = StateRecorder(store, run_id)
    reporter = make_reporter(as_json=as_json, verbosity=verbose, diff=diff)

    def audit(host: Host, result: Any) -> None:
        recorder.record_command(host.id, result)

    options = make_connect_options(
        workspace,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        known_hosts=known_hosts,
        accept_new_host_keys=accept_new_host_keys,
        vault_password_file=vault_password_file,
        ask_vault_password=ask_vault_password,
        on_command=audit,
    )
    pool = ConnectionPool(options, workspace.inventory.tunnels)
    bus = EventBus([recorder, reporter])
    shared = RunShared(
        options=RunOptions(
            check=check,
            diff=diff,
            forks=forks,
            tags=_split(tags),
            skip_tags=_split(skip_tags),
            extra_vars=prepared.extra_vars,
            extra_var_sources=prepared.extra_sources,
            stages=_split(stages),
            start_stage=start_stage,
            verbosity=verbose,
        ),
        inventory=workspace.inventory,
        pool=pool,
        bus=bus,
        templar=Templar(),
        decrypt=options.decrypt,
        playbook_dir=prepared.playbook_dir,
        server_res={r.id: r.res for r in store.servers()},
    )
    finished = None
    try:
        finished = run_playbook(prepared.playbook, prepared.play_hosts, shared, run_id)
    except KeyboardInterrupt:
        # a second Ctrl-C: stop at once, but leave the database consistent
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        reporter.close()
        recorder.abort()
        store.close()
        click.echo("\naborted: run marked interrupted", err=True)
        os._exit(ExitCode.INTERRUPTED)
    finally:
        if sys.exc_info()[0] is not KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the last writes land
            reporter.close()
            pool.close_all()
            recorder.close(unfinished_status="error")
            store.close()
    codes = {
        "ok": ExitCode.OK,
        "failed": ExitCode.HOSTS_FAILED,
        "unreachable": ExitCode.UNREACHABLE,
        "interrupted": ExitCode.INTERRUPTED,
    }
    assert finished is not None
    sys.exit(codes.get(finished.status, ExitCode.ERROR))
