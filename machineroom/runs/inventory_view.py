"""What `machineroom inventory --list | --graph [GROUP] | --host HOST` shows: ansible-inventory's
views of an inventory, as plain data (the CLI prints them: cli/inventory_cmd.py).

Any inventory machineroom reads (YAML, INI, server list; `-i` or the configured one) is shown
in ansible-inventory's layouts: `--list` its JSON (`_meta.hostvars` with every host's merged
variables, each group's `hosts` and `children`, empty groups left out), `--graph` the
`@all:` / `|--@group:` tree (`--vars` adds variables), `--host` one host's variables. Our
connection fields show under Ansible's names (`ansible_host`, `ansible_user`, ...), and only
where the inventory wrote them, as ansible-inventory shows them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from machineroom.errors import UsageError
from machineroom.inventory.model import Group, Host, Inventory, Secret

# our field -> the variable ansible-inventory shows for it
ANSIBLE_FIELD_NAMES = {
    "host": "ansible_host",
    "user": "ansible_user",
    "port": "ansible_port",
    "ssh_key": "ansible_ssh_private_key_file",
    "password": "ansible_password",
    "become_password": "ansible_become_password",
    "connection": "ansible_connection",
    "description": "description",
    "tunnel": "tunnel",
}


def _shown_value(value: Any) -> Any:
    """A value as ansible-inventory's JSON holds it (vault text as its `__ansible_vault`)."""
    if isinstance(value, Secret):
        if value.kind == "vault":
            return {"__ansible_vault": value.value}
        if value.kind == "env":
            return f"{{{{ lookup('env', '{value.value}') }}}}"
        return value.value
    return value


def host_vars(host: Host) -> dict[str, Any]:
    """The host's variables (group ones merged, as Ansible resolves them) under Ansible's
    names, its connection fields only where the inventory wrote them."""
    result: dict[str, Any] = {}
    for field_name in host.field_locations:
        name = ANSIBLE_FIELD_NAMES.get(field_name)
        if name is not None:
            result[name] = _shown_value(getattr(host, field_name))
    result.update(host.vars)
    return dict(sorted(result.items()))


def group_vars(group: Group) -> dict[str, Any]:
    """The group's own variables, fields under Ansible's names."""
    return {ANSIBLE_FIELD_NAMES.get(k, k): _shown_value(v) for k, v in group.vars.items()}


def ansible_groups(inventory: Inventory) -> dict[str, Group]:
    """The groups as Ansible holds them: `all` has no hosts of its own, its first child is
    `ungrouped`, holding every host in no other group."""
    groups = dict(inventory.groups)
    loose = tuple(h.id for h in inventory.hosts.values() if set(h.groups) <= {"all", "ungrouped"})
    groups["ungrouped"] = Group("ungrouped", hosts=loose)
    top = groups["all"]
    children = ("ungrouped", *(c for c in top.children if c != "ungrouped"))
    groups["all"] = dataclasses.replace(top, hosts=(), children=children)
    return groups


def list_inventory(inventory: Inventory) -> dict[str, Any]:
    """ansible-inventory --list: groups reachable from `all`, then `_meta.hostvars`."""
    groups = ansible_groups(inventory)
    results: dict[str, Any] = {}
    seen: set[str] = set()

    def walk(group: Group) -> None:
        entry: dict[str, Any] = {}
        if group.name != "all" and group.hosts:
            entry["hosts"] = list(group.hosts)
        children = [c for c in group.children if c in groups]
        if children:
            entry["children"] = children
        if entry:
            results[group.name] = entry
        for child in children:
            if child not in seen:
                seen.add(child)
                walk(groups[child])

    walk(groups["all"])
    hostvars = {h.id: host_vars(h) for h in inventory.hosts.values()}
    results["_meta"] = {
        "hostvars": {k: v for k, v in hostvars.items() if v},
        "profile": "inventory_legacy",
    }
    return results


def _graph_line(text: str, depth: int) -> str:
    return "  |" * depth + "--" + text if depth else text


def graph_inventory(inventory: Inventory, group_name: str, show_vars: bool) -> list[str]:
    """ansible-inventory --graph: the tree under `group_name`."""
    groups = ansible_groups(inventory)

    def vars_lines(values: Mapping[str, Any], depth: int) -> list[str]:
        return [_graph_line(f"{{{k} = {v}}}", depth) for k, v in sorted(values.items())]

    def walk(group: Group, depth: int) -> list[str]:
        lines = [_graph_line(f"@{group.name}:", depth)]
        for child in group.children:
            if child in groups:
                lines += walk(groups[child], depth + 1)
        if group.name != "all":
            for host_id in group.hosts:
                lines.append(_graph_line(host_id, depth + 1))
                if show_vars:
                    lines += vars_lines(host_vars(inventory.hosts[host_id]), depth + 2)
        if show_vars:
            lines += vars_lines(group_vars(group), depth + 1)
        return lines

    group = groups.get(group_name)
    if group is None:
        raise UsageError(f"--graph: no group '{group_name}' (give a group name, e.g. all)")
    return walk(group, 0)


def one_host_vars(inventory: Inventory, host_id: str) -> dict[str, Any]:
    """ansible-inventory --host: one host's variables (an InputError naming close ids when
    there is no such host)."""
    return host_vars(inventory.host(host_id))
