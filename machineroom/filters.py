"""The Jinja2 filters and tests that Ansible users expect, beyond Jinja2's own builtins.

Jinja2 already gives `default`/`d` (with the boolean second argument), `int`, `float`,
`string`, `lower`, `upper`, `join`, `unique`, `first`, `last`, `length`, `map`, `select`,
`selectattr`, `sort`, `replace`, `trim`, `min`, `max`, `sum`, `round`, ...; this module adds the
rest. Everything here is a plain function of its arguments (no I/O besides `realpath`), so it
is easy to test; `templating.py` registers `FILTERS` and `TESTS` on its environment. PyYAML is
imported only by the YAML filters, to keep `import machineroom.templating` light.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from jinja2 import Undefined
from jinja2.exceptions import FilterArgumentError, UndefinedError

from machineroom import filters_more

_TRUE_WORDS = frozenset({"yes", "on", "1", "true", "y", "t"})


def to_plain(value: Any) -> Any:
    """Plain dict/list/str/... for JSON and YAML output (location and Unsafe subclasses gone)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


# --- type conversion -------------------------------------------------------------------------


def to_bool(value: Any) -> bool:
    """Ansible's `bool`: yes/on/1/true/y/t (any case) are true, every other string is false."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return value == 1
    return str(value).strip().lower() in _TRUE_WORDS


def ternary(value: Any, true_value: Any, false_value: Any, none_value: Any = None) -> Any:
    """`cond | ternary(a, b)`: a when cond is truthy, else b (none_value for None if given)."""
    if value is None and none_value is not None:
        return none_value
    return true_value if value else false_value


def mandatory(value: Any, msg: str | None = None) -> Any:
    """Fail with the variable's name when the value is undefined."""
    if isinstance(value, Undefined):
        name = value._undefined_name
        raise UndefinedError(msg or f"mandatory variable '{name}' is not defined")
    return value


def type_debug(value: Any) -> str:
    """The Python type name of a value, for debugging templates."""
    return type(value).__name__


# --- JSON, YAML, base64 ----------------------------------------------------------------------


def to_json(value: Any, **kwargs: Any) -> str:
    """Compact JSON (`sort_keys`, `indent` ... pass through)."""
    return json.dumps(to_plain(value), **kwargs)


def to_nice_json(value: Any, indent: int = 4, sort_keys: bool = True, **kwargs: Any) -> str:
    """Indented, key-sorted JSON, as Ansible's."""
    return json.dumps(to_plain(value), indent=indent, sort_keys=sort_keys, **kwargs)


def from_json(text: str) -> Any:
    """Parse JSON text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FilterArgumentError(f"from_json: invalid JSON: {exc}") from None


def to_yaml(value: Any, **kwargs: Any) -> str:
    """YAML, flow style for short collections as Ansible's `to_yaml`."""
    import yaml

    kwargs.setdefault("default_flow_style", None)
    kwargs.setdefault("allow_unicode", True)
    return str(yaml.safe_dump(to_plain(value), **kwargs))


def to_nice_yaml(value: Any, indent: int = 4, **kwargs: Any) -> str:
    """Block-style YAML with Ansible's indent of 4."""
    import yaml

    kwargs.setdefault("allow_unicode", True)
    kwargs.setdefault("sort_keys", True)
    return str(yaml.safe_dump(to_plain(value), indent=indent, default_flow_style=False, **kwargs))


def from_yaml(text: str) -> Any:
    """Parse YAML text (safe loader), within the limits every YAML file has: a host's
    output fed through it cannot be an alias bomb."""
    from machineroom.errors import InputError
    from machineroom.yamlio import parse_yaml, to_plain

    try:
        return to_plain(parse_yaml(str(text), "from_yaml"))
    except InputError as exc:
        raise FilterArgumentError(f"from_yaml: invalid YAML: {exc}") from None


def b64encode(value: Any, encoding: str = "utf-8") -> str:
    """Base64 of the text's bytes."""
    return base64.b64encode(str(value).encode(encoding)).decode("ascii")


