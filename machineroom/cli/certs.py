"""`machineroom add-cert PATTERN`: the cert stage alone, with the workstation-side steps.

The cert role (roles/cert) installs a public key on hosts; what only the workstation can do
lives here: making the key pair when it is missing (ed25519, private key 600 in a 700 folder),
and proving afterwards that a login with that key alone works. Hosts whose `res` records an
installed key (`local_cert_path`) and whose inventory entry names no `ssh_key` connect with
that key (`with_recorded_keys`), so a host that only has a password in the inventory is reached
by key once its certificate is in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.context import (
    connection_options,
    inventory_options,
    make_workspace,
)
from machineroom.errors import ExitCode, InputError, MachineroomError

if TYPE_CHECKING:
    from machineroom.connection.base import ConnectOptions
    from machineroom.inventory.model import Host
    from machineroom.runs.connect import ConnectSettings

DEFAULT_PUBLIC_KEY = "~/.ssh/id_ed25519.pub"


def key_pair_paths(key: str | None) -> tuple[Path, Path]:
    """(private, public) key paths from `--key`: a `.pub` file or the private key beside it."""
    given = Path(os.path.expanduser(key or DEFAULT_PUBLIC_KEY))
    if given.suffix == ".pub":
        return given.with_suffix(""), given
    return given, given.with_name(given.name + ".pub")


def ensure_key_pair(private: Path, public: Path, comment: str) -> bool:
    """Make an ed25519 key pair at `private`/`public` unless the public key exists.

    The folder is created 700, the private key written 600 (OpenSSH format, no passphrase),
    the public key 644. A private key without its public half is refused rather than
    overwritten. Returns True when a pair was made.
    """
    if public.is_file():
        return False
    if private.exists():
        raise InputError(
            f"{private} exists but {public} does not: make the public key with "
            f"`ssh-keygen -y -f {private} > {public}`"
        )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = private.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)  # mkdir's mode is masked by the umask
    key = Ed25519PrivateKey.generate()
    private_text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_text = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_text)
    os.chmod(private, 0o600)
    public.write_bytes(public_text + b" " + comment.encode() + b"\n")
    os.chmod(public, 0o644)
    return True


def find_cert_role() -> Path:
    """roles/cert of the current project (the folder or its git top), else the one shipped
    beside the machineroom package."""
    from machineroom.runs.prepare import roles_path

    for folder in roles_path(str(Path.cwd() / "add-cert.yml")):
        if (Path(folder) / "cert" / "tasks").is_dir():
            return Path(folder) / "cert"
    shipped = Path(__file__).resolve().parents[2] / "roles" / "cert"
    if (shipped / "tasks").is_dir():
        return shipped
    raise InputError(f"no cert role: looked in ./roles/cert and {shipped}")


def write_playbook(folder: Path, pattern: str, role: Path) -> Path:
    """A one-play playbook running the cert role as a stage on `pattern`."""
    play = {
        "name": "add-cert",
        "hosts": pattern,
        "gather_facts": False,
        "stages": [{"role": str(role)}],
    }
    path = folder / "add-cert.yml"
    path.write_text(json.dumps([play], indent=2) + "\n")  # JSON is YAML
    return path


def verify_key_login(
    hosts: Sequence[Host], private: Path, options: ConnectOptions
) -> dict[str, str | None]:
    """Log in to each host with the key alone (no password, no agent) and run `true`.

    Returns host id -> None when the login worked, else the reason it did not.
    """
    from concurrent.futures import ThreadPoolExecutor

    from machineroom.connection.pool import open_connection

    key_only = dataclasses.replace(options, use_agent=False, on_command=None)

    def check(host: Host) -> str | None:
        probe = dataclasses.replace(host, password=None, ssh_key=str(private))
        try:
            conn = open_connection(probe, key_only)
        except MachineroomError as exc:
            return str(exc)
        try:
            result = conn.run("true")
            return None if result.exit_code == 0 else f"`true` exited {result.exit_code}"
        except MachineroomError as exc:
            return str(exc)
        finally:
            conn.close()

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
        return dict(zip((h.id for h in hosts), pool.map(check, hosts), strict=True))


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
    with tempfile.TemporaryDirectory(prefix="machineroom-add-cert-") as tmp:
        playbook = write_playbook(Path(tmp), pattern, find_cert_role())
        extra = json.dumps({"cert_public_key_path": str(public)})
        status = _run_cert_stage(
            workspace,
            str(playbook),
            extra,
            private,
            check=check,
            as_json=as_json,
            verbose=verbose,
            connect=connect,
        )
    sys.exit(status)


def _run_cert_stage(
    workspace: Any,
    playbook: str,
    extra: str,
    private: Path,
    *,
    check: bool,
    as_json: bool,
    verbose: int,
    connect: ConnectSettings,
) -> int:
    """Run the add-cert playbook as `apply` does, then verify key logins; the exit code."""
    from machineroom.cli.apply import finish
    from machineroom.executor.hoststate import RunOptions
    from machineroom.report import make_reporter
    from machineroom.runs.connect import connect_options
    from machineroom.runs.prepare import prepare
    from machineroom.runs.session import RunRecord, run_prepared

    store = workspace.open_state()
    store.mark_interrupted_runs()
    try:
        prepared = prepare(workspace, playbook, None, frozenset(), (extra,))
    except BaseException:
        store.close()
        raise
    hosts = prepared.play_hosts[0]
    if not hosts:
        click.echo("no hosts matched", err=True)
        store.close()
        return ExitCode.OK
    result = run_prepared(
        workspace,
        store,
        prepared,
        RunRecord(kind="add-cert", label="add-cert", args={"check": check, "key": str(private)}),
        RunOptions(
            check=check,
            forks=connect.forks,
            extra_vars=prepared.extra_vars,
            extra_var_sources=prepared.extra_sources,
            verbosity=verbose,
        ),
        connect,
        [make_reporter(as_json=as_json, verbosity=verbose, diff=False)],
    )
    code = finish(result)
    options = connect_options(workspace, connect)
    if check or code == ExitCode.INTERRUPTED:
        store.close()
        return code
    installed = {r.id for r in store.servers() if r.res.get("identity_cert_installed")}
    to_verify = [h for h in hosts if h.id in installed]
    failures = 0
    for host_id, problem in verify_key_login(to_verify, private, options).items():
        if problem is None:
            click.echo(f"{host_id}: key login ok ({private})", err=True)
            store.update_res(host_id, {"identity_cert_verified": True})
        else:
            failures += 1
            click.echo(f"{host_id}: key login FAILED: {problem}", err=True)
            store.update_res(
                host_id, {"identity_cert_installed": False, "identity_cert_verified": False}
            )
    store.close()
    if failures and code == ExitCode.OK:
        code = ExitCode.HOSTS_FAILED
    return int(code)
