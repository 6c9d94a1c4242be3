"""YAML loading that remembers where every value came from, within fixed limits.

`load_yaml(path)` returns plain Python data (dict, list, str, int, ...) whose dicts and lists
are subclasses carrying the `Location` of each key and item, so that a later validation error
can name `file:line:col`. Duplicate keys are an error (PyYAML silently keeps the last one).

Every YAML file the product reads goes through here, so the limits below hold for all of them
(playbooks, task files, vars files, inventories, group_vars/host_vars, role files, alerts.yml,
schedules.yml, `-e @file`). A file breaking one is an InputError naming `file:line:col`, found
while the file is parsed, before anything is built from it:

- `MAX_FILE_BYTES`: a bigger file is refused before it is parsed (loading holds about 110
  bytes of memory per byte of YAML: 4 MiB, some 30,000 hosts of inventory, is ~450 MB);
- `MAX_DEPTH`: collections nested deeper, written out or through an alias, are refused;
- `MAX_ALIAS_NODES`: the values aliases (`*name`, `<<: *name`) would add to one document,
  counted as if each alias were written out, are capped ("billion laughs").
"""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from machineroom.errors import InputError, Location
from machineroom.unsafe import Unsafe

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100
MAX_ALIAS_NODES = 100_000

# what YAML 1.1 refuses in a stream (PyYAML's own test), found here so that both parsers
# report it the same way, with a line and column
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


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


def _loc(source: str, mark: Any) -> Location:
    return Location(source, mark.line + 1, mark.column + 1)


class _BoundedLoader(Composer, SafeConstructor, Resolver):
    """A safe loader whose composer enforces MAX_DEPTH and MAX_ALIAS_NODES as it goes.

    Each composed node's expanded size (itself and everything under it, aliases written out)
    and height are kept, so an alias costs one lookup: the bomb is refused at the first alias
    that goes over, long before anything is expanded. Subclasses bring the parser.
    """

    source = "<yaml>"
    if TYPE_CHECKING:

        def peek_event(self) -> Any:
            """The next parser event (the parser subclass provides it)."""

        def dispose(self) -> None:
            """Free the parser (the parser subclass provides it)."""

    def __init__(self, stream: str) -> None:
        self.init_parser(stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._alias_nodes = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (size, height)

    def compose_document(self) -> Any:
        self._alias_nodes = 0
        self._measured = {}
        try:
            return super().compose_document()
        finally:
            self._measured = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        where = _loc(self.source, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._count_alias(str(event.anchor), target, where)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise InputError(
                    f"nested more than {MAX_DEPTH} levels deep",
                    where,
                    f"at most {MAX_DEPTH} levels of lists and mappings",
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._measure(node)
        return node

    def _count_alias(self, anchor: str, target: Any, where: Location) -> None:
        measured = self._measured.get(id(target))
        if measured is None:
            raise InputError(
                f"alias *{anchor} is inside its own anchor &{anchor}",
                where,
                "an alias to a value that is complete where the alias is written",
            )
        size, height = measured
        self._alias_nodes += size
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise InputError(
                f"alias *{anchor} takes the values aliases add to this document past "
                f"{MAX_ALIAS_NODES:,} ({self._alias_nodes:,} so far)",
                where,
                f"aliases that add at most {MAX_ALIAS_NODES:,} values per document",
            )
        if self._depth + height > MAX_DEPTH:
            raise InputError(
                f"alias *{anchor} nests its value more than {MAX_DEPTH} levels deep",
                where,
                f"at most {MAX_DEPTH} levels of lists and mappings",
            )

    def _measure(self, node: Any) -> None:
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            self._measured[id(node)] = (1, 1)
            return
        sizes = [self._measured.get(id(child), (1, 1)) for child in children]
        self._measured[id(node)] = (
            1 + sum(size for size, _ in sizes),
            1 + max((height for _, height in sizes), default=0),
        )

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError, AttributeError) as exc:
            # a date like 2024-13-45, an integer of 5000 digits, `!!timestamp nope`: the
            # scalar's own mistake (PyYAML's constructors fail on them in several ways)
            if not isinstance(node, yaml.ScalarNode):
                raise
            where = _loc(self.source, node.start_mark)
            expected = "quotes around it, to keep it as text"
            if not isinstance(exc, ValueError | OverflowError):
                tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
                problem = f"invalid value {_excerpt(node)} for {tag}"
            elif "integer string conversion" in str(exc):
                problem = f"an integer of {len(str(node.value))} digits is too long"
                expected = f"at most {sys.get_int_max_str_digits()} digits, or {expected}"
            else:
                problem = f"invalid value {_excerpt(node)}: {exc}"
            raise InputError(problem, where, expected) from None

    def init_parser(self, stream: str) -> None:
        """Start the parser on `stream` (each subclass brings its own)."""
        raise NotImplementedError


class _PythonLoader(_BoundedLoader, Reader, Scanner, Parser):
    """PyYAML's own parser: slower, but lazy all the way (see parse_yaml)."""

    def init_parser(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


if yaml.__with_libyaml__:  # libyaml's parser is five times faster; the composer stays ours
    from yaml._yaml import CParser

    class _LibyamlLoader(_BoundedLoader, CParser):
        """libyaml's parser under our composer."""

        def init_parser(self, stream: str) -> None:
            CParser.__init__(self, stream)

    _FastLoader: type[_BoundedLoader] = _LibyamlLoader
else:  # pragma: no cover
    _FastLoader = _PythonLoader


def _excerpt(node: Any) -> str:
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _make_loader(source: str, base: type[_BoundedLoader]) -> type[_BoundedLoader]:
    class Loader(base):  # type: ignore[valid-type,misc]
        pass

    Loader.source = source

    def construct_mapping(loader: _BoundedLoader, node: yaml.MappingNode) -> LocatedDict:
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

    def construct_sequence(loader: _BoundedLoader, node: yaml.SequenceNode) -> LocatedList:
        result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
        result.location = _loc(source, node.start_mark)
        result.item_locations = [_loc(source, child.start_mark) for child in node.value]
        return result

    def construct_str(loader: _BoundedLoader, node: yaml.ScalarNode) -> LocatedStr:
        value = LocatedStr(loader.construct_scalar(node))
        value.location = _loc(source, node.start_mark)
        return value

    def construct_vault(loader: _BoundedLoader, node: yaml.ScalarNode) -> VaultTagged:
        value = VaultTagged(str(loader.construct_scalar(node)).strip())
        value.location = _loc(source, node.start_mark)
        return value

    def construct_env(loader: _BoundedLoader, node: yaml.ScalarNode) -> EnvTagged:
        value = EnvTagged(str(loader.construct_scalar(node)).strip())
        value.location = _loc(source, node.start_mark)
        return value

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG, construct_str)
    Loader.add_constructor("!vault", construct_vault)
    Loader.add_constructor("!env", construct_env)
    # Ansible's `!unsafe`: the text is kept as written, never templated
    Loader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))
    return Loader


