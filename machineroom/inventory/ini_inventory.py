"""Ansible's INI inventory: `[group]`, `[group:children]` and `[group:vars]` sections.

Read as ansible-core's `ini` inventory plugin reads it, into the same raw groups and hosts as
the YAML loader (so `group_vars/`, `host_vars/`, the `ansible_*` names and the precedence are
shared, see `yaml_inventory`):

- lines before the first section are hosts of the group `ungrouped`; `#` and `;` start a
  comment line; a section header may end in a `# comment`;
- a host line is `PATTERN [key=value ...]`, split as a shell splits words (quotes group, a `#`
  word starts a comment); PATTERN may carry a port (`web1:2222`, `[::1]:2222`) and ranges
  (`web[01:20].lan`, `db-[a:f]`, `[1:10:2]`);
- a `[group:vars]` line is `key = value`, the whole rest of the line being the value;
- values are read with Python's literal evaluation as Ansible does: `5` is a number, `True`
  a boolean, `"x"` or `'x'` a string, `[1, 2]` a list; anything else (`yes`, `/opt/app`)
  stays the text as written;
- a `[group:children]` line names a group that must be defined by its own `[name]` or
  `[name:children]` section; a `[group:vars]` section needs the group defined too;
- groups that no section lists as a child are children of `all`; hosts in no group are in
  `ungrouped`.
"""

from __future__ import annotations

import ast
import re
import shlex
import string
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machineroom.errors import InputError, InputErrors, Location
from machineroom.inventory.model import Inventory
from machineroom.inventory.yaml_inventory import (
    ANSIBLE_NAMES,
    _RawGroup,
    _RawHost,
    _Reader,
    build_inventory,
)
from machineroom.yamlio import LocatedDict, read_text

# ansible-core's patterns: a section header and a bare group name, each with an optional comment
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_RANGE = re.compile(r"\[([^\]]*)\]")
_KINDS = ("hosts", "children", "vars")
_COMMENTS = ("#", ";")
_PORT_NAMES = {"port", *(k for k, v in ANSIBLE_NAMES.items() if v == "port")}
_TEXT_FIELDS = {"host", "user", "ssh_key", "description", "tunnel", "connection"}
_TEXT_NAMES = _TEXT_FIELDS | {k for k, v in ANSIBLE_NAMES.items() if v in _TEXT_FIELDS}