def b64decode(value: Any, encoding: str = "utf-8") -> str:
    """Text from base64."""
    try:
        return base64.b64decode(str(value), validate=False).decode(encoding)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FilterArgumentError(f"b64decode: {exc}") from None


# --- paths and shell -------------------------------------------------------------------------


def basename(path: Any) -> str:
    """The last part of a path."""
    return os.path.basename(str(path))


def dirname(path: Any) -> str:
    """The path without its last part."""
    return os.path.dirname(str(path))


def expanduser(path: Any) -> str:
    """`~` replaced by the workstation user's home (templating runs on the workstation)."""
    return os.path.expanduser(str(path))


def realpath(path: Any) -> str:
    """The canonical path on the workstation."""
    return os.path.realpath(str(path))


def splitext(path: Any) -> list[str]:
    """`[root, ext]` as `os.path.splitext`."""
    return list(os.path.splitext(str(path)))


def quote(value: Any) -> str:
    """Quote for a POSIX shell, so that a value is one word whatever it holds."""
    return shlex.quote(str(value))


def split(value: Any, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    """`str.split` as a filter."""
    return str(value).split(sep, maxsplit)


# --- regular expressions ---------------------------------------------------------------------


def _flags(ignorecase: bool, multiline: bool) -> int:
    return (re.IGNORECASE if ignorecase else 0) | (re.MULTILINE if multiline else 0)


def regex_replace(
    value: Any,
    pattern: str = "",
    replacement: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    count: int = 0,
) -> str:
    """`re.sub`; `\\1` and `\\g<name>` refer to groups."""
    return re.sub(
        pattern, replacement, str(value), count=count, flags=_flags(ignorecase, multiline)
    )


def regex_search(
    value: Any,
    pattern: str,
    *groups: Any,
    ignorecase: bool = False,
    multiline: bool = False,
) -> Any:
    """The first match (or the named/numbered groups asked for, as a list); None if none."""
    match = re.search(pattern, str(value), flags=_flags(ignorecase, multiline))
    if match is None:
        return None
    if not groups:
        return match.group(0)
    picked: list[Any] = []
    for group in groups:
        text = str(group)
        if text.startswith("\\g<") and text.endswith(">"):
            picked.append(match.group(text[3:-1]))
        elif text.startswith("\\") and text[1:].isdigit():
            picked.append(match.group(int(text[1:])))
        else:
            raise FilterArgumentError(
                f"regex_search: unknown group '{text}' (use '\\1' or '\\g<name>')"
            )
    return picked


def regex_findall(
    value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False
) -> list[Any]:
    """Every match, as `re.findall`."""
    return re.findall(pattern, str(value), flags=_flags(ignorecase, multiline))


def regex_escape(value: Any) -> str:
    """Escape regular-expression characters."""
    return re.escape(str(value))


# --- lists and dicts -------------------------------------------------------------------------


def _unique(items: Iterable[Any]) -> list[Any]:
    result: list[Any] = []
    for item in items:
        if item not in result:
            result.append(item)
    return result


def union(a: Iterable[Any], b: Iterable[Any]) -> list[Any]:
    """Items of either list, each once, in order."""
    return _unique(itertools.chain(a, b))


def intersect(a: Iterable[Any], b: Iterable[Any]) -> list[Any]:
    """Items in both lists, each once, in a's order."""
    others = list(b)
    return _unique(x for x in a if x in others)


def difference(a: Iterable[Any], b: Iterable[Any]) -> list[Any]:
    """Items of a that are not in b, each once."""
    others = list(b)
    return _unique(x for x in a if x not in others)


def symmetric_difference(a: Iterable[Any], b: Iterable[Any]) -> list[Any]:
    """Items in exactly one of the lists."""
    left, right = list(a), list(b)
    return _unique([*(x for x in left if x not in right), *(x for x in right if x not in left)])


def flatten(value: Iterable[Any], levels: int | None = None, skip_nulls: bool = True) -> list[Any]:
    """Nested lists made flat (`levels` deep at most); None items dropped as Ansible does."""
    result: list[Any] = []
    for item in value:
        if item is None and skip_nulls:
            continue
        if isinstance(item, list | tuple) and (levels is None or levels > 0):
            result.extend(flatten(item, None if levels is None else levels - 1, skip_nulls))
        else:
            result.append(item)
    return result


def dict2items(
    value: Mapping[str, Any], key_name: str = "key", value_name: str = "value"
) -> list[dict[str, Any]]:
    """`{a: 1}` → `[{key: a, value: 1}]`."""
    if not isinstance(value, Mapping):
        raise FilterArgumentError(f"dict2items expects a mapping, got {type(value).__name__}")
    return [{key_name: k, value_name: v} for k, v in value.items()]


def items2dict(
    value: Iterable[Mapping[str, Any]], key_name: str = "key", value_name: str = "value"
) -> dict[Any, Any]:
    """`[{key: a, value: 1}]` → `{a: 1}`."""
    try:
        return {item[key_name]: item[value_name] for item in value}
    except (KeyError, TypeError) as exc:
        raise FilterArgumentError(
            f"items2dict expects a list of mappings with '{key_name}' and '{value_name}': {exc}"
        ) from None


def _merge(
    a: Mapping[str, Any], b: Mapping[str, Any], recursive: bool, list_merge: str
) -> dict[str, Any]:
    result = dict(a)
    for key, value in b.items():
        old = result.get(key)
        if recursive and isinstance(old, Mapping) and isinstance(value, Mapping):
            result[key] = _merge(old, value, recursive, list_merge)
        elif isinstance(old, list) and isinstance(value, list) and list_merge != "replace":
            if list_merge == "append":
                result[key] = [*old, *value]
            elif list_merge == "prepend":
                result[key] = [*value, *old]
            elif list_merge == "append_rp":
                result[key] = [*(x for x in old if x not in value), *value]
            elif list_merge == "prepend_rp":
                result[key] = [*value, *(x for x in old if x not in value)]
            elif list_merge == "keep":
                result[key] = old
            else:
                raise FilterArgumentError(f"combine: unknown list_merge '{list_merge}'")
        else:
            result[key] = value
    return result


def combine(*dicts: Any, recursive: bool = False, list_merge: str = "replace") -> dict[str, Any]:
    """Later mappings win; `recursive=True` merges nested mappings instead of replacing them."""
    result: dict[str, Any] = {}
    for item in flatten(dicts, levels=1):
        if not isinstance(item, Mapping):
            raise FilterArgumentError(f"combine expects mappings, got {type(item).__name__}")
        result = _merge(result, item, recursive, list_merge)
    return result


def zip_lists(*lists: Iterable[Any]) -> list[list[Any]]:
    """`a | zip(b)`: pairs, as far as the shortest list."""
    return [list(group) for group in zip(*lists, strict=False)]


def zip_longest(*lists: Iterable[Any], fillvalue: Any = None) -> list[list[Any]]:
    """`a | zip_longest(b)`: pairs, the shorter lists padded with `fillvalue`."""
    return [list(group) for group in itertools.zip_longest(*lists, fillvalue=fillvalue)]


# --- hashes ----------------------------------------------------------------------------------


def hash_value(value: Any, algorithm: str = "sha1") -> str:
    """Hex digest of the text (`hash('sha256')`, `hash('md5')`, ...)."""
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        raise FilterArgumentError(
            f"hash: unknown algorithm '{algorithm}'; expected one of "
            + ", ".join(sorted(hashlib.algorithms_guaranteed))
        ) from None
    digest.update(str(value).encode("utf-8"))
    return digest.hexdigest()


def md5(value: Any) -> str:
    """MD5 hex digest (a checksum, not a password hash)."""
    return hash_value(value, "md5")


def sha1(value: Any) -> str:
    """SHA-1 hex digest; `checksum` is the same, as in Ansible."""
    return hash_value(value, "sha1")


# --- tests -----------------------------------------------------------------------------------


def test_match(value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False) -> bool:
    """The pattern matches at the start of the value."""
    return re.match(pattern, str(value), flags=_flags(ignorecase, multiline)) is not None


def test_search(
    value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False
) -> bool:
    """The pattern matches somewhere in the value."""
    return re.search(pattern, str(value), flags=_flags(ignorecase, multiline)) is not None


def test_regex(
    value: Any,
    pattern: str,
    ignorecase: bool = False,
    multiline: bool = False,
    match_type: str = "search",
) -> bool:
    """`match_type` is search (default), match or fullmatch."""
    func: Callable[..., Any] = getattr(re, match_type, None) or re.search
    return func(pattern, str(value), flags=_flags(ignorecase, multiline)) is not None


_VERSION_OPS: dict[str, Callable[[Any, Any], bool]] = {}
for _names, _op in (
    (("<", "lt"), lambda a, b: a < b),
    (("<=", "le"), lambda a, b: a <= b),
    ((">", "gt"), lambda a, b: a > b),
    ((">=", "ge"), lambda a, b: a >= b),
    (("==", "=", "eq"), lambda a, b: a == b),
    (("!=", "<>", "ne"), lambda a, b: a != b),
):
    for _name in _names:
        _VERSION_OPS[_name] = _op


def version_key(text: Any) -> tuple[tuple[int, int | str], ...]:
    """A sortable key like distutils' LooseVersion: numbers compare as numbers.

    "v" prefixes and build suffixes after "+" are ignored ("v20.10.7+dfsg1" is 20.10.7).
    """
    words = str(text).strip().lower().removeprefix("v").split("+", 1)[0]
    parts = re.findall(r"\d+|[a-z]+", words)
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts)


