"""Commands that reach hosts: run (ad-hoc batch command), connect (interactive ssh), scanports."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import TYPE_CHECKING

import click

from machineroom.cli.ansible_habits import login_options
from machineroom.cli.context import connection_options, inventory_options, make_workspace
from machineroom.errors import InputError, UsageError
from machineroom.runs.connect import ConnectSettings
from machineroom.runs.request import RunRequest
from machineroom.runs.settings import current_settings
from machineroom.runs.workspace import Workspace

if TYPE_CHECKING:
    from machineroom.inventory.model import Host, TunnelProfile


@click.command("run", context_settings={"ignore_unknown_options": False})
@click.argument("pattern")
@click.argument("command", nargs=-1)
@inventory_options
@connection_options
@click.option("-m", "--module-name", "module", help="Run this module (as `ansible -m`).")
@click.option("-a", "--args", "module_args", help="The module's arguments: k=v ... or JSON.")
@click.option("-C", "--check", is_flag=True, help="With -m: change nothing, say what would.")
@click.option("-D", "--diff", is_flag=True, help="With -m: show what changes.")
@click.option("-b", "--become", is_flag=True, help="Run the command through sudo.")
@click.option("--become-user", default="root", show_default=True)
@click.option("-K", "--ask-become-pass", is_flag=True, help="Ask for the sudo password once.")
@login_options
@click.option("-e", "--extra-vars", "extra_vars", multiple=True, help="With -m: variables.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document at the end.")
def run_command(
    pattern: str,
    command: tuple[str, ...],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    connect: ConnectSettings,
    module: str | None,
    module_args: str | None,
    check: bool,
    diff: bool,
    become: bool,
    become_user: str,
    ask_become_pass: bool,
    user: str | None,
    ask_pass: bool,
    private_key: str | None,
    extra_vars: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run COMMAND on every host matching PATTERN, in parallel: `run 'web:&prod' -- uptime`;
    or a module, as `ansible` does: `run all -m ping`, `run web -m copy -a "src=a dest=/b"`.

    Output is grouped per host (with -m: ansible's `host | CHANGED => {...}` lines). Exit
    status: 0 all ok, 2 a command failed somewhere, 3 a host was unreachable, 99
    interrupted. Every command lands in the audit log.
    """
    from machineroom.cli.apply import finish
    from machineroom.report.adhoc import CommandReporter, command_json, command_summary
    from machineroom.runs.adhoc import run_command as run_on_hosts
    from machineroom.runs.habits import login_defaults

    workspace = make_workspace(inventory_paths, state_path)
    workspace.host_defaults = login_defaults(
        workspace.host_defaults, user, private_key, ask_pass, ask_become_pass
    )
    if module or module_args:
        if command:
            raise UsageError("give either -m MODULE [-a ARGS] or -- COMMAND, not both")
        from machineroom.cli.adhoc_module import run_module

        sys.exit(
            run_module(
                workspace,
                pattern,
                module or "command",
                module_args,
                # as `ansible`: ansible.cfg's [privilege_escalation] become applies too
                become=become or bool(current_settings().get("become")),
                become_user=become_user,
                check=check,
                diff=diff,
                extra_vars=extra_vars,
                as_json=as_json,
                connect=connect,
            )
        )
    if not command:
        raise UsageError("nothing to run: give -- COMMAND, or -m MODULE [-a ARGS]")
    if check or diff:
        raise UsageError("--check and --diff go with -m MODULE (a raw command cannot be checked)")
    request = RunRequest(
        kind="run",
        target=pattern,
        command=" ".join(command) if len(command) > 1 else command[0],
        become=become,
        become_user=become_user,
        connect=connect,
    )
    reporter = [] if as_json else [CommandReporter()]
    result = run_on_hosts(request, workspace, reporter)
    hosts = result.data.get("hosts", {})
    if as_json:
        click.echo(command_json(result.run_id, result.status, hosts))
    else:
        click.echo("\n" + command_summary(hosts, result.run_id), err=True)
    sys.exit(finish(result))


