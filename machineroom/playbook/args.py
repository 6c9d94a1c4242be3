"""Module arguments as tasks write them: `key=value` strings, free-form text, and their check.

`parse_kv()` splits Ansible's old `path=/x state=directory` form, keeping quotes and Jinja2
`{{ ... }}` together. `check_args()` checks arguments against a module's JSON Schema before
anything runs; it reads the subset of JSON Schema module schemas use (type, enum, required,
properties, additionalProperties, items, anyOf/oneOf, minimum/maximum, minLength), because a
value holding `{{` is only known per host and must not be type-checked here, which jsonschema
cannot be told.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from machineroom.errors import InputError, InputErrors, Location, did_you_mean
from machineroom.schema import TYPE_WORDS
from machineroom.yamlio import LocatedDict, key_location_of, location_of

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
        is_kv = bool(sep) and (key.isidentifier() or is_template(key))
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


# Ansible's boolean spellings (module_utils.parsing.convert_bool), compared lowercased.
TRUE_WORDS = frozenset({"yes", "on", "1", "true", "y", "t"})
FALSE_WORDS = frozenset({"no", "off", "0", "false", "n", "f"})
_INTEGER = re.compile(r"[-+]?[0-9]+")


def parse_bool(value: Any) -> bool | None:
    """`value` as Ansible reads a boolean (yes/no/on/off/1/0/y/n/t/f/true/false in any case,
    1 and 0); None when it is not one of those."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return None


def _kinds(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a property accepts, looking into anyOf/oneOf branches and enums."""
    kinds: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        kinds.add(kind)
    elif isinstance(kind, list):
        kinds.update(str(k) for k in kind)
    for branch_key in ("anyOf", "oneOf"):
        for branch in schema.get(branch_key) or ():
            if isinstance(branch, Mapping):
                kinds |= _kinds(branch)
    for choice in schema.get("enum") or ():
        kinds.add("boolean" if isinstance(choice, bool) else "string")
    return kinds


def convert_value(value: Any, schema: Mapping[str, Any]) -> Any:
    """`value` converted to the type `schema` declares, as Ansible converts module arguments:
    'yes' to true for a boolean, '600' to 600 for an integer, 'a,b' to a list, 3 to '3' for
    a string. A value that fits already, a template, or one that cannot be converted is
    returned unchanged (the check then names it)."""
    if not isinstance(schema, Mapping) or is_template(value) or value is None:
        return value
    kinds = _kinds(schema)
    if not kinds:
        return value
    if isinstance(value, list) and "array" in kinds:
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [convert_value(item, items) for item in value]
        return value
    if any(_type_ok(value, kind) for kind in kinds):
        return value
    if isinstance(value, str):
        if "boolean" in kinds and parse_bool(value) is not None:
            return parse_bool(value)
        text = value.strip()
        if kinds & {"integer", "number"} and _INTEGER.fullmatch(text):
            return int(text)
        if "number" in kinds:
            try:
                return float(text)
            except ValueError:
                pass
        if "array" in kinds:
            parts = [part.strip() for part in value.split(",") if part.strip()]
            items = schema.get("items")
            return [convert_value(p, items) if isinstance(items, Mapping) else p for p in parts]
        return value
    if "boolean" in kinds and not isinstance(value, bool) and parse_bool(value) is not None:
        return parse_bool(value)  # 1 / 0
    if "string" in kinds and isinstance(value, bool | int | float):
        return str(value)  # Ansible's str conversion: 3 -> "3", True -> "True"
    return value


def aliases_of(schema: Mapping[str, Any]) -> Mapping[str, str]:
    """The argument aliases a module declares (`x-aliases`: alias -> argument)."""
    found = schema.get("x-aliases")
    return found if isinstance(found, Mapping) else {}


def normalize_args(
    module_name: str,
    args: Mapping[str, Any],
    schema: Mapping[str, Any],
    label: str = "",
    where: Location | None = None,
) -> tuple[dict[str, Any], list[InputError]]:
    """Arguments as Ansible reads them: aliases renamed to their argument (`dest` -> `path`),
    values converted to the declared type. Keeps the YAML positions of a located mapping.
    An alias given together with its argument, or two aliases of one argument, is a problem."""
    aliases = aliases_of(schema)
    properties: Mapping[str, Any] = schema.get("properties", {})
    problems: list[InputError] = []
    here = where or location_of(args, None, Location("<arguments>"))
    result: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    key_locations: dict[str, Location] = {}
    value_locations: dict[str, Location] = {}
    for key, value in args.items():
        name = aliases.get(key, key) if key not in properties else key
        if name in given_as:
            both = f"'{given_as[name]}' and '{key}'"
            problems.append(
                InputError(
                    f"{label}{module_name}: {both} are the same argument '{name}'",
                    key_location_of(args, key, here),
                    "one of them",
                )
            )
            continue
        given_as[name] = key
        prop = properties.get(name)
        result[name] = convert_value(value, prop) if isinstance(prop, Mapping) else value
        if isinstance(args, LocatedDict):
            if key in args.key_locations:
                key_locations[name] = args.key_locations[key]
            if key in args.value_locations:
                value_locations[name] = args.value_locations[key]
    if isinstance(args, LocatedDict):
        located = LocatedDict(result)
        located.location = getattr(args, "location", here)
        located.key_locations = key_locations
        located.value_locations = value_locations
        return located, problems
    return result, problems


def prepare_args(
    module_name: str, args: Mapping[str, Any], schema: Mapping[str, Any], where: Location
) -> dict[str, Any]:
    """Arguments rendered for one host, as the module receives them: aliases and types as at
    load, then checked again, since a template may have given a value of another kind."""
    converted, problems = normalize_args(module_name, args, schema, "", where)
    problems += check_args(module_name, converted, schema, "", where)
    if problems:
        raise problems[0] if len(problems) == 1 else InputErrors(problems)
    return converted
