"""Options shared by commands, and turning them into an inventory, a state store, a pool.

Where things live when the user does not say:
- the inventory: `-i`, else $MACHINEROOM_INVENTORY, else `inventory.yml`, `inventories/`,
  `servers.txt` in the current folder;
- the state database: `--state`, else $MACHINEROOM_STATE, else `.machineroom/state.db` at the top
  of the inventory's git repository (or beside the inventory when it is not in one);
- the project's known_hosts: `.machineroom/known_hosts` beside the state database.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from machineroom.cli.settings import Settings, current_settings, default_of
from machineroom.errors import InputError, MachineroomError, UsageError

if TYPE_CHECKING:
    from machineroom.connection.base import ConnectOptions
    from machineroom.connection.pool import ConnectionPool
    from machineroom.inventory.model import Host, Inventory, Secret
    from machineroom.state import StateStore

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_INVENTORIES = ("inventory.yml", "inventory.yaml", "inventories", "servers.txt")


def inventory_options(func: F) -> F:
    """`-i/--inventory` (repeatable) and `--state`."""
    func = click.option(
        "--state",
        "state_path",
        type=click.Path(dir_okay=False),
        envvar="MACHINEROOM_STATE",
        help="State database file [default: .machineroom/state.db in the inventory's repo].",
    )(func)
    func = click.option(
        "-i",
        "--inventory",
        "inventory_paths",
        multiple=True,
        type=click.Path(),
        help="Inventory file or folder (YAML, INI or server list); repeatable.",
    )(func)
    return func


def connection_options(func: F) -> F:
    """Host-key, timeout, vault and parallelism options of commands that connect."""
    options = [
        click.option(
            "-f",
            "--forks",
            type=click.IntRange(1, 1000),
            default=lambda: default_of("forks", 50),
            help="Hosts worked on at once [default: 50, or forks in machineroom.yml, "
            "$ANSIBLE_FORKS, ansible.cfg].",
        ),
        click.option(
            "-T",
            "--connect-timeout",
            type=float,
            default=lambda: float(default_of("connect_timeout", 10.0)),
            help="Seconds to wait for a host's SSH handshake [default: 10, or ansible.cfg's "
            "timeout].",
        ),
        click.option(
            "--timeout",
            "command_timeout",
            type=float,
            default=lambda: default_of("command_timeout", None),
            help="Seconds a remote command may run.",
        ),
        click.option(
            "--known-hosts",
            "known_hosts",
            multiple=True,
            type=click.Path(),
            help="Extra known_hosts file to trust; repeatable.",
        ),
        click.option(
            "--accept-new-host-keys",
            is_flag=True,
            help="Record first-seen host keys (a changed key is still refused).",
        ),
        click.option(
            "--vault-password-file",
            type=click.Path(dir_okay=False),
            default=_vault_file_default,
            callback=_remember_vault_option,
            help="File whose first line is the vault password (an executable: its output).",
        ),
        click.option(
            "--ask-vault-password",
            "--ask-vault-pass",
            "-J",
            is_flag=True,
            default=lambda: bool(default_of("ask_vault_pass", False)),
            callback=_remember_vault_option,
            help="Prompt for the vault password.",
        ),
        click.option(
            "--vault-id",
            "vault_ids",
            multiple=True,
            expose_value=False,
            default=lambda: tuple(default_of("vault_identity_list", ())),
            callback=_remember_vault_option,
            help="[LABEL@]FILE or LABEL@prompt: one more vault password (as ansible's); "
            "repeatable [default: ansible.cfg's vault_identity_list].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True)
class HostDefaults:
    """Connection settings for hosts whose inventory entry does not give them (ansible.cfg's
    remote_user and private_key_file, `-u`, `--private-key`, `-k`, `-K`): as in Ansible, what
    the inventory says about a host wins."""

    user: str | None = None
    ssh_key: str | None = None
    password: Secret | None = None
    become_password: Secret | None = None

    def apply(self, host: Host) -> Host:
        """`host` with the blanks these defaults fill filled."""
        if host.connection != "ssh":
            return host
        return dataclasses.replace(
            host,
            user=host.user or self.user,
            ssh_key=host.ssh_key or self.ssh_key,
            password=host.password or self.password,
            become_password=host.become_password or self.become_password,
        )


@dataclass
class Workspace:
    """The inventory, state database and connection settings one command works with."""

    inventory_paths: tuple[str, ...]
    state_path: str
    _inventory: Inventory | None = field(default=None, repr=False)
    host_defaults: HostDefaults = field(default_factory=HostDefaults)
    known_hosts_file: str | None = None  # machineroom.yml's known_hosts

    @property
    def inventory(self) -> Inventory:
        """The loaded, validated inventory (loaded once), blanks filled by `host_defaults`."""
        if self._inventory is None:
            from machineroom.inventory import load_inventories

            # Key files are checked for the hosts a command works on (see `select`), so a
            # server list that names another workstation's keys still lists and validates.
            inventory = load_inventories(list(self.inventory_paths), check_key_files=False)
            if self.host_defaults != HostDefaults():
                hosts = {k: self.host_defaults.apply(h) for k, h in inventory.hosts.items()}
                inventory = dataclasses.replace(inventory, hosts=hosts)
            self._inventory = inventory
            self._inventory.register_secrets()
        return self._inventory

    @property
    def project_dir(self) -> Path:
        """The folder that holds `.machineroom/` (state db and project known_hosts)."""
        return Path(self.state_path).parent

    @property
    def project_known_hosts(self) -> str:
        """The project's known_hosts: machineroom.yml's, else beside the state database."""
        return self.known_hosts_file or str(self.project_dir / "known_hosts")

    def open_state(self) -> StateStore:
        """Open (creating and migrating) the state database."""
        from machineroom.state import open_state

        return open_state(self.state_path)

    def server_res(self) -> dict[str, dict[str, Any]]:
        """Each known server's `res` (what stages and scans recorded)."""
        store = self.open_state()
        try:
            return {row.id: row.res for row in store.servers()}
        finally:
            store.close()

    def retired_ids(self, res: dict[str, dict[str, Any]] | None = None) -> set[str]:
        """Ids of the servers `machineroom retire` took out of service."""
        res = self.server_res() if res is None else res
        return {server for server, values in res.items() if values.get("retired")}

    def select(self, pattern: str, include_retired: bool = False) -> list[Host]:
        """Hosts matching an Ansible-style pattern, without retired ones unless asked."""
        from machineroom.errors import InputErrors
        from machineroom.inventory import missing_key_files, select_hosts

        hosts = select_hosts(self.inventory, pattern)
        missing = missing_key_files(hosts)
        if missing:
            raise InputErrors(missing)
        res = self.server_res()
        hosts = with_recorded_keys(hosts, res)
        if include_retired:
            return hosts
        retired = self.retired_ids(res)
        skipped = [h.id for h in hosts if h.id in retired]
        if skipped:
            click.echo(f"skipping retired: {', '.join(skipped)}", err=True)
        return [h for h in hosts if h.id not in retired]


