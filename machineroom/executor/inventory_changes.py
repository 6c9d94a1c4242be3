"""`add_host` and `group_by` applied to the run's in-memory inventory (never to its files).

The run's `Inventory` is frozen plain data: a change makes a new one, swapped in under a lock,
so a thread reading the old one meanwhile sees a consistent whole. A new host gets the
variables of `all` and of the groups it joins, then its own; its user and key default to those
of the host that ran `add_host` (machineroom needs both to connect). The hosts of later plays
are chosen again from the changed inventory (executor/play.py `later_hosts`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from machineroom.errors import InputError
from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.inventory.model import Group, Host, Inventory, Secret
from machineroom.modules.base import Outcome
from machineroom.playbook.model import Play

_LOCK = threading.Lock()

# Ansible's names for a host's connection fields (as the YAML inventory reads them)
_FIELDS = {
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
    "ansible_become_password": "become_password",
    "ansible_become_pass": "become_password",
    "ansible_connection": "connection",
    **{name: name for name in ("host", "user", "port", "ssh_key", "password")},
    "become_password": "become_password",
    "connection": "connection",
}
INVENTORY_MODULES = ("add_host", "group_by")


def apply_change(
    module: str, outcome: Outcome, state: HostState, play_state: PlayShared, run: RunShared
) -> Outcome:
    """Apply an add_host / group_by outcome to the run's inventory; the outcome is `changed`
    when the inventory changed (as Ansible reports it)."""
    if outcome.failed:
        return outcome
    result = dict(outcome.result)
    if module == "add_host":
        changed = add_host(result["add_host"], state.host, play_state, run)
    else:
        changed = group_by(
            str(result["add_group"]), list(result["parent_groups"]), state, play_state, run
        )
    return replace(outcome, status="changed" if changed else "ok")


def add_host(spec: Mapping[str, Any], origin: Host, play_state: PlayShared, run: RunShared) -> bool:
    """Add or update host `spec["host_name"]`; True when the inventory changed."""
    name = str(spec["host_name"])
    groups = [str(g) for g in spec.get("groups", [])]
    values = dict(spec.get("host_vars", {}))
    with _LOCK:
        inventory = run.inventory
        current = inventory.hosts.get(name)
        if current is None:
            inherited: dict[str, Any] = {}
            for group in ("all", *groups):
                if group in inventory.groups:
                    inherited.update(inventory.groups[group].vars)
            base = Host(
                id=name,
                host=name,
                user=origin.user,
                ssh_key=origin.ssh_key,
                groups=("all",),
                vars=MappingProxyType(inherited),
            )
        else:
            base = current
        host = _with_values(base, values, groups)
        if host == current:
            return False
        _swap(run, play_state, inventory, host, [*groups], parents={})
    return True


def group_by(
    key: str, parents: Sequence[str], state: HostState, play_state: PlayShared, run: RunShared
) -> bool:
    """Put this host in group `key` (a child of `parents`); True when it was not in it."""
    with _LOCK:
        inventory = run.inventory
        current = inventory.hosts.get(state.host.id, state.host)
        wanted = [key, *(p for p in parents if p != "all")]
        if all(g in current.groups for g in wanted) and key in inventory.groups:
            return False
        host = replace(current, groups=_joined(current.groups, wanted))
        _swap(run, play_state, inventory, host, [key], parents={key: list(parents)})
    return True


def _with_values(host: Host, values: Mapping[str, Any], groups: Sequence[str]) -> Host:
    fields: dict[str, Any] = {}
    variables = dict(host.vars)
    for key, value in values.items():
        target = _FIELDS.get(key)
        if target is None:
            variables[key] = value
        elif target in ("password", "become_password"):
            fields[target] = Secret("plain", str(value))
        elif target == "port":
            try:
                fields["port"] = int(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"add_host: port {value!r} is not a number", None, "1-65535"
                ) from None
        elif target == "connection":
            fields["connection"] = "local" if value == "local" else "ssh"
        else:
            fields[target] = str(value)
    return replace(
        host,
        **fields,
        groups=_joined(host.groups, groups),
        vars=MappingProxyType(variables),
    )


def _joined(current: Sequence[str], more: Sequence[str]) -> tuple[str, ...]:
    return (*current, *(g for g in more if g not in current))


def _swap(
    run: RunShared,
    play_state: PlayShared,
    inventory: Inventory,
    host: Host,
    groups: Sequence[str],
    parents: Mapping[str, Sequence[str]],
) -> None:
    """The run's inventory with `host` put in `groups` (children of `parents`), swapped in."""
    all_groups = dict(inventory.groups)
    for name in groups:
        group = all_groups.get(name) or Group(name=name)
        if host.id not in group.hosts:
            group = replace(group, hosts=(*group.hosts, host.id))
        all_groups[name] = group
        for parent in parents.get(name, ()):
            above = all_groups.get(parent) or Group(name=parent)
            if name not in above.children:
                above = replace(above, children=(*above.children, name))
            all_groups[parent] = above
    hosts = {**inventory.hosts, host.id: host}
    run.inventory = replace(
        inventory, hosts=MappingProxyType(hosts), groups=MappingProxyType(all_groups)
    )
    if host.id not in inventory.hosts:
        run.added_hosts.add(host.id)
    for other in play_state.hosts:  # a host of this play: its own tasks see it too
        if other.host.id == host.id:
            other.host = replace(host, connection=other.host.connection)
    play_state.magic.clear()  # `groups`, `group_names`, `hostvars` are computed again


def changes_inventory(plays: Sequence[Play]) -> bool:
    """Whether a task of these plays runs add_host or group_by: then a play's pattern may
    name hosts and groups that exist only once the run has made them."""
    from machineroom.playbook.load import iter_tasks

    return any(
        task.module in INVENTORY_MODULES
        for play in plays
        for stage in play.stages
        for task in iter_tasks(stage.items)
    )