def test_version(value: Any, version: Any, operator: str = "eq", strict: bool = False) -> bool:
    """`x is version('2.0', '>=')`: compares versions part by part, numbers as numbers."""
    op = _VERSION_OPS.get(str(operator))
    if op is None:
        raise FilterArgumentError(
            f"version: unknown operator '{operator}'; expected one of " + ", ".join(_VERSION_OPS)
        )
    return op(version_key(value), version_key(version))


def _result(value: Any, test: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FilterArgumentError(
            f"the '{test}' test expects a registered result (a mapping), got {type(value).__name__}"
        )
    return value


def _loop_results(result: Mapping[str, Any]) -> Sequence[Any]:
    items = result.get("results")
    return items if isinstance(items, list) else []


def test_failed(value: Any) -> bool:
    """A registered result that failed (or any loop item that did)."""
    result = _result(value, "failed")
    if result.get("failed"):
        return True
    return any(isinstance(r, Mapping) and r.get("failed") for r in _loop_results(result))


def test_succeeded(value: Any) -> bool:
    """A registered result that did not fail."""
    return not test_failed(value)


def test_changed(value: Any) -> bool:
    """A registered result that changed something (or any loop item that did)."""
    result = _result(value, "changed")
    if result.get("changed"):
        return True
    return any(isinstance(r, Mapping) and r.get("changed") for r in _loop_results(result))


def test_skipped(value: Any) -> bool:
    """A registered result of a skipped task."""
    return bool(_result(value, "skipped").get("skipped"))


def test_finished(value: Any) -> bool:
    """An async job's result (`async_status`) that has ended; other results count as ended."""
    return _result(value, "finished").get("finished", True) in (True, 1)


def test_started(value: Any) -> bool:
    """An async job's result that says the job started (`poll: 0`)."""
    return _result(value, "started").get("started", False) in (True, 1)


def test_truthy(value: Any, convert_bool: bool = False) -> bool:
    """Python truth, or Ansible's `bool` words with convert_bool=True."""
    return to_bool(value) if convert_bool and isinstance(value, str) else bool(value)


def test_falsy(value: Any, convert_bool: bool = False) -> bool:
    """The opposite of truthy."""
    return not test_truthy(value, convert_bool)


# --- comment ---------------------------------------------------------------------------------

_COMMENT_STYLES: dict[str, dict[str, str]] = {
    "plain": {"decoration": "# "},
    "erlang": {"decoration": "% "},
    "c": {"decoration": "// "},
    "cblock": {"beginning": "/*", "decoration": " * ", "end": " */"},
    "xml": {"beginning": "<!--", "decoration": " - ", "end": "-->"},
}


def comment(text: Any, style: str = "plain", **options: Any) -> str:
    """`{{ ansible_managed | comment }}`: the text as a comment block, as Ansible's filter.

    Styles: plain (`#`), erlang (`%`), c (`//`), cblock (`/* */`), xml (`<!-- -->`); the
    options `decoration`, `beginning`, `end`, `prefix`, `prefix_count`, `postfix`,
    `postfix_count` and `newline` change the pieces. An empty first and last comment line
    (prefix and postfix) frame the text unless set to "".
    """
    if style not in _COMMENT_STYLES:
        raise FilterArgumentError(
            f"comment: unknown style {style!r} (expected one of: {', '.join(_COMMENT_STYLES)})"
        )
    known = {"newline", "beginning", "prefix", "prefix_count", "decoration", "postfix"}
    known |= {"postfix_count", "end"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise FilterArgumentError(
            f"comment: unknown option {unknown[0]!r} (expected: {', '.join(sorted(known))})"
        )
    frame = str(options.get("decoration", _COMMENT_STYLES[style]["decoration"])).rstrip()
    p: dict[str, Any] = {
        "newline": "\n",
        "beginning": "",
        "prefix": frame,
        "prefix_count": 1,
        "decoration": "",
        "postfix": frame,
        "postfix_count": 1,
        "end": "",
    }
    p.update(_COMMENT_STYLES[style])
    p.update(options)
    newline, decoration = str(p["newline"]), str(p["decoration"])
    beginning = f"{p['beginning']}{newline}" if p["beginning"] else ""
    prefix = ""
    if p["prefix"]:
        line = newline if p["prefix"] == newline else f"{p['prefix']}{newline}"
        prefix = line * int(p["prefix_count"])
    # every line of the text gets the decoration; a line left empty keeps no trailing space
    body = decoration + str(text).replace(newline, newline + decoration)
    body = body.replace(decoration + newline, decoration.rstrip() + newline)
    postfix = "".join(newline + str(p["postfix"]) for _ in range(int(p["postfix_count"])))
    end = f"{newline}{p['end']}" if p["end"] else ""
    return beginning + prefix + body + postfix + end


FILTERS: dict[str, Callable[..., Any]] = {
    "comment": comment,
    "bool": to_bool,
    "ternary": ternary,
    "mandatory": mandatory,
    "type_debug": type_debug,
    "to_json": to_json,
    "to_nice_json": to_nice_json,
    "from_json": from_json,
    "to_yaml": to_yaml,
    "to_nice_yaml": to_nice_yaml,
    "from_yaml": from_yaml,
    "b64encode": b64encode,
    "b64decode": b64decode,
    "basename": basename,
    "dirname": dirname,
    "expanduser": expanduser,
    "realpath": realpath,
    "splitext": splitext,
    "quote": quote,
    "split": split,
    "regex_replace": regex_replace,
    "regex_search": regex_search,
    "regex_findall": regex_findall,
    "regex_escape": regex_escape,
    "union": union,
    "intersect": intersect,
    "difference": difference,
    "symmetric_difference": symmetric_difference,
    "flatten": flatten,
    "dict2items": dict2items,
    "items2dict": items2dict,
    "combine": combine,
    "zip": zip_lists,
    "zip_longest": zip_longest,
    "hash": hash_value,
    "checksum": sha1,
    "md5": md5,
    "sha1": sha1,
}

TESTS: dict[str, Callable[..., bool]] = {
    "match": test_match,
    "search": test_search,
    "regex": test_regex,
    "version": test_version,
    "version_compare": test_version,
    "failed": test_failed,
    "failure": test_failed,
    "succeeded": test_succeeded,
    "success": test_succeeded,
    "successful": test_succeeded,
    "changed": test_changed,
    "change": test_changed,
    "skipped": test_skipped,
    "skip": test_skipped,
    "finished": test_finished,
    "started": test_started,
    "truthy": test_truthy,
    "falsy": test_falsy,
}

# the less everyday ones (combinatorics, password_hash, dates, paths ...) live beside these
FILTERS.update(filters_more.FILTERS)
TESTS.update(filters_more.TESTS)
