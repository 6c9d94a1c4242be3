"""`add_host` and `group_by`: hosts and groups added to the run's in-memory inventory.

Both run on the workstation (nothing is sent to a host) and only say what to add; the executor
applies it to the run's inventory (executor/inventory_changes.py), where later tasks
(`groups`, `hostvars`) and later plays (`hosts: new_group`) see it, as in ansible-core. The
inventory files are never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import Module, ModuleContext, Outcome, RemoteStep

_NAMES = {"type": "string", "minLength": 1}
_GROUPS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def name_list(value: Any) -> list[str]:
    """`a,b`, `[a, b]` or `a` as a list of names, each once, in order."""
    values = value if isinstance(value, list) else str(value or "").split(",")
    names: list[str] = []
    for item in values:
        name = str(item).strip()
        if name and name not in names:
            names.append(name)
    return names


class AddHostModule(Module):
    """`add_host`: `name` (`host`, `hostname`), `groups` (`group`, `groupname`), any vars."""

    name: ClassVar[str] = "add_host"
    local: ClassVar[bool] = True
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"name": _NAMES, "groups": _GROUPS},
        "required": ["name"],
        "additionalProperties": True,  # every other key is a variable of the new host
        "x-aliases": {"host": "name", "hostname": "name", "group": "groups", "groupname": "groups"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """Nothing to send: the executor changes the inventory."""
        return None

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Ansible's result: `add_host: {host_name, groups, host_vars}`; `name:port` sets
        the port."""
        name = str(args["name"]).strip()
        host_vars = {k: v for k, v in args.items() if k not in ("name", "groups")}
        head, sep, port = name.rpartition(":")
        if sep and head and port.isdigit() and head.count(":") == 0:
            name = head
            host_vars["ansible_port"] = int(port)
        spec = {"host_name": name, "groups": name_list(args.get("groups")), "host_vars": host_vars}
        return Outcome("ok", result={"add_host": spec})


class GroupByModule(Module):
    """`group_by`: `key` (the group, spaces become `-`) and `parents` (default `all`)."""

    name: ClassVar[str] = "group_by"
    local: ClassVar[bool] = True
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"key": _NAMES, "parents": _GROUPS},
        "required": ["key"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """Nothing to send: the executor changes the inventory."""
        return None

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Ansible's result: `add_group` and `parent_groups`."""
        parents = name_list(args.get("parents")) or ["all"]
        return Outcome(
            "ok",
            result={
                "add_group": str(args["key"]).replace(" ", "-"),
                "parent_groups": [p.replace(" ", "-") for p in parents],
            },
        )
