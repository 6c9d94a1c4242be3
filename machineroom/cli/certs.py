"""`machineroom add-cert PATTERN`: the cert stage alone, with the workstation-side steps
(runs/certs.py): options, messages and the exit code."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from machineroom.cli.context import (
    connection_options,
    inventory_options,
    make_workspace,
)
from machineroom.errors import ExitCode
from machineroom.runs.certs import DEFAULT_PUBLIC_KEY, ensure_key_pair, key_pair_paths

if TYPE_CHECKING:
    from pathlib import Path

    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.workspace import Workspace


@click.command("add-cert")
@click.argument("pattern")
@click.option(
    "--key",
    "key",
    type=click.Path(dir_okay=False),
    help=f"Public key to install (or its private key) [default: {DEFAULT_PUBLIC_KEY}]; "
    "an ed25519 pair is generated when it is missing.",
)
@inventory_options
@connection_options
@click.option("-C", "--check", is_flag=True, help="Change nothing; report what would change.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout at the end.")
@click.option("-v", "--verbose", count=True, help="More output (-v ok tasks, -vv command output).")
def add_cert_command(
    pattern: str,
    key: str | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    connect: ConnectSettings,
    check: bool,
    as_json: bool,
    verbose: int,
) -> None:
    """Install the workstation's public key on the hosts matching PATTERN (the cert stage).

    Makes the key pair when missing, runs roles/cert with the inventory's credentials
    (password or a key), then logs in with the key alone to prove it works. Later runs
    connect by key. Exit status as for `apply`; 2 also when a key login failed.
    """
    private, public = key_pair_paths(key)
    if not public.is_file() and check:
        click.echo(f"would generate the key pair {private} (ed25519); nothing to check", err=True)
        return
    import getpass
    import socket

    if ensure_key_pair(private, public, f"{getpass.getuser()}@{socket.gethostname()}"):
        click.echo(f"generated {private} and {public} (ed25519)", err=True)
    workspace = make_workspace(inventory_paths, state_path)
    sys.exit(
        _run_cert_stage(
            workspace,
            pattern,
            private,
            public,
            check=check,
            as_json=as_json,
            verbose=verbose,
            connect=connect,
        )
    )


def _run_cert_stage(
    workspace: Workspace,
    pattern: str,
    private: Path,
    public: Path,
    *,
    check: bool,
    as_json: bool,
    verbose: int,
    connect: ConnectSettings,
) -> int:
    """Run add-cert (as `apply` runs a playbook), report the key logins; the exit code."""
    from machineroom.cli.apply import finish
    from machineroom.report import make_reporter
    from machineroom.runs.certs import add_cert

    done = add_cert(
        workspace,
        pattern,
        private,
        public,
        connect,
        [make_reporter(as_json=as_json, verbosity=verbose, diff=False)],
        check=check,
        verbosity=verbose,
    )
    if not done.matched:
        click.echo("no hosts matched", err=True)
        return ExitCode.OK
    code = finish(done.result)
    for host_id, problem in done.logins.items():
        if problem is None:
            click.echo(f"{host_id}: key login ok ({private})", err=True)
        else:
            click.echo(f"{host_id}: key login FAILED: {problem}", err=True)
    if done.failed_logins and code == ExitCode.OK:
        code = ExitCode.HOSTS_FAILED
    return int(code)
