"""The YAML inventory: Ansible's YAML inventory shape, plus a top-level `tunnels:` mapping.

Groups nest under `children`, hosts sit under `hosts`, variables under `vars`; a host may be
listed under several groups; `group_vars/` and `host_vars/` beside the file add variables.
Per host, the fields `host`, `user`, `password`, `port`, `ssh_key`, `description`, `tunnel`,
`become_password` and `connection` (or their Ansible names, `ansible_host`, ...) become the
Host's attributes; everything else is a variable. Fields and variables are resolved once, here,
in Ansible's order (later wins): `all` in the file, `group_vars/all`, the other groups in the
file, their `group_vars/` files (groups ordered by depth, then name), the host in the file, its
`host_vars/` file. `Host.var_sources` says where each value came from.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from machineroom.errors import InputError, InputErrors, Location, did_you_mean
from machineroom.inventory.model import (
    Group,
    Host,
    Inventory,
    InventoryWarning,
    Secret,
    TunnelProfile,
    TunnelType,
)
from machineroom.inventory.serverlist import parse_password, plaintext_warning
from machineroom.schema import validate
from machineroom.yamlio import (
    EnvTagged,
    LocatedDict,
    LocatedList,
    LocatedStr,
    VaultTagged,
    file_present,
    key_location_of,
    load_yaml,
    location_of,
    unreadable,
)

FIELDS = (
    "host",
    "user",
    "password",
    "port",
    "ssh_key",
    "description",
    "tunnel",
    "become_password",
    "connection",
)
# Ansible's names for our fields (the old ansible_ssh_* spellings too)
ANSIBLE_NAMES = {
    "ansible_host": "host",
    "ansible_ssh_host": "host",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_ssh_private_key_file": "ssh_key",
    "ansible_private_key_file": "ssh_key",
    "ansible_password": "password",
    "ansible_ssh_pass": "password",
    "ansible_ssh_password": "password",
    "ansible_become_password": "become_password",
    "ansible_become_pass": "become_password",
    "ansible_connection": "connection",
}
_CANONICAL = {**{name: name for name in FIELDS}, **ANSIBLE_NAMES}
_SECRETS = ("password", "become_password")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")
_VAR_SUFFIXES = (".yml", ".yaml", ".json", "")


@dataclass
class _Layer:
    """Variables from one place (a group's `vars`, a host entry, a vars file)."""

    label: str  # "group web", "host web1"
    values: dict[str, Any] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)


@dataclass
class _RawGroup:
    name: str
    location: Location
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    inline: list[_Layer] = field(default_factory=list)
    files: list[_Layer] = field(default_factory=list)
    playbook_files: list[_Layer] = field(default_factory=list)  # group_vars/ beside the playbook


@dataclass
class _RawHost:
    id: str
    location: Location
    inline: list[_Layer] = field(default_factory=list)
    files: list[_Layer] = field(default_factory=list)
    playbook_files: list[_Layer] = field(default_factory=list)  # host_vars/ beside the playbook