def with_recorded_keys(
    hosts: Iterable[Host], res_by_id: Mapping[str, Mapping[str, Any]]
) -> list[Host]:
    """The hosts, each without an `ssh_key` of its own given the key its `res` records.

    A host takes `res.local_cert_path` when the cert stage recorded
    `identity_cert_installed` and the key file exists on this workstation; the inventory's
    password stays as the fallback (paramiko tries keys before the password).
    """
    result = []
    for host in hosts:
        res = res_by_id.get(host.id, {})
        path = res.get("local_cert_path")
        if (
            not host.ssh_key
            and host.connection == "ssh"
            and res.get("identity_cert_installed")
            and isinstance(path, str)
            and os.path.isfile(os.path.expanduser(path))
        ):
            host = dataclasses.replace(host, ssh_key=path)
        result.append(host)
    return result


def find_inventory_paths(given: tuple[str, ...]) -> tuple[str, ...]:
    """The inventory paths to load: as given, else from the environment ($MACHINEROOM_INVENTORY,
    $ANSIBLE_INVENTORY), machineroom.yml, ansible.cfg, else the defaults."""
    if given:
        return given
    env = os.environ.get("MACHINEROOM_INVENTORY")
    if env:
        return tuple(p for p in env.split(os.pathsep) if p)
    configured = current_settings(given).get("inventory")
    if configured:
        return tuple(configured)
    for candidate in DEFAULT_INVENTORIES:
        if Path(candidate).exists():
            return (candidate,)
    raise UsageError(
        "no inventory: pass -i FILE (or set MACHINEROOM_INVENTORY); looked for "
        + ", ".join(DEFAULT_INVENTORIES)
    )