def _text_location(text: str, index: int, source: str) -> Location:
    line_start = text.rfind("\n", 0, index) + 1
    return Location(source, text.count("\n", 0, index) + 1, index - line_start + 1)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; `source` names it in errors. A syntax error becomes an InputError,
    and so does a document beyond the limits of this module."""
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        char = bad.group()
        what = "a NUL byte" if char == "\0" else f"control character {_codepoint(char)}"
        raise InputError(
            what,
            _text_location(text, bad.start(), source),
            'printable text (write control characters as escapes in double quotes, e.g. "\\t")',
        )
    try:
        return _load(text, source, _FastLoader)
    except _TooDeepForLibyaml:
        # libyaml reads ahead through flow brackets and stops at its own limit (1000) before
        # our composer sees level MAX_DEPTH + 1; PyYAML's parser does not read ahead, so it
        # finds the first level too deep, which is the place to show
        return _load(text, source, _PythonLoader)


class _TooDeepForLibyaml(Exception):
    pass


def _unclosed(exc: yaml.MarkedYAMLError, at_end: bool) -> str | None:
    """What was left open when the parser ran into the end of the text (`a quoted scalar`,
    `a flow sequence`), or None for any other error."""
    context, problem = exc.context or "", exc.problem or ""
    if exc.context_mark is None or not context.startswith(("while scanning", "while parsing")):
        return None
    if not at_end and "end of stream" not in problem and "document separator" not in problem:
        return None
    opened = context.split(" ", 2)[2]
    return _OPENED.get(opened, opened)


_OPENED = {  # PyYAML's words for what a user wrote
    "a quoted scalar": "a quoted string",
    "a flow sequence": "a [ list",
    "a flow mapping": "a { mapping",
    "a block mapping": "a mapping",
}


def _load(text: str, source: str, base: type[_BoundedLoader]) -> Any:
    try:
        loader = _make_loader(source, base)(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _loc(source, mark) if mark else Location(source)
        problem = exc.problem or exc.context or ""
        if "maximum nesting depth" in problem:
            raise _TooDeepForLibyaml from None
        at_end = mark is not None and mark.index >= len(text.rstrip())
        opened = _unclosed(exc, at_end)
        if opened is not None:  # a quote or bracket never closed: where it opens is the place
            assert exc.context_mark is not None and mark is not None
            raise InputError(
                f"invalid YAML: {opened} that starts here is not closed ({problem} at line "
                f"{mark.line + 1}, column {mark.column + 1})",
                _loc(source, exc.context_mark),
            ) from None
        raise InputError(f"invalid YAML: {problem}", where) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", Location(source)) from None


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def read_text(path: str | Path) -> str:
    """A user's text file, whole: at most MAX_FILE_BYTES of UTF-8 without NUL bytes.

    Anything else is an InputError naming the path, and for bad bytes the line and column
    of the first one: a missing file ("file not found"), a folder, a symlink loop, no
    permission, a file too big, bytes that are not UTF-8.
    """
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise unreadable(path, exc) from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            f"file larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
            Location(source),
            "a smaller file (split it: several files, group_vars/, host_vars/)",
        )
    return decode_text(data, source)


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 bytes as text; a NUL byte or bytes that are not UTF-8 are an InputError at the
    line and column of the first bad byte."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if 0 <= nul < exc.start:
            raise _bad_byte("a NUL byte", data, nul, source) from None
        problem = f"not UTF-8 text (byte 0x{data[exc.start]:02x})"
        raise _bad_byte(problem, data, exc.start, source) from None
    if nul >= 0:
        raise _bad_byte("a NUL byte", data, nul, source)
    return text


def _bad_byte(problem: str, data: bytes, offset: int, source: str) -> InputError:
    line_start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    where = Location(source, data.count(b"\n", 0, offset) + 1, col)
    return InputError(problem, where, "UTF-8 text (is this a binary file?)")


_REASONS = {
    errno.ELOOP: "a symlink loop",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "a folder, not a file",
    errno.ENOTDIR: "a path through something that is not a folder",
}


def unreadable(path: str | Path, exc: OSError) -> InputError:
    """The InputError for a file that could not be opened or read: its path and the reason
    in words ("file not found", "a symlink loop", "permission denied", ...)."""
    source = str(path)
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return InputError(
                f"cannot read: a symlink to a missing file ({os.readlink(path)})",
                Location(source),
                "a readable file",
            )
        return InputError("file not found", Location(source))
    reason = _REASONS.get(exc.errno or 0, (exc.strerror or str(exc)).lower())
    return InputError(f"cannot read: {reason}", Location(source), "a readable file")


def file_present(path: str | Path) -> bool:
    """True when `path` is a regular file, False when nothing is there.

    Anything else there is an InputError naming the path and the reason: a symlink loop or
    one to a missing file, a folder where a file is expected, a folder we may not look in.
    (`Path.is_file()` says False to all of these, and a role would quietly run without them.)
    """
    try:
        if Path(path).is_dir():
            raise InputError("cannot read: a folder, not a file", Location(str(path)), "a file")
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and not os.path.islink(path):
            return False
        if exc.errno == errno.ENOTDIR:
            return False
        raise unreadable(path, exc) from None
    return True


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file within this module's limits; a missing or unreadable file,
    bad bytes or a document over a limit are an InputError naming where.

    A whole-file vault (ours or ansible-vault's) is decrypted first, with the process's vault
    password (`machineroom.vault.open_vault_file`), and every string in it is masked."""
    text = read_text(path)
    if text.lstrip().startswith(("$MACHINEROOM_VAULT;", "$ANSIBLE_VAULT;")):
        from machineroom import vault  # lazily: most files are not encrypted

        data = parse_yaml(vault.open_vault_file(text, str(path)), str(path))
        vault.register_secrets(data)
        return data
    return parse_yaml(text, str(path))


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
    if isinstance(value, Unsafe):
        return value  # stays never-templated
    if isinstance(value, str):
        return str(value)
    return value
