"""YAML loading that remembers where every value came from.

`load_yaml(path)` returns plain Python data (dict, list, str, int, ...) whose dicts and lists
are subclasses carrying the `Location` of each key and item, so that a later validation error
can name `file:line:col`. Duplicate keys are an error (PyYAML silently keeps the last one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from machineroom.errors import InputError, Location


class LocatedDict(dict[str, Any]):
    """A mapping from YAML; `location` is the mapping's own, `key_locations[k]` each key's."""

    location: Location
    key_locations: dict[str, Location]
    value_locations: dict[str, Location]


class LocatedList(list[Any]):
    """A sequence from YAML; `item_locations[i]` is where item i starts."""

    location: Location
    item_locations: list[Location]


class LocatedStr(str):
    """A string scalar from YAML that knows where it was written."""

    location: Location


class VaultTagged(str):
    """A scalar written with the `!vault` tag: an encrypted value kept as its ciphertext."""

    location: Location


class EnvTagged(str):
    """A scalar written with the `!env` tag: the name of an environment variable."""

    location: Location


def _loc(source: str, mark: yaml.Mark) -> Location:
    return Location(source, mark.line + 1, mark.column + 1)


def _make_loader(source: str) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LocatedDict:
        loader.flatten_mapping(node)
        result = LocatedDict()
        result.location = _loc(source, node.start_mark)
        result.key_locations = {}
        result.value_locations = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise InputError(
                    f"duplicate key '{key}' (first at line {result.key_locations[key].line})",
                    _loc(source, key_node.start_mark),
                    "each key once per mapping",
                )
            result[key] = loader.construct_object(value_node, deep=True)
            result.key_locations[key] = _loc(source, key_node.start_mark)
            result.value_locations[key] = _loc(source, value_node.start_mark)
        return result

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LocatedList:
        result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
        result.location = _loc(source, node.start_mark)
        result.item_locations = [_loc(source, child.start_mark) for child in node.value]
        return result

    def construct_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> LocatedStr:
        value = LocatedStr(loader.construct_scalar(node))
        value.location = _loc(source, node.start_mark)
        return value

    def construct_vault(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> VaultTagged:
        value = VaultTagged(str(loader.construct_scalar(node)).strip())
        value.location = _loc(source, node.start_mark)
        return value

    def construct_env(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> EnvTagged:
        value = EnvTagged(str(loader.construct_scalar(node)).strip())
        value.location = _loc(source, node.start_mark)
        return value

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG, construct_str)
    Loader.add_constructor("!vault", construct_vault)
    Loader.add_constructor("!env", construct_env)
    return Loader


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; `source` names it in errors. A syntax error becomes an InputError."""
    try:
        return yaml.load(text, Loader=_make_loader(source))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _loc(source, mark) if mark else Location(source)
        raise InputError(f"invalid YAML: {exc.problem or exc.context}", where) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", Location(source)) from None


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is an InputError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", Location(source)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read file: {exc}", Location(source)) from None
    return parse_yaml(text, source)


def location_of(
    node: Any, key: str | int | None = None, default: Location | None = None
) -> Location:
    """Best-known location of `node[key]` (or of `node` itself when key is None)."""
    if isinstance(node, LocatedDict) and isinstance(key, str) and key in node.value_locations:
        return node.value_locations[key]
    if (
        isinstance(node, LocatedList)
        and isinstance(key, int)
        and 0 <= key < len(node.item_locations)
    ):
        return node.item_locations[key]
    where = getattr(node, "location", None)
    if isinstance(where, Location):
        return where
    return default or Location("<unknown>")


def key_location_of(node: Any, key: str, default: Location | None = None) -> Location:
    """Where the key `key` itself is written in mapping `node`."""
    if isinstance(node, LocatedDict) and key in node.key_locations:
        return node.key_locations[key]
    return location_of(node, None, default)


def to_plain(value: Any) -> Any:
    """Strip location subclasses: plain dict/list/str, e.g. for JSON or writing YAML back."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
