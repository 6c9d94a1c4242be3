"""`machineroom apply` (run a playbook) and `machineroom plan` (show what it would do)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from machineroom.cli.ansible_habits import (
    AnsibleHabits,
    ansible_playbook_options,
    describe_playbook,
)
from machineroom.cli.context import (
    Workspace,
    connection_options,
    inventory_options,
    make_connect_options,
    make_workspace,
)
from machineroom.errors import ExitCode, InputErrors, UsageError

if TYPE_CHECKING:
    from machineroom.connection.base import ConnectOptions
    from machineroom.executor.hoststate import RunOptions
    from machineroom.inventory.model import Host, Inventory
    from machineroom.playbook.model import Playbook
    from machineroom.state import StateStore

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
    server_res: dict[str, dict[str, Any]]
    vault_in_vars: bool = False  # some variable holds a vault value: decrypt as used


def roles_path(playbook: str) -> list[str]:
    """Where roles are looked for besides the playbook's own `roles/`: the folder above it
    (`playbooks/site.yml` -> `roles/`), the repository's top, the current folder."""
    from machineroom.cli.settings import current_settings

    folder = Path(playbook).resolve().parent
    configured = current_settings().get("roles_path") or []  # ansible.cfg, machineroom.yml
    candidates = [*(Path(p) for p in configured), folder.parent / "roles", Path.cwd() / "roles"]
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
    from machineroom.cli.context import with_recorded_keys
    from machineroom.cli.play_inputs import in_order, settle_plays, terminal_prompt
    from machineroom.executor.inventory_changes import changes_inventory
    from machineroom.inventory import missing_key_files, select_hosts
    from machineroom.playbook.deferred import warning_text
    from machineroom.playbook.load import load_playbook, select_stages
    from machineroom.vars import parse_extra_vars

    playbook = load_playbook(playbook_path, roles_path=roles_path(playbook_path))
    for warning in playbook.warnings:  # once per run, before any host (not once per host)
        click.secho(f"warning: {warning_text(warning)}", fg="yellow", err=True)
    if stages:
        playbook = select_stages(playbook, stages)
    values, sources = parse_extra_vars(list(extra_vars))
    playbook = settle_plays(playbook, values, terminal_prompt)  # vars_prompt, hosts templates
    inventory = workspace.inventory
    allowed = {h.id for h in select_hosts(inventory, limit)} if limit else None
    res = workspace.server_res()
    retired = workspace.retired_ids(res)
    play_hosts = []
    made_later = changes_inventory(playbook.plays)
    for play in playbook.plays:
        hosts = in_order(_play_hosts(inventory, play.hosts, made_later), play.order)
        hosts = [
            h
            for h in hosts
            if (allowed is None or h.id in allowed)
            and h.id not in retired
            and (only_hosts is None or h.id in only_hosts)
        ]
        if play.connection == "local":
            hosts = [dataclasses.replace(h, connection="local") for h in hosts]
        play_hosts.append(with_recorded_keys(hosts, res))
    missing = missing_key_files({h.id: h for hs in play_hosts for h in hs}.values())
    if missing:
        raise InputErrors(missing)
    return Prepared(
        playbook,
        play_hosts,
        values,
        sources,
        str(Path(playbook_path).resolve().parent),
        res,
        vault_in_vars=_uses_vault(inventory, playbook),
    )


def _pending_for(playbook: str, store: StateStore) -> dict[str, dict[str, Any]]:
    """The `next_action` of each host a run of `playbook` left pending. Hosts left pending
    by another playbook are not resumed by this one: its stages are not theirs."""
    wanted = os.path.realpath(playbook)
    pending, elsewhere = {}, {}
    for row in store.servers():
        action = row.next_action
        if not action.get("stage"):
            continue
        recorded = action.get("playbook")
        if recorded is None or recorded == wanted:  # no playbook: an older record
            pending[row.id] = action
        else:
            elsewhere[row.id] = str(recorded)
    if elsewhere and not pending:
        by_playbook: dict[str, list[str]] = {}
        for host, path in elsewhere.items():
            by_playbook.setdefault(path, []).append(host)
        where = "; ".join(
            f"{', '.join(sorted(hosts))} in {_shown_path(path)}"
            for path, hosts in sorted(by_playbook.items())
        )
        raise UsageError(
            f"--resume: no host is pending in {playbook}; hosts stopped in another playbook: "
            f"{where} (resume that one: machineroom apply PLAYBOOK --resume)"
        )
    if elsewhere:
        click.echo(
            f"not resumed here (pending in another playbook): {', '.join(sorted(elsewhere))}",
            err=True,
        )
    return pending