def default_state_path(inventory_path: str) -> str:
    """`.machineroom/state.db` at the top of the inventory's git repo, else beside it."""
    where = Path(inventory_path).resolve()
    folder = where if where.is_dir() else where.parent
    try:
        top = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if top.returncode == 0 and top.stdout.strip():
            folder = Path(top.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # no git: the inventory's own folder will do
    return str(folder / ".machineroom" / "state.db")


def make_workspace(
    inventory_paths: tuple[str, ...], state_path: str | None, need_inventory: bool = True
) -> Workspace:
    """Resolve the inventory and state paths of a command."""
    try:
        paths = find_inventory_paths(inventory_paths)
    except UsageError:
        if need_inventory or not state_path:
            raise
        paths = ()
    settings = current_settings(inventory_paths)
    state = state_path or settings.get("state") or default_state_path(paths[0])
    defaults = HostDefaults(
        user=settings.get("remote_user"),
        ssh_key=settings.get("private_key_file"),
        password=_password_from(settings, "connection_password_file"),
        become_password=_password_from(settings, "become_password_file"),
    )
    workspace = Workspace(inventory_paths=paths, state_path=state, host_defaults=defaults)
    if settings.get("known_hosts"):
        workspace.known_hosts_file = str(settings.get("known_hosts"))
    return workspace


def _password_from(settings: Settings, name: str) -> Secret | None:
    """ansible.cfg's connection_password_file / become_password_file: the file's first line
    (a file others can read is refused, as vault password files are)."""
    from machineroom.inventory.model import Secret
    from machineroom.masking import add_secret
    from machineroom.vault import read_vault_password

    path = settings.get(name)
    if not path:
        return None
    try:
        password = read_vault_password(str(path), env=None)
    except MachineroomError as exc:
        raise InputError(f"{settings.source(name)}: {name}: {exc}") from None
    add_secret(password)
    return Secret("plain", password)


def make_connect_options(
    workspace: Workspace,
    *,
    connect_timeout: float,
    command_timeout: float | None,
    known_hosts: tuple[str, ...],
    accept_new_host_keys: bool,
    vault_password_file: str | None,
    ask_vault_password: bool,
    on_command: Any = None,
) -> ConnectOptions:
    """Connection settings: host keys from the project's and the user's files, vault unlock."""
    from machineroom.connection.base import ConnectOptions

    project_kh = workspace.project_known_hosts
    user_kh = str(Path.home() / ".ssh" / "known_hosts")
    files = (project_kh, *known_hosts, user_kh)
    # ansible.cfg's host_key_checking = False: record first-seen keys, never skip the check
    accept_new = accept_new_host_keys or bool(current_settings().get("accept_new_host_keys"))
    return ConnectOptions(
        known_hosts_files=files,
        project_known_hosts=project_kh,
        accept_new_host_keys=accept_new,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        decrypt=make_decrypt(vault_password_file, ask_vault_password),
        on_command=on_command,
    )


def audited_pool(
    workspace: Workspace,
    store: StateStore,
    run_id: int,
    *,
    label: str | None = None,
    **connect: Any,
) -> tuple[ConnectionPool, ConnectOptions]:
    """A connection pool whose every command lands in the audit log of run `run_id`.

    `connect` holds the `connection_options` values. `label` stands in for the command
    text and its output when those are a long built-in script (facts, scan-docker); the
    exit code, duration and stderr are kept either way.
    """
    from machineroom.connection.pool import ConnectionPool

    def audit(host: Host, result: Any) -> None:
        if label is None:
            store.record_command(
                run_id,
                host.id,
                result.command,
                result.exit_code,
                result.duration,
                result.stdout,
                result.stderr,
            )
        else:
            store.record_command(
                run_id, host.id, label, result.exit_code, result.duration, "", result.stderr
            )

    options = make_connect_options(workspace, **connect, on_command=audit)
    return ConnectionPool(options, workspace.inventory.tunnels), options


def _remember_vault_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Record the vault password source before anything loads: whole-file vaults in
    group_vars/ or vars_files are decrypted while the inventory and playbook are read."""
    from machineroom.vault import set_password_source

    # Both options are parsed before the command runs; each callback sees the other's value
    # once it has been parsed (or its default), so the last call holds both.
    if param.name == "vault_ids":  # not a command argument: kept beside them
        ctx.meta["vault_ids"] = tuple(value)
    params = {**ctx.params, param.name or "": value}
    set_password_source(
        params.get("vault_password_file"),
        bool(params.get("ask_vault_password")),
        _prompt_password,
        ctx.meta.get("vault_ids", ()),
    )
    return value


def _vault_file_default() -> str | None:
    """--vault-password-file when not given: $MACHINEROOM_VAULT_PASSWORD wins (vault.py reads
    it), else machineroom.yml's, $ANSIBLE_VAULT_PASSWORD_FILE or ansible.cfg's file."""
    from machineroom.vault import PASSWORD_ENV

    if os.environ.get(PASSWORD_ENV):
        return None
    value = default_of("vault_password_file", None)
    return None if value is None else str(value)


def make_decrypt(password_file: str | None, ask: bool) -> Callable[[str], str]:
    """A `decrypt` callable that asks for the vault password only when first needed (once
    per process: files decrypted while loading share the key)."""

    def decrypt(ciphertext: str) -> str:
        from machineroom.vault import recorded_vault_ids, shared_key

        key = shared_key(password_file, ask, _prompt_password, recorded_vault_ids())
        result: str = key.decrypt(ciphertext)
        return result

    return decrypt


def _prompt_password(message: str) -> str:
    if not os.isatty(0):
        raise InputError("a vault password is needed and stdin is not a terminal")
    return getpass.getpass(message)
