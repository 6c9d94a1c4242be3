"""Module arguments as tasks write them: `key=value` strings, free-form text, and their check.

`parse_kv()` splits Ansible's old `path=/x state=directory` form, keeping quotes and Jinja2
`{{ ... }}` together. `check_args()` checks arguments against a module's JSON Schema before
anything runs; it reads the subset of JSON Schema module schemas use (type, enum, required,
properties, additionalProperties, items, anyOf/oneOf, minimum/maximum, minLength), because a
value holding `{{` is only known per host and must not be type-checked here, which jsonschema
cannot be told.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machineroom.errors import InputError, Location, did_you_mean
from machineroom.schema import TYPE_WORDS
from machineroom.yamlio import key_location_of, location_of

# Keys Ansible takes out of a free-form command line (`command: make creates=/x chdir=/src`).
RAW_KEYS = frozenset(
    {
        "creates",
        "removes",
        "chdir",
        "executable",
        "stdin",
        "stdin_add_newline",
        "strip_empty_ends",
    }
)


def split_args(text: str) -> list[str]:
    """Split on whitespace outside quotes and outside Jinja2 `{{ }}` / `{% %}` / `{# #}`."""
    tokens: list[str] = []
    current: list[str] = []
    quote: str | None = None
    depth = 0
    i = 0
    while i < len(text):
        char = text[i]
        pair = text[i : i + 2]
        if quote is None and pair in ("{{", "{%", "{#"):
            depth += 1
            current.append(pair)
            i += 2
            continue
        if quote is None and depth and pair in ("}}", "%}", "#}"):
            depth -= 1
            current.append(pair)
            i += 2
            continue
        if char == "\\" and quote and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char in "'\"" and depth == 0:
            if quote is None:
                quote = char
            elif quote == char:
                quote = None
        if char.isspace() and quote is None and depth == 0:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
        i += 1
    if current:
        tokens.append("".join(current))
    return tokens


def unquote(value: str) -> str:
    """Strip one pair of matching surrounding quotes, as Ansible's `unquote` does."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_kv(text: str, *, raw_keys: frozenset[str] | None = None) -> tuple[dict[str, str], str]:
    """`a=1 b="x y" rest` -> ({"a": "1", "b": "x y"}, "rest").

    With `raw_keys` (free-form modules), only those keys are taken out and everything else,
    `=` or not, stays in the free-form text, as Ansible does for `command`/`shell`.
    """
    found: dict[str, str] = {}
    rest: list[str] = []
    taken: list[str] = []
    for token in split_args(text):
        key, sep, value = token.partition("=")
        is_kv = bool(sep) and key.isidentifier()
        if is_kv and (raw_keys is None or key in raw_keys):
            found[key] = unquote(value)
            taken.append(token)
        else:
            rest.append(token)
    if raw_keys is None:
        return found, " ".join(rest)
    # Free-form text keeps its own spacing and line breaks (a `shell: |` script); only the
    # tokens taken out as arguments are cut from it.
    remaining = text
    for token in taken:
        remaining = remaining.replace(token, "", 1)
    return found, remaining.strip() if taken else text


def is_template(value: Any) -> bool:
    """True for a string that Jinja2 will render per host (holds `{{` or `{%`)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "null":
        return value is None
    return True


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(str(value))
    return str(value)


def _types(kind: Any) -> str:
    names = [kind] if isinstance(kind, str) else list(kind)
    return " or ".join(TYPE_WORDS.get(n, n) for n in names)


def check_value(
    value: Any, schema: Mapping[str, Any], prefix: str, where: Location
) -> list[InputError]:
    """Problems of one value against `schema`; templated strings pass any type check."""
    if not isinstance(schema, Mapping) or is_template(value):
        return []
    expected = schema.get("x-expected")
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(_type_ok(value, k) for k in kinds):
            return [InputError(f"{prefix}{_show(value)} is not {_types(kind)}", where, expected)]
    for branch_key in ("anyOf", "oneOf"):
        branches = schema.get(branch_key)
        if isinstance(branches, list) and branches:
            results = [check_value(value, b, prefix, where) for b in branches]
            if all(results):
                if expected:
                    return [InputError(f"{prefix}{_show(value)} is not valid", where, expected)]
                return results[0]
    if "enum" in schema and value not in schema["enum"]:
        choices = [str(c) for c in schema["enum"]]
        return [
            InputError(
                f"{prefix}{_show(value)} is not allowed" + did_you_mean(str(value), choices),
                where,
                expected or "one of: " + ", ".join(choices),
            )
        ]
    numeric = _type_ok(value, "number")
    if numeric and "minimum" in schema and value < schema["minimum"]:
        return [InputError(f"{prefix}{value} is out of range", where, expected)]
    if numeric and "maximum" in schema and value > schema["maximum"]:
        return [InputError(f"{prefix}{value} is out of range", where, expected)]
    if isinstance(value, str) and len(value) < int(schema.get("minLength", 0)):
        return [InputError(f"{prefix}empty value", where, expected or "a non-empty string")]
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        problems: list[InputError] = []
        for index, item in enumerate(value):
            item_where = location_of(value, index, where)
            problems += check_value(item, schema["items"], f"{prefix}[{index}]: ", item_where)
        return problems
    if isinstance(value, Mapping) and ("properties" in schema or "required" in schema):
        return check_mapping(value, schema, prefix, where, noun="key")
    return []


def check_mapping(
    args: Mapping[str, Any],
    schema: Mapping[str, Any],
    prefix: str,
    where: Location,
    *,
    noun: str = "argument",
) -> list[InputError]:
    """Problems of a mapping: unknown keys (with did-you-mean), missing ones, bad values."""
    problems: list[InputError] = []
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, value in args.items():
        if key in properties:
            problems += check_value(
                value, properties[key], f"{prefix}{key}: ", location_of(args, key, where)
            )
        elif extra is False:
            known = sorted(properties)
            problems.append(
                InputError(
                    f"{prefix}unknown {noun} '{key}'" + did_you_mean(key, known),
                    key_location_of(args, key, where),
                    "one of: " + ", ".join(known) if known else f"no {noun}s",
                )
            )
        elif isinstance(extra, Mapping):
            problems += check_value(value, extra, f"{prefix}{key}: ", location_of(args, key, where))
    for key in schema.get("required", []):
        if key not in args:
            problems.append(InputError(f"{prefix}missing required {noun} '{key}'", where))
    return problems


def check_args(
    module_name: str,
    args: Mapping[str, Any],
    schema: Mapping[str, Any],
    label: str,
    where: Location,
) -> list[InputError]:
    """Check a task's module arguments; messages read `task "X": apt: unknown argument ...`."""
    prefix = f"{label}{module_name}: "
    problems = check_mapping(args, schema, prefix, where)
    for branch_key in ("anyOf", "oneOf"):
        branches = schema.get(branch_key)
        if not isinstance(branches, list) or not branches:
            continue
        results: list[list[InputError]] = [check_mapping(args, b, prefix, where) for b in branches]
        if not all(results):
            continue
        if all(isinstance(b, Mapping) and list(b) == ["required"] for b in branches):
            # `anyOf: [{required: [content]}, {required: [src]}]`: say which would do
            names = " or ".join(" and ".join(f"'{n}'" for n in b["required"]) for b in branches)
            problems.append(InputError(f"{prefix}missing required argument {names}", where))
        else:
            fewest: list[InputError] = min(results, key=len)
            problems.extend(fewest)
    return problems
