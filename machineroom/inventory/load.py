"""Load inventories by what they are, merge several, and check what only a whole can show.

A folder is read through the first of `FOLDER_FILES` it holds. A file's format is chosen by
`inventory_format`: its extension (`.yml`/`.yaml` YAML, `.ini`/`.cfg` INI, `.txt` server list),
else its first line that is not blank or a comment: `---` or `name:` is YAML, a `[section]` or
a first word without `--` (a host, maybe with `key=value` variables) is INI, and a `--`
separated line is a server list.
After loading: duplicate server ids (across files too), ports out of range, unknown tunnel
profiles, missing key files, a group named like a host, and group cycles are InputErrors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import MappingProxyType

from machineroom.errors import InputError, InputErrors, Location, did_you_mean
from machineroom.inventory.ini_inventory import load_ini_inventory
from machineroom.inventory.model import Group, Host, Inventory, TunnelProfile
from machineroom.inventory.serverlist import load_server_list
from machineroom.inventory.yaml_inventory import find_group_cycle, load_yaml_inventory
from machineroom.yamlio import file_present, read_text, unreadable

FOLDER_FILES = (
    "hosts.yml",
    "hosts.yaml",
    "inventory.yml",
    "inventory.yaml",
    "hosts.ini",
    "inventory.ini",
    "hosts",
    "servers.txt",
)
YAML_SUFFIXES = (".yml", ".yaml")
INI_SUFFIXES = (".ini", ".cfg")
_YAML_KEY = re.compile(r"^[\w.-]+:\s*(#.*)?$")


def inventory_format(path: Path) -> str:
    """'yaml', 'ini' or 'serverlist': by extension, else by the first meaningful line."""
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in INI_SUFFIXES:
        return "ini"
    if suffix == ".txt":  # the MachineRoom document's servers.txt
        return "serverlist"
    for raw in read_text(path).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue  # server-list tunnel profiles are `#` lines too: they decide nothing
        if line.startswith("---") or _YAML_KEY.match(line):
            return "yaml"
        if line.startswith("["):
            return "ini"
        # a server-list line starts `id--host--...`; an INI host line `name key=value ...`
        return "serverlist" if "--" in line.split()[0] else "ini"
    return "serverlist"


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError as exc:  # a folder we may not look in: say so rather than crash
        raise unreadable(path, exc) from None


def _read(path: Path, var_dirs: Sequence[Path] = ()) -> Inventory:
    if _is_folder(path):
        for name in FOLDER_FILES:
            if file_present(path / name):
                return _read(path / name, var_dirs)
        raise InputError(
            "no inventory in this folder", Location(str(path)), "one of: " + ", ".join(FOLDER_FILES)
        )
    if not file_present(path):
        raise InputError("inventory not found", Location(str(path)), "an inventory file or folder")
    kind = inventory_format(path)
    if kind == "yaml":
        return load_yaml_inventory(path, var_dirs)
    if kind == "ini":
        return load_ini_inventory(path, var_dirs)
    return load_server_list(path)


def load_inventory(path: str | Path, *, check_key_files: bool = True) -> Inventory:
    """Load one inventory file or folder, then check it (see `check_inventory`)."""
    inventory = _read(Path(path))
    check_inventory(inventory, check_key_files=check_key_files)
    return inventory


def load_inventories(
    paths: Sequence[str | Path],
    *,
    check_key_files: bool = True,
    var_dirs: Sequence[Path] = (),
) -> Inventory:
    """Load several inventories (`-i a -i b`) as one; a host id may be defined only once.

    Each file's group variables apply to that file's hosts; groups of the same name are
    joined (members and children); tunnel profiles are shared by all files. `var_dirs`
    (a playbook's folder) hold more group_vars/ and host_vars/, read after each file's own.
    """
    if not paths:
        raise InputError(
            "no inventory given", expected="-i FILE (a YAML or INI inventory, or a server list)"
        )
    parts = [_read(Path(p), var_dirs) for p in paths]
    merged = parts[0] if len(parts) == 1 else merge_inventories(parts)
    check_inventory(merged, check_key_files=check_key_files)
    return merged


def _where(location: Location | None) -> str:
    if location is None:
        return "elsewhere"
    return f"{location.file}:{location.line}" if location.line else location.file


def merge_inventories(parts: Sequence[Inventory]) -> Inventory:
    """One inventory from several; a host or tunnel defined twice is an error naming both."""
    errors: list[InputError] = []
    hosts: dict[str, Host] = {}
    tunnels: dict[str, TunnelProfile] = {}
    groups: dict[str, Group] = {}
    for part in parts:
        for host in part.hosts.values():
            if host.id in hosts:
                first = _where(hosts[host.id].location)
                errors.append(
                    InputError(
                        f"duplicate server id '{host.id}' (first at {first})",
                        host.location,
                        "each server id once",
                    )
                )
                continue
            hosts[host.id] = host
        for tunnel in part.tunnels.values():
            if tunnel.name in tunnels:
                first = _where(tunnels[tunnel.name].location)
                errors.append(
                    InputError(
                        f"duplicate tunnel profile '{tunnel.name}' (first at {first})",
                        tunnel.location,
                    )
                )
                continue
            tunnels[tunnel.name] = tunnel
        for group in part.groups.values():
            before = groups.get(group.name)
            if before is None:
                groups[group.name] = group
                continue
            groups[group.name] = Group(
                name=group.name,
                hosts=before.hosts + tuple(h for h in group.hosts if h not in before.hosts),
                children=before.children
                + tuple(c for c in group.children if c not in before.children),
                vars=MappingProxyType({**before.vars, **group.vars}),
                location=before.location,
            )
    if errors:
        raise InputErrors(errors)
    return Inventory(
        source=", ".join(p.source for p in parts),
        hosts=MappingProxyType(hosts),
        groups=MappingProxyType(groups),
        tunnels=MappingProxyType(tunnels),
        warnings=tuple(w for p in parts for w in p.warnings),
    )


def _key_exists(path: str) -> bool:
    return Path(os.path.expanduser(path)).is_file()


def missing_key_files(hosts: Iterable[Host]) -> list[InputError]:
    """An error for each host whose `ssh_key` names a file that does not exist."""
    return [
        InputError(
            f"host '{host.id}': key file {host.ssh_key} does not exist",
            host.field_locations.get("ssh_key", host.location),
            "the path of a private key file",
        )
        for host in hosts
        if host.ssh_key and not _key_exists(host.ssh_key)
    ]


def check_inventory(inventory: Inventory, *, check_key_files: bool = True) -> None:
    """The checks that need the whole inventory; all problems are raised together."""
    errors: list[InputError] = []
    for host in inventory.hosts.values():
        here = host.field_locations
        if not 1 <= host.port <= 65535:
            errors.append(
                InputError(
                    f"host '{host.id}': port {host.port} is out of range",
                    here.get("port", host.location),
                    "an integer 1-65535",
                )
            )
        if host.tunnel is not None and host.tunnel not in inventory.tunnels:
            known = ", ".join(inventory.tunnels) or "none defined"
            errors.append(
                InputError(
                    f"host '{host.id}': unknown tunnel profile '{host.tunnel}'"
                    + did_you_mean(host.tunnel, inventory.tunnels),
                    here.get("tunnel", host.location),
                    f"one of the tunnel profiles ({known})",
                )
            )
        if check_key_files:
            errors.extend(missing_key_files([host]))
        if host.id in inventory.groups:
            group = inventory.groups[host.id]
            errors.append(
                InputError(
                    f"'{host.id}' is both a host and a group (group at {_where(group.location)})",
                    host.location,
                    "distinct names for hosts and groups",
                )
            )
    for tunnel in inventory.tunnels.values():
        if check_key_files and tunnel.ssh_key and not _key_exists(tunnel.ssh_key):
            errors.append(
                InputError(
                    f"tunnel '{tunnel.name}': key file {tunnel.ssh_key} does not exist",
                    tunnel.location,
                    "the path of a private key file",
                )
            )
    cycle = find_group_cycle({name: g.children for name, g in inventory.groups.items()})
    if cycle:
        errors.append(
            InputError(
                "group cycle: " + " -> ".join(cycle),
                inventory.groups[cycle[0]].location,
                "children that never lead back to a parent",
            )
        )
    if errors:
        raise InputErrors(errors)
