"""Variable precedence, with provenance: which value a task sees, and where it was set.

A `VarStack` is a tuple of `VarLayer`s, lowest precedence first; the last layer that sets a
name wins. `build_var_stack` puts the layers in the order of MISSION.md (from lowest):

  role defaults < inventory `all` < parent group < child group < host vars < gathered facts
  < play vars (incl. vars_files) < role vars < role params < block vars (outer to inner)
  < task vars < include_vars < include params < registered vars and set_fact
  < extra vars (-e)
  < magic variables

Gathered facts sit where Ansible puts them (above the inventory, below play vars). Magic
variables (`inventory_hostname`, `groups`, `hostvars`, `ansible_check_mode`, ...) describe the
run and, as in Ansible, cannot be overridden, so they are on top.

The inventory layers come from `Host.vars` / `Host.var_sources` (resolved at load); only the
winning inventory value of each name is there. Give `inventory=` to get every group's own
value too (what `machineroom explain` shows).

`resolve()` copies; `view()` is a `ChainMap` over the layers, cheap enough to build per task.
Values from hosts (facts, registered results, set_fact) are marked Unsafe so that they are
never rendered as templates.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import ChainMap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputError, Location
from machineroom.inventory.model import Host, Inventory
from machineroom.masking import MIN_INFERRED, SECRETS, is_secret_name
from machineroom.yamlio import LocatedDict, load_yaml, location_of, parse_yaml, to_plain

if TYPE_CHECKING:
    from machineroom.playbook.model import Block, Play, RoleRef, Task

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class VarLayer:
    """One source of variables: a name for people, the values, and where each was written."""

    name: str  # "role defaults (docker)", "group web", "play vars (site)", "extra vars (-e)"
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # var -> "file:line"

    def source_of(self, var: str) -> str:
        """Where this layer set `var` ("roles/docker/defaults/main.yml:3"), or its name."""
        return self.sources.get(var) or self.name


@dataclass(frozen=True)
class VarStack:
    """Layers, lowest precedence first. Immutable: `push` returns a new stack."""

    layers: tuple[VarLayer, ...] = ()

    def view(self) -> ChainMap[str, Any]:
        """A live, copy-free mapping of the winning values (highest layer first)."""
        maps = [layer.values for layer in reversed(self.layers)]
        # an empty dict on top takes writes (loop variables...); the layers stay untouched
        return ChainMap({}, *maps)  # type: ignore[arg-type]

    def resolve(self) -> dict[str, Any]:
        """The winning value of every name, as a plain dict."""
        result: dict[str, Any] = {}
        for layer in self.layers:
            result.update(layer.values)
        return result

    def explain(self, name: str) -> list[tuple[VarLayer, Any, str]]:
        """Every layer that sets `name`: (layer, value, where), lowest first; the last wins."""
        return [
            (layer, layer.values[name], layer.source_of(name))
            for layer in self.layers
            if name in layer.values
        ]

    def source_of(self, name: str) -> str | None:
        """Where the winning value of `name` was set, or None when no layer sets it."""
        found = self.explain(name)
        return found[-1][2] if found else None

    def push(self, layer: VarLayer) -> VarStack:
        """A stack with `layer` on top (e.g. loop variables for one item)."""
        return VarStack((*self.layers, layer))

    def __iter__(self) -> Iterator[VarLayer]:
        return iter(self.layers)


def _sources_from(values: Mapping[str, Any], fallback: str) -> dict[str, str]:
    """`file:line` of each key when the mapping came from our YAML loader, else `fallback`."""
    if isinstance(values, LocatedDict):
        return {key: _where(location_of(values, key), fallback) for key in values}
    return {key: fallback for key in values}


def _where(location: Location | None, fallback: str) -> str:
    if location is None or location.file == "<unknown>":
        return fallback
    return f"{location.file}:{location.line}" if location.line else location.file


def inventory_layers(host: Host, inventory: Inventory | None = None) -> list[VarLayer]:
    """The host's inventory variables as layers: `group all`, groups by depth, `host ID`.

    Without `inventory` each layer holds only the values that won (from `Host.var_sources`);
    with it, each group's own values are there too, even those a deeper group overrides.
    """
    by_label: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, str]] = {}
    for var, value in host.vars.items():
        source = host.var_sources.get(var, "")
        label = source.split(",", 1)[0].strip() or f"host {host.id}"
        by_label.setdefault(label, {})[var] = value
        sources.setdefault(label, {})[var] = (
            source.split(",", 1)[1].strip() if "," in source else source
        )
    layers = []
    for group in host.groups:
        label = f"group {group}"
        values = dict(by_label.get(label, {}))
        layer_sources = dict(sources.get(label, {}))
        if inventory is not None and group in inventory.groups:
            for var, value in inventory.groups[group].vars.items():
                # fields (port, user, ...) are not variables; Host.vars holds every variable
                if var in host.vars and var not in values:
                    values[var] = value
                    layer_sources[var] = f"{inventory.source} (group {group})"
        layers.append(VarLayer(label, MappingProxyType(values), MappingProxyType(layer_sources)))
    label = f"host {host.id}"
    layers.append(
        VarLayer(
            label,
            MappingProxyType(by_label.get(label, {})),
            MappingProxyType(sources.get(label, {})),
        )
    )
    known = {f"group {g}" for g in host.groups} | {label}
    for other in by_label.keys() - known:  # a label we did not expect: keep the value anyway
        layers.append(VarLayer(other, MappingProxyType(by_label[other]), sources[other]))
    return layers


def build_var_stack(
    host: Host,
    *,
    play: Play | None = None,
    role: RoleRef | None = None,
    blocks: Sequence[Block] = (),
    task: Task | None = None,
    facts: Mapping[str, Any] = _EMPTY,
    registered: Mapping[str, Any] = _EMPTY,
    include_params: Mapping[str, Any] = _EMPTY,
    included: Mapping[str, Any] = _EMPTY,
    play_files: Mapping[str, Any] = _EMPTY,
    play_files_sources: Mapping[str, str] = _EMPTY,
    extra_vars: Mapping[str, Any] = _EMPTY,
    extra_sources: Mapping[str, str] = _EMPTY,
    magic: Mapping[str, Any] = _EMPTY,
    inventory: Inventory | None = None,
) -> VarStack:
    """The variables one task on one host sees, in precedence order (see the module doc).

    `facts`: gathered facts (the facts module's variables). `registered`: `register:` results
    and `set_fact` values. Both came from the host and are marked Unsafe here (cheap when the
    executor already marked them). `included`: variables of `include_vars` tasks (controller
    files, so templates in them are rendered when used). `play_files`: the play's vars_files
    read for this host (templated names). `role` defaults to `task.role`.
    Empty layers are left out.
    """
    from machineroom.templating import mark_unsafe

    role = role or (task.role if task is not None else None)
    layers: list[VarLayer] = []

    def add(name: str, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        if values:
            layers.append(VarLayer(name, values, sources))

    if role is not None:
        add(
            f"role defaults ({role.name})",
            role.defaults,
            _role_sources(role, "defaults", f"{role.path}/defaults/main.yml"),
        )
    layers.extend(layer for layer in inventory_layers(host, inventory) if layer.values)
    # ansible_facts is always there, empty before any gathering (`when: ansible_facts == {}`)
    facts = facts if "ansible_facts" in facts else {"ansible_facts": {}, **facts}
    add(
        "facts", {k: mark_unsafe(v) for k, v in facts.items()}, {k: "gathered facts" for k in facts}
    )
    if play is not None:
        play_name = play.name or play.hosts
        play_file = play.location.file if play.location else "play"
        play_sources = {
            k: play.vars_sources.get(k) or _sources_from(play.vars, play_file)[k] for k in play.vars
        }
        add(f"play vars ({play_name})", play.vars, play_sources)
        # vars_files chosen per host: where the play's other vars_files are
        add(f"play vars_files ({play_name})", play_files, play_files_sources)
    if role is not None:
        add(
            f"role vars ({role.name})",
            role.vars,
            _role_sources(role, "vars", f"{role.path}/vars/main.yml"),
        )
        role_where = _where(role.location, f"role {role.name} params")
        add(f"role params ({role.name})", role.params, _sources_from(role.params, role_where))
    for block in blocks:
        where = _where(block.location, "block")
        add(f"block vars ({block.name or where})", block.vars, _sources_from(block.vars, where))
    if task is not None:
        where = _where(task.location, "task")
        add(f"task vars ({task.display_name})", task.vars, _sources_from(task.vars, where))
    add("include_vars", included, {k: "include_vars" for k in included})
    add("include params", include_params, _sources_from(include_params, "include"))
    add(
        "registered and set_fact",
        {k: mark_unsafe(v) for k, v in registered.items()},
        {k: "register/set_fact" for k in registered},
    )
    add(
        "extra vars (-e)",
        extra_vars,
        {k: extra_sources.get(k, "-e") for k in extra_vars},
    )
    add("magic variables", magic, {k: "machineroom" for k in magic})
    return VarStack(tuple(layers))


def _role_sources(role: RoleRef, part: str, fallback: str) -> dict[str, str]:
    """Where the role's defaults/vars file set each name (the loader records it)."""
    values: Mapping[str, Any] = getattr(role, part)
    recorded: Mapping[str, str] = getattr(role, f"{part}_sources", _EMPTY)
    found = _sources_from(values, fallback)
    return {k: recorded.get(k) or found[k] for k in values}


# --- magic variables -------------------------------------------------------------------------


class HostVars(Mapping[str, Mapping[str, Any]]):
    """`hostvars[id]`: another host's inventory variables and its connection fields.

    Lazy (built on access), so a run over a thousand hosts does not copy a thousand dicts per
    task. `per_host` lets the executor add live values (facts, registered) by host id. Values
    reached through hostvars are not rendered as templates.
    """

    def __init__(
        self, inventory: Inventory, per_host: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self._inventory = inventory
        self._per_host = per_host or {}

    def __getitem__(self, host_id: str) -> Mapping[str, Any]:
        host = self._inventory.hosts[host_id]
        values: dict[str, Any] = dict(host.vars)
        values.update(_connection_vars(host))
        values["inventory_hostname"] = host.id
        values["group_names"] = _group_names(host)
        values.update(self._per_host.get(host_id, {}))
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._inventory.hosts)

    def __len__(self) -> int:
        return len(self._inventory.hosts)

    def __repr__(self) -> str:
        return f"HostVars({len(self)} hosts)"


def _connection_vars(host: Host) -> dict[str, Any]:
    return {
        "ansible_host": host.host,
        "ansible_user": host.user,
        "ansible_port": host.port,
        "ansible_connection": host.connection,
    }


def _group_names(host: Host) -> list[str]:
    return sorted(g for g in host.groups if g not in ("all", "ungrouped"))


_GROUPS_CACHE: dict[int, tuple[Inventory, dict[str, list[str]]]] = {}


def inventory_groups(inventory: Inventory) -> dict[str, list[str]]:
    """Group name -> host ids (nested groups included), computed once per inventory."""
    cached = _GROUPS_CACHE.get(id(inventory))
    if cached is not None and cached[0] is inventory:
        return cached[1]
    groups: dict[str, list[str]] = {name: [] for name in inventory.groups}
    groups.setdefault("all", [])
    for host in inventory.hosts.values():
        for name in host.groups:
            groups.setdefault(name, []).append(host.id)
    if len(_GROUPS_CACHE) > 16:
        _GROUPS_CACHE.clear()
    _GROUPS_CACHE[id(inventory)] = (inventory, groups)
    return groups


def magic_vars(
    host: Host,
    inventory: Inventory,
    play_hosts: Sequence[str],
    *,
    check_mode: bool,
    playbook_dir: str | None,
    role_path: str | None = None,
    run_tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
) -> dict[str, Any]:
    """The variables machineroom sets for every task, with Ansible's names. `play_hosts`
    given as a list is shared, not copied (a list per host of a 10,000-host play is 10,000
    copies of 10,000 names)."""
    hosts_list = play_hosts if isinstance(play_hosts, list) else list(play_hosts)
    values: dict[str, Any] = {
        "inventory_hostname": host.id,
        "inventory_hostname_short": host.id.split(".", 1)[0],
        "groups": inventory_groups(inventory),
        "group_names": _group_names(host),
        "hostvars": HostVars(inventory),
        "play_hosts": hosts_list,
        "ansible_play_hosts": hosts_list,
        "ansible_play_batch": hosts_list,
        "ansible_check_mode": check_mode,
        "ansible_run_tags": sorted(run_tags) or ["all"],
        "ansible_skip_tags": sorted(skip_tags),
        "playbook_dir": playbook_dir,
        "inventory_file": inventory.source,
        "inventory_dir": str(Path(inventory.source).parent),
        **_connection_vars(host),
    }
    if role_path is not None:
        values["role_path"] = role_path
        values["role_name"] = Path(role_path).name
    return values


def role_name_vars(play: Play) -> dict[str, Any]:
    """Ansible's names for a play's roles: `role_names` and `ansible_play_role_names` (the
    roles the play names or imports), `ansible_dependent_role_names` (pulled in as
    dependencies) and `ansible_role_names` (both)."""
    named, dependent = list(play.role_names), list(play.dependent_role_names)
    return {
        "role_names": named,
        "ansible_play_role_names": named,
        "ansible_dependent_role_names": dependent,
        "ansible_role_names": list(dict.fromkeys(named + dependent)),
    }


# --- extra vars ------------------------------------------------------------------------------


def parse_extra_vars(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`-e` arguments, in order (later wins): values and where each came from.

    Forms: `key=value` (several in one argument, shell-style quotes; values stay strings, as
    in Ansible), `'{"json": 1}'` or YAML flow mappings, and `@file.yml` (YAML or JSON).
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for number, item in enumerate(items, start=1):
        label = f"-e argument {number}"
        text = item.strip()
        if text.startswith("@"):
            path = text[1:]
            data = load_yaml(path)
            _require_mapping(data, Location(path), f"-e @{path}")
            for key, value in data.items():
                values[key] = to_plain(value)
                sources[key] = _where(location_of(data, key), path)
        elif text.startswith("{"):
            data = parse_yaml(text, label)
            _require_mapping(data, Location(label), label)
            for key, value in data.items():
                values[key] = to_plain(value)
                sources[key] = f"{label} (JSON)"
        elif text:
            for key, value in _key_values(text, label):
                values[key] = value
                sources[key] = f"{label} ({key}=...)"
    _register_secrets(values)
    return values, sources


def _register_secrets(value: Any) -> None:
    """Values whose names say they are secret (`db_password`, `api_token`), at any depth of
    mappings and lists, are masked wherever they would leave the process, the run's recorded
    command line included."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if is_secret_name(str(key)):
                SECRETS.add_all(item, min_length=MIN_INFERRED)
            else:
                _register_secrets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _register_secrets(item)


def _require_mapping(data: Any, where: Location, what: str) -> None:
    if not isinstance(data, dict):
        raise InputError(f"{what} is not a mapping of variables", where, "key: value pairs")
    for key in data:
        if not _NAME.match(str(key)):
            raise InputError(
                f"'{key}' is not a valid variable name",
                location_of(data, str(key), where),
                "letters, digits and _, not starting with a digit",
            )


def _key_values(text: str, label: str) -> Iterator[tuple[str, str]]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InputError(f"{label}: {exc} in {text!r}", None, "key=value pairs") from None
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise InputError(
                f"{label}: '{word}' is not key=value",
                None,
                "key=value, a JSON object or @file.yml",
            )
        if not _NAME.match(key):
            raise InputError(
                f"{label}: '{key}' is not a valid variable name",
                None,
                "letters, digits and _, not starting with a digit",
            )
        yield key, value


def to_json_text(value: Any) -> str:
    """A value as one line of JSON for people (explain, messages); odd types as text."""
    return json.dumps(to_plain(_plainish(value)), default=str, ensure_ascii=False)


def _plainish(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plainish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plainish(v) for v in value]
    return value