@click.command("connect")
@click.argument("server_id")
@click.argument("remote_command", nargs=-1)
@inventory_options
@click.option("--known-hosts", "known_hosts", multiple=True, type=click.Path())
@click.option("--accept-new-host-keys", is_flag=True)
def connect_command(
    server_id: str,
    remote_command: tuple[str, ...],
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    known_hosts: tuple[str, ...],
    accept_new_host_keys: bool,
) -> None:
    """Open an interactive ssh session to SERVER_ID (through its jump host if it has one).

    Runs the OpenSSH client with the inventory's user, port, key and host-key files; anything
    after `--` is run instead of a shell.
    """
    from machineroom.runs.servers import connectable_host

    workspace = make_workspace(inventory_paths, state_path)
    host = connectable_host(workspace, server_id, remote_command)
    # ansible.cfg's host_key_checking = False: accept-new, as for every other command
    accept_new = accept_new_host_keys or bool(current_settings().get("accept_new_host_keys"))
    argv = ssh_argv(workspace, host, known_hosts, accept_new, remote_command)
    os.execvp(argv[0], argv)


def ssh_argv(
    workspace: Workspace,
    host: Host,
    known_hosts: tuple[str, ...],
    accept_new: bool,
    remote_command: tuple[str, ...],
) -> list[str]:
    """The OpenSSH command line that reaches `host` as the inventory describes it."""
    ssh = shutil.which("ssh")
    if ssh is None:
        raise UsageError("the OpenSSH client `ssh` is not installed")
    if host.connection == "local":
        return [os.environ.get("SHELL", "/bin/sh")] + (
            ["-c", " ".join(remote_command)] if remote_command else []
        )
    project_kh = workspace.project_known_hosts
    user_kh = os.path.expanduser("~/.ssh/known_hosts")
    files = [str(project_kh), *known_hosts, user_kh]
    argv = [
        ssh,
        "-p",
        str(host.port),
        "-o",
        "UserKnownHostsFile=" + _ssh_list(files),
        "-o",
        "StrictHostKeyChecking=" + ("accept-new" if accept_new else "yes"),
    ]
    if host.user:
        argv += ["-l", host.user]
    if host.ssh_key:
        argv += ["-i", os.path.expanduser(host.ssh_key), "-o", "IdentitiesOnly=yes"]
    if host.tunnel:
        profile = workspace.inventory.tunnels.get(host.tunnel)
        if profile is None:
            raise InputError(f"{host.id}: unknown tunnel profile '{host.tunnel}'", host.location)
        if profile.type.name != "SSH":
            raise UsageError(
                f"{host.id}: tunnel '{profile.name}' is {profile.type.value}; bring it up first, "
                "machineroom only drives SSH jump hosts"
            )
        argv += ["-o", "ProxyCommand=" + _jump_command(ssh, profile, files)]
    argv.append(host.host)
    if remote_command:
        argv += ["--", *remote_command]
    return argv


def _ssh_list(paths: list[str]) -> str:
    """A list of paths as ssh_config reads it: space-separated, double quotes around spaces."""
    return " ".join(f'"{p}"' if " " in p else p for p in paths)


def _jump_command(ssh: str, profile: TunnelProfile, known_hosts: list[str]) -> str:
    """`ssh -W` through the jump host, with its own user, port, key and host-key check.

    A ProxyCommand rather than `-J`: `-J` would not pass the jump host its own key file.
    """
    server, _, port = profile.server.partition(":")
    words = [
        ssh,
        "-W",
        "%h:%p",
        "-p",
        port or str(profile.port),
        "-o",
        "UserKnownHostsFile=" + _ssh_list(known_hosts),
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    if profile.user:
        words += ["-l", profile.user]
    if profile.ssh_key:
        words += ["-i", os.path.expanduser(profile.ssh_key), "-o", "IdentitiesOnly=yes"]
    # %h and %p are ssh's own tokens; every other word is quoted for the shell ssh runs it with
    return " ".join(w if w == "%h:%p" else shlex.quote(w) for w in [*words, server])


@click.command("scanports")
@click.argument("pattern", default="all")
@inventory_options
@click.option(
    "-p",
    "--ports",
    default=None,
    help="Ports to try, e.g. 22,80,8000-8100 [default: common service ports].",
)
@click.option(
    "--timeout",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds to wait for each connection.",
)
@click.option("--json", "as_json", is_flag=True)
def scanports_command(
    pattern: str,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    ports: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """TCP connect scan of the hosts matching PATTERN from this workstation; open ports go
    into each server's `res.ports`."""
    from machineroom.runs.servers import scan_open_ports

    workspace = make_workspace(inventory_paths, state_path)
    hosts, found = scan_open_ports(workspace, pattern, ports, timeout)
    if as_json:
        import json

        click.echo(json.dumps({h.id: found.get(h.id, []) for h in hosts}, indent=2))
        return
    for host in hosts:
        open_ports = found.get(host.id, [])
        click.echo(f"{host.id:<20} {host.host:<16} {', '.join(map(str, open_ports)) or '-'}")