def parse_ini_value(text: str) -> Any:
    """A value as Ansible's INI plugin reads it: a Python literal if it is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain_data(value)


def _plain_data(value: Any) -> Any:
    # what literal_eval knows but a variable cannot be becomes a list or the text, as in Ansible
    if isinstance(value, list | tuple | set):
        return [_plain_data(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain_data(v) for k, v in value.items()}
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex | bytes):
        return str(value)
    return value


def expand_ini_pattern(pattern: str) -> list[str]:
    """Host names from a pattern with ranges, by ansible-core's rules.

    `[01:03]` keeps zero padding (begin and end must then be the same length), `[a:f]` counts
    letters, `[:3]` starts at 0, `[1:9:2]` has a step. A ValueError says what is wrong.
    """
    match = _RANGE.search(pattern)
    if not match or ":" not in match.group(1):
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    bounds = match.group(1).split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"range [{match.group(1)}] must be [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError(f"range [{match.group(1)}] has no end value")
    if not step_text.isdigit() or int(step_text) < 1:
        raise ValueError(f"range [{match.group(1)}]: the step must be a positive integer")
    step = int(step_text)
    width = 0
    if begin.startswith("0") and len(begin) > 1:
        if len(begin) != len(end):
            raise ValueError(
                f"range [{match.group(1)}]: a zero-padded begin and the end must be as long"
            )
        width = len(begin)
    letters = string.ascii_letters
    items: list[str]
    if begin in letters and end in letters and len(begin) == len(end) == 1:
        if letters.index(begin) > letters.index(end):
            raise ValueError(f"range [{match.group(1)}]: begin must not be after end")
        items = list(letters[letters.index(begin) : letters.index(end) + 1 : step])
    elif begin.isdigit() and end.isdigit():
        items = [str(i).zfill(width) for i in range(int(begin), int(end) + 1, step)]
    else:
        raise ValueError(f"range [{match.group(1)}] must be numbers or single letters")
    return [name for item in items for name in expand_ini_pattern(f"{head}{item}{tail}")]


def _split_port(pattern: str) -> tuple[str, int | None]:
    """`web1:2222` -> ('web1', 2222); `[::1]:22` -> ('::1', 22); a bare IPv6 address has none."""
    bracketed = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$", pattern)
    if bracketed and bracketed.group(1).count(":") >= 2:  # an IPv6 address, not a range
        port = bracketed.group(2)
        return bracketed.group(1), int(port) if port else None
    outside = _RANGE.sub("", pattern)  # colons inside ranges are not port separators
    if outside.count(":") == 1:
        match = re.match(r"^(.*):(\d+)$", pattern)
        if match:
            return match.group(1), int(match.group(2))
    return pattern, None


@dataclass
class _Pending:
    """A group used before any section defined it (Ansible's pending declarations)."""

    kind: str  # "vars" or "children"
    location: Location
    parents: list[str] = field(default_factory=list)


class _IniReader:
    """Reads the lines of one INI inventory into a `_Reader`'s raw groups and hosts."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.reader = _Reader(source)
        self.pending: dict[str, _Pending] = {}
        self.errors = self.reader.errors
        for name in ("all", "ungrouped"):
            self.reader.groups[name] = _RawGroup(name, Location(source, 1))
        self.vars_sections: dict[str, LocatedDict] = {}

    def error(self, message: str, line: int, expected: str | None = None) -> None:
        """Record an error at a line of this file."""
        self.errors.append(InputError(message, Location(self.source, line), expected))

    def read(self, text: str) -> None:
        """Read every line; errors are collected, not raised."""
        group, kind = "ungrouped", "hosts"
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith(_COMMENTS):
                continue
            section = _SECTION.match(line)
            if section:
                group, kind = section.group(1), section.group(2) or "hosts"
                if kind not in _KINDS:
                    self.error(
                        f"section [{group}:{kind}] has an unknown type '{kind}'",
                        number,
                        "[NAME], [NAME:children] or [NAME:vars]",
                    )
                    kind = "skip"
                    continue
                self.open_section(group, kind, number)
                continue
            if line.startswith("[") and line.endswith("]"):
                self.error(
                    f"invalid section header {line}",
                    number,
                    "[NAME], [NAME:children] or [NAME:vars] with no spaces",
                )
                kind = "skip"
                continue
            if kind == "hosts":
                self.read_host(group, line, number)
            elif kind == "vars":
                self.read_var(group, line, number)
            elif kind == "children":
                self.read_child(group, line, number)
        for name, pending in self.pending.items():
            if pending.kind == "vars":
                self.errors.append(
                    InputError(
                        f"section [{name}:vars] is for a group no section defines",
                        pending.location,
                        f"a [{name}] or [{name}:children] section",
                    )
                )
            else:
                self.errors.append(
                    InputError(
                        f"section [{pending.parents[-1]}:children] names group '{name}', "
                        "which no section defines",
                        pending.location,
                        f"a [{name}] or [{name}:children] section",
                    )
                )

    def open_section(self, name: str, kind: str, number: int) -> None:
        """A `[name]`, `[name:children]` or `[name:vars]` header, as Ansible records it."""
        groups = self.reader.groups
        if name not in groups:
            if kind == "vars" and name not in self.pending:
                self.pending[name] = _Pending("vars", Location(self.source, number))
            groups[name] = _RawGroup(name, Location(self.source, number))
        pending = self.pending.get(name)
        if pending is not None and kind != "vars":
            if pending.kind == "children":
                self.add_pending_children(name)
            else:
                del self.pending[name]

    def add_pending_children(self, name: str) -> None:
        """A group named as a child before its section: link it to the parents now."""
        pending = self.pending.pop(name)
        for parent in pending.parents:
            self.link(parent, name, pending.location)
            if parent in self.pending and self.pending[parent].kind == "children":
                self.add_pending_children(parent)

    def link(self, parent: str, child: str, where: Location) -> None:
        """`child` becomes a child group of `parent`; a group cannot be its own child."""
        if parent == child:
            self.errors.append(
                InputError(
                    f"group '{child}' is listed as a child of itself",
                    where,
                    "the name of another group",
                )
            )
            return
        children = self.reader.groups[parent].children
        if child not in children:
            children.append(child)

    def read_host(self, group: str, line: str, number: int) -> None:
        """`PATTERN key=value ...`: the hosts it names join `group` with those variables."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            self.error(f"cannot split the host line: {exc}", number, "matching quotes")
            return
        if not words:
            return
        pattern = words[0]
        if pattern.endswith(":"):
            self.error(f"host '{pattern}' ends in ':'", number, "NAME or NAME:PORT")
            return
        name_part, port = _split_port(pattern)
        try:
            names = expand_ini_pattern(name_part)
        except ValueError as exc:
            self.error(f"host '{pattern}': {exc}", number, "a range like web[01:20] or db-[a:f]")
            return
        values: dict[str, Any] = {}
        if port is not None:
            values["ansible_port"] = port
        for word in words[1:]:
            key, sep, text = word.partition("=")
            if not sep or not key:
                self.error(
                    f"host '{pattern}': '{word}' is not a variable assignment", number, "key=value"
                )
                return
            values[key] = parse_ini_value(text)
        where = Location(self.source, number)
        if not self.check_fields(values, f"host '{pattern}'", number):
            return
        members = self.reader.groups[group].hosts
        for host_id in names:
            host = self.reader.hosts.setdefault(host_id, _RawHost(host_id, where))
            if host_id not in members:
                members.append(host_id)
            if values:
                host.inline.append(
                    self.reader.layer(self.located(values, where), f"host {host_id}")
                )

    def read_var(self, group: str, line: str, number: int) -> None:
        """`key = value` in a `[group:vars]` section."""
        key, sep, text = line.partition("=")
        key = key.strip()
        if not sep or not key:
            self.error(
                f"[{group}:vars]: '{line}' is not a variable assignment", number, "key=value"
            )
            return
        value = parse_ini_value(text.strip())
        if not self.check_fields({key: value}, f"group '{group}'", number):
            return
        where = Location(self.source, number)
        section = self.vars_sections.get(group)
        if section is None:
            section = self.vars_sections[group] = self.located({}, where)
        section[key] = value
        section.key_locations[key] = section.value_locations[key] = where

    def read_child(self, group: str, line: str, number: int) -> None:
        """A group name in a `[group:children]` section."""
        match = _GROUP_NAME.match(line)
        if not match:
            self.error(f"[{group}:children]: '{line}' is not a group name", number, "a group name")
            return
        child, where = match.group(1), Location(self.source, number)
        if child in self.reader.groups:
            self.link(group, child, where)
        elif child in self.pending:
            self.pending[child].parents.append(group)
        else:
            self.pending[child] = _Pending("children", where, [group])

    def check_fields(self, values: dict[str, Any], owner: str, number: int) -> bool:
        """Ports must be integers; text fields become text (`ansible_user=123` is a name)."""
        for key, value in values.items():
            if key in _PORT_NAMES and not (
                isinstance(value, int) or (isinstance(value, str) and value.isdigit())
            ):
                self.error(f"{owner}: {key}={value!r} is not a port", number, "an integer 1-65535")
                return False
            if key in _TEXT_NAMES and not isinstance(value, str):
                values[key] = str(value)
        return True

    @staticmethod
    def located(values: dict[str, Any], where: Location) -> LocatedDict:
        """A mapping whose keys and values are all placed at one line (for the shared reader)."""
        located = LocatedDict(values)
        located.location = where
        located.key_locations = dict.fromkeys(values, where)
        located.value_locations = dict.fromkeys(values, where)
        return located

    def finish(self) -> _Reader:
        """Group vars attached, top-level groups and `ungrouped` worked out."""
        groups = self.reader.groups
        for name, section in self.vars_sections.items():
            groups[name].inline.append(self.reader.layer(section, f"group {name}"))
        listed = {child for g in groups.values() for child in g.children}
        self.reader.top_level = [n for n in groups if n != "all" and n not in listed]
        grouped = {h for name, g in groups.items() if name != "all" for h in g.hosts}
        ungrouped = groups["ungrouped"].hosts
        ungrouped.extend(h for h in self.reader.hosts if h not in grouped)
        return self.reader


def parse_ini_inventory(
    text: str, source: str, base: Path | None = None, var_dirs: Sequence[Path] = ()
) -> Inventory:
    """An Inventory from INI text; `base` is the folder holding group_vars/ and host_vars/,
    `var_dirs` more such folders read after it (the playbook's)."""
    ini = _IniReader(source)
    ini.read(text)
    if ini.errors:
        raise InputErrors(ini.errors)
    return build_inventory(ini.finish(), source, base, var_dirs)


def load_ini_inventory(path: str | Path, var_dirs: Sequence[Path] = ()) -> Inventory:
    """Load an INI inventory file and the group_vars/ and host_vars/ folders beside it (then
    those in `var_dirs`)."""
    return parse_ini_inventory(read_text(Path(path)), str(path), Path(path).parent, var_dirs)