def expand_host_range(name: str) -> list[str]:
    """Ansible's host ranges: `web[01:03].lan` -> web01.lan, web02.lan, web03.lan.

    Numbers keep the start's zero padding; letters go a to z; `[1:9:2]` has a stride.
    """
    match = _RANGE.search(name)
    if not match:
        return [name]
    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    head, tail = name[: match.start()], name[match.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif start.isalpha() and end.isalpha():
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        return [name]
    return [f"{head}{item}{rest}" for item in items for rest in expand_host_range(tail)]


class _Reader:
    """Reads one inventory file (and its vars folders) into raw groups and hosts."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.groups: dict[str, _RawGroup] = {}
        self.hosts: dict[str, _RawHost] = {}
        self.tunnels: dict[str, TunnelProfile] = {}
        self.top_level: list[str] = []
        self.errors: list[InputError] = []
        self.warnings: list[InventoryWarning] = []

    def layer(self, mapping: Any, label: str) -> _Layer:
        """Variables of one mapping, Ansible names turned into ours."""
        layer = _Layer(label)
        if not isinstance(mapping, dict):
            return layer
        kind, _, who = label.partition(" ")
        owner = f"{kind} '{who}'"  # messages quote names; provenance strings do not
        written_as: dict[str, str] = {}
        for key, value in mapping.items():
            name = _CANONICAL.get(str(key), str(key))
            where = location_of(mapping, key)
            if name in written_as:
                self.errors.append(
                    InputError(
                        f"{owner}: '{key}' and '{written_as[name]}' are the same field",
                        key_location_of(mapping, key),
                        "one of them",
                    )
                )
                continue
            written_as[name] = key
            if name not in _CANONICAL.values():
                close = difflib.get_close_matches(key, list(_CANONICAL), n=1, cutoff=0.75)
                if close:
                    self.warnings.append(
                        InventoryWarning(
                            f"{owner}: '{key}' is not a field, so it is a variable "
                            f"(did you mean '{close[0]}'?)",
                            key_location_of(mapping, key),
                        )
                    )
            if name in _SECRETS and isinstance(value, str) and _plain(value):
                self.warnings.append(plaintext_warning(owner, where))
            layer.values[name] = value
            layer.locations[name] = where
        return layer

    def read(self, data: dict[str, Any]) -> None:
        """Read the whole (already validated) document."""
        for key, node in data.items():
            if key == "tunnels":
                self.read_tunnels(node)
                continue
            if key != "all":
                self.top_level.append(key)
            self.read_group(key, node, None, key_location_of(data, key))
        self.groups.setdefault("all", _RawGroup("all", Location(self.source, 1)))

    def read_group(self, name: str, node: Any, parent: str | None, where: Location) -> None:
        """A group entry (possibly one of several for the same group) and its children."""
        group = self.groups.setdefault(name, _RawGroup(name, where))
        if parent is not None and name not in self.groups[parent].children:
            self.groups[parent].children.append(name)
        if not isinstance(node, dict):
            return
        hosts = node.get("hosts") or {}
        for written, entry in hosts.items():
            for host_id in expand_host_range(written):
                host = self.hosts.setdefault(
                    host_id, _RawHost(host_id, key_location_of(hosts, written))
                )
                if host_id not in group.hosts:
                    group.hosts.append(host_id)
                if entry:
                    host.inline.append(self.layer(entry, f"host {host_id}"))
        if node.get("vars"):
            group.inline.append(self.layer(node["vars"], f"group {name}"))
        children = node.get("children") or {}
        for child, child_node in children.items():
            self.read_group(child, child_node, name, key_location_of(children, child))

    def read_tunnels(self, node: dict[str, Any]) -> None:
        """The `tunnels:` mapping: name -> {type, server, user, password, port, ssh_key}."""
        for name, entry in node.items():
            kind = TunnelType.parse(str(entry["type"]))
            if kind is None:
                types = [t.value for t in TunnelType]
                written = str(entry["type"]).upper()
                # `L2TP` or `cisco` name a type by its first part: suggest by prefix first
                prefixed = [t for t in types if t.startswith(written)]
                hint = (
                    f" (did you mean '{prefixed[0]}'?)"
                    if prefixed
                    else did_you_mean(written, types)
                )
                self.errors.append(
                    InputError(
                        f"tunnel '{name}': unknown type '{entry['type']}'" + hint,
                        location_of(entry, "type"),
                        "one of: " + ", ".join(types),
                    )
                )
                continue
            password = entry.get("password")
            if isinstance(password, str) and _plain(password):
                self.warnings.append(
                    plaintext_warning(f"tunnel '{name}'", location_of(entry, "password"))
                )
            self.tunnels[name] = TunnelProfile(
                name=name,
                type=kind,
                server=str(entry["server"]),
                user=entry.get("user"),
                password=self.secret(password, location_of(entry, "password")),
                port=int(entry.get("port", 22)),
                ssh_key=entry.get("ssh_key"),
                location=key_location_of(node, name),
            )

    def secret(self, value: Any, where: Location) -> Secret | None:
        """A password value as written: `!env`, `{env: NAME}`, `!vault`, `${NAME}` or plain."""
        if value is None:
            return None
        if isinstance(value, VaultTagged):
            return Secret("vault", str(value), where)
        if isinstance(value, EnvTagged | dict):
            name = str(value["env"] if isinstance(value, dict) else value)
            if not _ENV_NAME.match(name):
                self.errors.append(
                    InputError(
                        f"'{name}' is not an environment variable name",
                        where,
                        "letters, digits and _, not starting with a digit",
                    )
                )
            return Secret("env", name, where)
        return parse_password(str(value), where)

    def read_var_files(self, base: Path, *, playbook: bool = False) -> None:
        """`group_vars/NAME[.yml|.yaml|.json]` or `group_vars/NAME/*` and the same for hosts;
        `playbook`: the folders beside the playbook (above the inventory's; no warning for a
        file naming a group or host this inventory lacks: they serve every inventory)."""
        for folder, names, kind in (
            ("group_vars", self.groups, "group"),
            ("host_vars", self.hosts, "host"),
        ):
            root = base / folder
            try:
                self._read_var_folder(root, names, kind, playbook)
            except OSError as exc:  # a folder we may not list: named, not a traceback
                self.errors.append(unreadable(getattr(exc, "filename", None) or root, exc))

    def _read_var_folder(
        self, root: Path, names: Mapping[str, Any], kind: str, playbook: bool = False
    ) -> None:
        if not root.is_dir():
            return
        for entry in sorted(root.iterdir()):
            stem = entry.name if entry.is_dir() else entry.name.rsplit(".", 1)[0]
            if entry.name.startswith(".") or entry.suffix not in _VAR_SUFFIXES:
                continue
            if stem not in names:
                if playbook:
                    continue
                self.warnings.append(
                    InventoryWarning(
                        f"no {kind} '{stem}' in {self.source}; this file is not used"
                        + did_you_mean(stem, names),
                        Location(str(entry)),
                    )
                )
                continue
            files = sorted(entry.rglob("*")) if entry.is_dir() else [entry]
            for path in files:
                if path.suffix not in (".yml", ".yaml", ".json") or path.is_dir():
                    continue
                try:
                    present = file_present(path)  # a symlink loop is named, not skipped
                except InputError as exc:
                    self.errors.append(exc)
                    continue
                if present:
                    layer = self.read_var_file(path, f"{kind} {stem}")
                    target = self.groups[stem] if kind == "group" else self.hosts[stem]
                    (target.playbook_files if playbook else target.files).append(layer)

    def read_var_file(self, path: Path, label: str) -> _Layer:
        """One vars file, validated (a wrong field type names its line)."""
        try:
            data = load_yaml(path)
            if data is not None:
                validate(data, "inventory#vars", str(path))
        except InputErrors as exc:
            self.errors.extend(exc.errors)
            return _Layer(label)
        except InputError as exc:
            self.errors.append(exc)
            return _Layer(label)
        return self.layer(data, label)


def _plain(value: str) -> bool:
    return not isinstance(value, EnvTagged | VaultTagged) and (
        parse_password(str(value), None).kind == "plain"
    )


def find_group_cycle(children: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Group names along `children` links that lead back to the first one, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for child in children.get(name, ()):
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if child not in state:
                found = visit(child, [*path, child])
                if found:
                    return found
        state[name] = 2
        return None

    for name in children:
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def _depths(groups: dict[str, _RawGroup], top_level: list[str]) -> dict[str, int]:
    """Ansible's group depth: `all` 0, its children 1, ...; the longest path counts."""
    parents: dict[str, set[str]] = {name: set() for name in groups}
    for group in groups.values():
        for child in group.children:
            parents[child].add(group.name)
    for name in top_level:
        parents[name].add("all")
    depths: dict[str, int] = {"all": 0}

    def depth(name: str) -> int:
        if name not in depths:
            above = parents[name] - {name} or {"all"}
            depths[name] = 1 + max(depth(p) for p in above)
        return depths[name]

    for name in groups:
        depth(name)
    return depths


def _host_groups(reader: _Reader, host_id: str, depths: dict[str, int]) -> list[str]:
    parents: dict[str, list[str]] = {name: [] for name in reader.groups}
    for group in reader.groups.values():
        for child in group.children:
            parents[child].append(group.name)
    found: set[str] = {"all"}
    todo = [g.name for g in reader.groups.values() if host_id in g.hosts]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(parents[name])
    return sorted(found, key=lambda name: (depths[name], name))


def _merge(layers: list[_Layer]) -> tuple[dict[str, Any], dict[str, Location], dict[str, str]]:
    values: dict[str, Any] = {}
    locations: dict[str, Location] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.values.items():
            where = layer.locations[key]
            values[key] = value
            locations[key] = where
            sources[key] = f"{layer.label}, {where.file}:{where.line}"
    return values, locations, sources


def _build_host(reader: _Reader, raw: _RawHost, depths: dict[str, int]) -> Host:
    groups = _host_groups(reader, raw.id, depths)
    ordered = [reader.groups[name] for name in groups]
    # Ansible's VARIABLE_PRECEDENCE: every group's vars in the inventory file (`all` first),
    # then group_vars/all (the inventory's, the playbook's), then the other groups' group_vars
    # files (the inventory's, the playbook's); then the host's own, likewise
    layers = [
        *(layer for group in ordered for layer in group.inline),
        *ordered[0].files,
        *ordered[0].playbook_files,
        *(layer for group in ordered[1:] for layer in group.files),
        *(layer for group in ordered[1:] for layer in group.playbook_files),
        *raw.inline,
        *raw.files,
        *raw.playbook_files,
    ]
    values, locations, sources = _merge(layers)
    fields = {name: values.pop(name) for name in FIELDS if name in values}
    return Host(
        id=raw.id,
        host=str(fields.get("host", raw.id)),
        user=fields.get("user"),
        password=reader.secret(fields.get("password"), locations.get("password", raw.location)),
        port=int(fields.get("port", 22)),
        ssh_key=fields.get("ssh_key"),
        description=str(fields.get("description", "")),
        tunnel=fields.get("tunnel"),
        become_password=reader.secret(
            fields.get("become_password"), locations.get("become_password", raw.location)
        ),
        # ssh's other names (paramiko, smart) are ssh; sim: a simulated host (connection/sim.py)
        connection=str(fields["connection"])
        if fields.get("connection") in ("local", "sim")
        else "ssh",
        groups=tuple(groups),
        vars=MappingProxyType(values),
        var_sources=MappingProxyType(sources),
        location=raw.location,
        field_locations=MappingProxyType({k: locations[k] for k in fields}),
    )


def parse_yaml_inventory(
    data: Any, source: str, base: Path | None = None, var_dirs: Sequence[Path] = ()
) -> Inventory:
    """An Inventory from parsed YAML (`yamlio`); `base` is the folder holding group_vars/,
    `var_dirs` more such folders read after it (the playbook's)."""
    if data is None:
        raise InputError(
            "the inventory is empty", Location(source), "a mapping of groups, usually 'all:'"
        )
    validate(data, "inventory", source)
    reader = _Reader(source)
    reader.read(data)
    return build_inventory(reader, source, base, var_dirs)


def build_inventory(
    reader: _Reader, source: str, base: Path | None, var_dirs: Sequence[Path] = ()
) -> Inventory:
    """The Inventory from a reader's raw groups and hosts (any format), with the vars
    folders beside `base` read, then those in `var_dirs` (the playbook's folder: Ansible
    reads group_vars/ and host_vars/ there too, over the inventory's), and fields and
    variables resolved in Ansible's order."""
    if base is not None:
        reader.read_var_files(base)
    for folder in dict.fromkeys(var_dirs):
        if base is None or folder.resolve() != base.resolve():
            reader.read_var_files(folder, playbook=True)
    cycle = find_group_cycle({name: g.children for name, g in reader.groups.items()})
    if cycle:
        reader.errors.append(
            InputError(
                "group cycle: " + " -> ".join(cycle),
                reader.groups[cycle[0]].location,
                "children that never lead back to a parent",
            )
        )
    if reader.errors:
        raise InputErrors(reader.errors)
    depths = _depths(reader.groups, reader.top_level)
    hosts = {host_id: _build_host(reader, raw, depths) for host_id, raw in reader.hosts.items()}
    if reader.errors:
        raise InputErrors(reader.errors)
    groups = {"all": _group(reader, reader.groups["all"], reader.top_level)}
    for name, raw_group in reader.groups.items():
        if name != "all":
            groups[name] = _group(reader, raw_group, [])
    unique = {(str(w.location), w.message): w for w in reader.warnings}
    return Inventory(
        source=source,
        hosts=MappingProxyType(hosts),
        groups=MappingProxyType(groups),
        tunnels=MappingProxyType(reader.tunnels),
        warnings=tuple(unique.values()),
    )


def _group(reader: _Reader, raw: _RawGroup, extra_children: list[str]) -> Group:
    values, _, _ = _merge(raw.inline + raw.files + raw.playbook_files)
    children = raw.children + [c for c in extra_children if c not in raw.children]
    return Group(
        name=raw.name,
        hosts=tuple(raw.hosts),
        children=tuple(children),
        vars=MappingProxyType(values),
        location=raw.location,
    )


def load_yaml_inventory(path: str | Path, var_dirs: Sequence[Path] = ()) -> Inventory:
    """Load a YAML inventory file and the group_vars/ and host_vars/ folders beside it (then
    those in `var_dirs`)."""
    return parse_yaml_inventory(load_yaml(path), str(path), Path(path).parent, var_dirs)


class _Dumper(yaml.SafeDumper):
    """Writes our located values as plain YAML, keeping `!vault` and `!env` tags."""


class _VaultOut(str):
    pass


def _represent_vault(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("!vault", str(value), style="|")


def _represent_env(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("!env", str(value))


_Dumper.add_representer(LocatedDict, yaml.SafeDumper.represent_dict)
_Dumper.add_representer(LocatedList, yaml.SafeDumper.represent_list)
_Dumper.add_representer(LocatedStr, yaml.SafeDumper.represent_str)
_Dumper.add_representer(VaultTagged, _represent_vault)
_Dumper.add_representer(_VaultOut, _represent_vault)
_Dumper.add_representer(EnvTagged, _represent_env)


def _secret_out(secret: Secret) -> Any:
    if secret.kind == "env":
        return {"env": secret.value}
    if secret.kind == "vault":
        return _VaultOut(secret.value)
    return secret.value


def _host_entry(host: Host) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if host.host != host.id:
        entry["host"] = host.host
    if host.user:
        entry["user"] = host.user
    if host.password:
        entry["password"] = _secret_out(host.password)
    entry["port"] = host.port
    for name in ("ssh_key", "description", "tunnel"):
        if getattr(host, name):
            entry[name] = getattr(host, name)
    if host.become_password:
        entry["become_password"] = _secret_out(host.become_password)
    if host.connection != "ssh":
        entry["connection"] = host.connection
    entry.update(host.vars)
    return entry


def render_yaml_inventory(inventory: Inventory) -> str:
    """A YAML inventory that loads back to the same hosts, fields, vars, groups and tunnels.

    Every host carries its resolved fields and variables under `all.hosts`; groups are listed
    under `all.children` with their direct members and child groups (group variables are
    already folded into the hosts).
    """
    document: dict[str, Any] = {}
    if inventory.tunnels:
        tunnels: dict[str, Any] = {}
        for tunnel in inventory.tunnels.values():
            entry: dict[str, Any] = {"type": tunnel.type.value, "server": tunnel.server}
            if tunnel.user:
                entry["user"] = tunnel.user
            if tunnel.password:
                entry["password"] = _secret_out(tunnel.password)
            entry["port"] = tunnel.port
            if tunnel.ssh_key:
                entry["ssh_key"] = tunnel.ssh_key
            tunnels[tunnel.name] = entry
        document["tunnels"] = tunnels
    everyone: dict[str, Any] = {
        "hosts": {host.id: _host_entry(host) or None for host in inventory.hosts.values()}
    }
    children: dict[str, Any] = {}
    for group in inventory.groups.values():
        if group.name == "all":
            continue
        body: dict[str, Any] = {}
        if group.hosts:
            body["hosts"] = dict.fromkeys(group.hosts)
        if group.children:
            body["children"] = dict.fromkeys(group.children)
        children[group.name] = body or None
    if children:
        everyone["children"] = children
    document["all"] = everyone
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