def _shown_path(path: str) -> str:
    """A recorded playbook path, relative to the current folder when it is below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _play_hosts(inventory: Inventory, pattern: str, made_later: bool = False) -> list[Host]:
    """The play's hosts; `localhost` is this workstation even when the inventory lacks it.
    `made_later`: add_host / group_by may make the hosts and groups the pattern names (then
    none now is no error: the run chooses them, executor/play.py `later_hosts`)."""
    from machineroom.errors import InputError
    from machineroom.inventory import select_hosts
    from machineroom.inventory.model import Host

    if not pattern:
        return []
    if pattern in ("localhost", "127.0.0.1") and pattern not in inventory.hosts:
        return [Host(id="localhost", host="127.0.0.1", connection="local", groups=("all",))]
    try:
        return select_hosts(inventory, pattern)
    except InputError:
        if made_later:
            return []
        raise


def _uses_vault(inventory: Inventory, playbook: Playbook) -> bool:
    """Whether any variable (inventory, play, role defaults and vars) holds a vault value."""
    from machineroom.playbook.load import iter_tasks
    from machineroom.vault import contains_vault

    if any(contains_vault(dict(h.vars)) for h in inventory.hosts.values()):
        return True
    for play in playbook.plays:
        if contains_vault(dict(play.vars)):
            return True
        roles = {id(t.role): t.role for s in play.stages for t in iter_tasks(s.items) if t.role}
        for role in roles.values():
            if contains_vault(dict(role.defaults)) or contains_vault(dict(role.vars)):
                return True
    return False


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
@ansible_playbook_options
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
    habits: AnsibleHabits,
) -> None:
    """Run PLAYBOOK on the inventory's hosts, in parallel, recording everything.

    Exit status: 0 ok, 2 a host failed, 3 a host was unreachable, 4 invalid input (nothing
    was contacted), 99 interrupted. ansible-playbook's flags work too (`-b`, `-K`, `-u`,
    `-k`, `--private-key`, `--start-at-task`, `--list-hosts`, `--list-tasks`, `--list-tags`,
    `--syntax-check`, `--force-handlers`, `--flush-cache`): see docs/cli.md.
    """
    from machineroom.executor.hoststate import RunOptions

    if habits.describes:
        describe_playbook(playbook, habits, inventory_paths, state_path, limit, tags, skip_tags)
        return
    if habits.flush_cache:
        click.echo(
            "--flush-cache: nothing to flush: machineroom keeps no fact cache (facts are "
            "gathered afresh in every run)",
            err=True,
        )
    workspace = make_workspace(inventory_paths, state_path)
    workspace.host_defaults = habits.host_defaults(workspace.host_defaults)
    store = workspace.open_state()
    store.mark_interrupted_runs()
    start_stage: dict[str, str] = {}
    only_hosts = None
    if resume:
        try:
            pending = _pending_for(playbook, store)
        except BaseException:
            store.close()
            raise
        start_stage = {host: str(action["stage"]) for host, action in pending.items()}
        only_hosts = set(pending)
    try:
        prepared = prepare(workspace, playbook, limit, _split(stages), extra_vars, only_hosts)
        prepared.playbook = habits.reshape(prepared.playbook)
    except BaseException:
        store.close()
        raise
    if resume and not any(prepared.play_hosts):
        click.echo("nothing to resume: no host has a pending stage", err=True)
        store.close()
        return
    code, _ = execute(
        workspace,
        store,
        prepared,
        kind="apply",
        playbook_label=playbook,
        args={
            "limit": limit,
            "tags": sorted(_split(tags)),
            "check": check,
            "diff": diff,
            "stages": sorted(_split(stages)),
            "resume": resume,
            "extra_vars": sorted(prepared.extra_vars),
        },
        run_options=RunOptions(
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
            **habits.run_options(),
        ),
        connect={
            "connect_timeout": connect_timeout,
            "command_timeout": command_timeout,
            "known_hosts": known_hosts,
            "accept_new_host_keys": accept_new_host_keys,
            "vault_password_file": vault_password_file,
            "ask_vault_password": ask_vault_password,
        },
        as_json=as_json,
    )
    store.close()
    sys.exit(code)


def execute(
    workspace: Workspace,
    store: StateStore,
    prepared: Prepared,
    *,
    kind: str,
    playbook_label: str,
    args: dict[str, Any],
    run_options: RunOptions,
    connect: dict[str, Any],
    as_json: bool = False,
    reporter: Any = None,
) -> tuple[int, ConnectOptions]:
    """Run a prepared playbook as `apply` does: recorded, reported, Ctrl-C safe.

    Returns the exit code and the connection settings used (callers may connect again).
    Ctrl-C, SIGTERM or SIGHUP stop the run (commands on hosts killed, exit 99); a second one
    ends the process at once, after marking the run interrupted. A state write that fails
    stops the run too: the error is printed and the exit code is 1.
    """
    from machineroom.cli.servers import sync_servers
    from machineroom.cli.stops import held, ignore_stops, stop_reason
    from machineroom.connection.pool import ConnectionPool
    from machineroom.events import EventBus
    from machineroom.executor.hoststate import RunShared
    from machineroom.executor.play import run_playbook
    from machineroom.report import make_reporter
    from machineroom.state.recorder import StateRecorder
    from machineroom.templating import Templar

    sync_servers(store, list(workspace.inventory.hosts.values()))
    run_id = store.start_run(
        kind,
        " ".join(["machineroom", *(shlex.quote(a) for a in sys.argv[1:])]),
        args=args,
        playbook=playbook_label,
        inventory=",".join(workspace.inventory_paths),
        git_commit=git_commit(prepared.playbook.path),
    )
    running: list[RunShared] = []  # the run, once it exists: a failed write stops it

    def stop_on_write_error(message: str) -> None:
        # results would go unrecorded from now on: stop rather than carry on blind
        for shared in running:
            shared.stop_run(error=message)

    recorder = StateRecorder(
        store,
        run_id,
        check=run_options.check,
        playbook=os.path.realpath(prepared.playbook.path),
        on_error=stop_on_write_error,
    )
    recorder.stop_reason = stop_reason
    if reporter is None:  # `run -m` brings its own (ansible's ad-hoc layout)
        reporter = make_reporter(
            as_json=as_json, verbosity=run_options.verbosity, diff=run_options.diff
        )
    options = make_connect_options(
        workspace,
        **connect,
        on_command=lambda host, result: audit(host, result),
    )

    def audit(host: Host, result: Any) -> None:
        if host.id in shared.quiet_hosts:  # a no_log task: that it ran, not what or its output
            result = dataclasses.replace(
                result, command="(hidden: no_log)", stdout="(hidden: no_log)", stderr=""
            )
        recorder.record_command(host.id, result)

    pool = ConnectionPool(options, workspace.inventory.tunnels)
    shared = RunShared(
        options=run_options,
        inventory=workspace.inventory,
        pool=pool,
        bus=EventBus([recorder, reporter]),
        templar=Templar(),
        decrypt=options.decrypt,  # every value it decrypts is masked from then on (vault.py)
        playbook_dir=prepared.playbook_dir,
        server_res=prepared.server_res,
        vault_in_vars=prepared.vault_in_vars,
    )
    running.append(shared)
    if recorder.failure is not None:
        shared.stop_run(error=recorder.failure)  # failed before the run existed
    finished = None
    try:
        finished = run_playbook(prepared.playbook, prepared.play_hosts, shared, run_id)
    except KeyboardInterrupt:
        # a second stop signal: stop at once, but leave the database consistent
        ignore_stops()
        reporter.close()
        recorder.abort()
        store.close()
        click.echo("\naborted: run marked interrupted", err=True)
        os._exit(ExitCode.INTERRUPTED)
    finally:
        if sys.exc_info()[0] is not KeyboardInterrupt:
            with held():  # let the last writes land
                reporter.close()
                pool.close_all()
                recorder.close(unfinished_status="error")
    assert finished is not None
    if recorder.failure is not None:
        click.echo(f"error: {recorder.failure}", err=True)
        if not recorder.end_recorded:
            click.echo(
                f"error: run {run_id} is still marked 'running' in {store.path}: the next "
                f"machineroom command that can write there marks it interrupted",
                err=True,
            )
        return int(ExitCode.ERROR), options
    if finished.status == "interrupted":
        click.echo(stop_reason(), err=True)
    codes = {
        "ok": ExitCode.OK,
        "failed": ExitCode.HOSTS_FAILED,
        "unreachable": ExitCode.UNREACHABLE,
        "interrupted": ExitCode.INTERRUPTED,
    }
    return int(codes.get(finished.status, ExitCode.ERROR)), options
