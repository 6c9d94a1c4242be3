"""The workspace of a command: its inventory, state database and connection defaults.

Where things live when the user does not say:
- the inventory: `-i`, else $MACHINEROOM_INVENTORY, else `inventory.yml`, `inventories/`,
  `servers.txt` in the current folder;
- the state database: `--state`, else $MACHINEROOM_STATE, else `.machineroom/state.db` at the top
  of the inventory's git repository (or beside the inventory when it is not in one);
- the project's known_hosts: `.machineroom/known_hosts` beside the state database.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputError, MachineroomError, UsageError
from machineroom.runs.settings import Settings, current_settings

if TYPE_CHECKING:
    from machineroom.inventory.model import Host, Inventory, Secret
    from machineroom.state import StateStore

DEFAULT_INVENTORIES = ("inventory.yml", "inventory.yaml", "inventories", "servers.txt")


def _to_stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


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
    settings: Settings = field(default_factory=Settings)  # ansible.cfg, machineroom.yml, env
    known_hosts_file: str | None = None  # machineroom.yml's known_hosts
    # the playbook's folder, whose group_vars/ and host_vars/ count too (as in Ansible)
    playbook_dir: Path | None = None
    # where notes for the user go (skipped hosts...): stderr, or the CLI's coloured echo
    warn: Callable[[str], None] = field(default=_to_stderr, repr=False)

    @property
    def inventory(self) -> Inventory:
        """The loaded, validated inventory (loaded once), blanks filled by `host_defaults`."""
        if self._inventory is None:
            from machineroom.inventory import load_inventories

            # Key files are checked for the hosts a command works on (see `select`), so a
            # server list that names another workstation's keys still lists and validates.
            inventory = load_inventories(
                list(self.inventory_paths),
                check_key_files=False,
                var_dirs=(self.playbook_dir,) if self.playbook_dir else (),
            )
            if self.host_defaults != HostDefaults():
                hosts = {k: self.host_defaults.apply(h) for k, h in inventory.hosts.items()}
                inventory = dataclasses.replace(inventory, hosts=hosts)
            self._inventory = inventory
            self._inventory.register_secrets()
        return self._inventory

    def use_playbook_vars(self, playbook_path: str | Path) -> None:
        """Read group_vars/ and host_vars/ beside the playbook too, over the inventory's (the
        inventory is loaded again if it was already and the playbook's folder has them)."""
        folder = Path(playbook_path).resolve().parent
        has_vars = any((folder / name).is_dir() for name in ("group_vars", "host_vars"))
        wanted = folder if has_vars else None
        if wanted != self.playbook_dir:
            self.playbook_dir = wanted
            self._inventory = None

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
            self.warn(f"skipping retired: {', '.join(skipped)}")
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
    workspace = Workspace(
        inventory_paths=paths, state_path=state, host_defaults=defaults, settings=settings
    )
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


def sync_servers(store: StateStore, hosts: Iterable[Host]) -> None:
    """Write inventory hosts into `server_room` (never a plaintext password)."""
    for host in hosts:
        store.upsert_server(
            host.id,
            host.host,
            host.user or "",
            (host.password.reference() if host.password else None) or "",
            host.port,
            host.description,
        )
