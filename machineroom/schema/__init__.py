"""JSON Schemas for what users write, and `validate()` that reports errors like a compiler.

Each schema is a JSON file beside this module (draft 2020-12). Besides the standard keywords,
a schema may carry three annotations of ours, which jsonschema ignores:

- `x-label`: on the subschema of a named thing, how to call it in messages, e.g.
  `"host '{key}'"` (`{key}` is its key or index; `{name}` etc. are fields of the instance). A
  list gives alternatives, the first that can be filled is used. The innermost label wins.
- `x-expected`: what a valid value looks like, e.g. `"an integer 1-65535"`.
- `x-secret`: the value must never be shown in a message (only its kind is).

An error then reads `inventories/prod.yml:12:7: host 'web1': port: 'abc' is not an integer;
expected an integer 1-65535`. Only this package imports jsonschema.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

from machineroom.errors import InputError, InputErrors, Location, did_you_mean
from machineroom.yamlio import key_location_of, location_of

# how a JSON Schema type is named in messages
TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


@cache
def load_schema(schema_name: str) -> dict[str, Any]:
    """The schema `schema_name` (a JSON file of this package, without `.json`).

    The schemas themselves are checked against the metaschema by the test suite, not here:
    that check costs more than validating an inventory (about 0.2 s a run).
    """
    text = resources.files(__name__).joinpath(f"{schema_name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _root_for(schema_name: str) -> dict[str, Any]:
    # "inventory#vars" validates against the `$defs/vars` part of inventory.json; the wrapper
    # keeps `$defs` so that references inside it still resolve.
    name, _, part = schema_name.partition("#")
    schema = load_schema(name)
    if not part:
        return schema
    return {"$defs": schema["$defs"], "$ref": f"#/$defs/{part}"}


def validate(data: Any, schema_name: str, source: str) -> None:
    """Check `data` (from `yamlio`, so it knows its lines) against a schema of this package.

    `schema_name` is a file name without `.json`, optionally `#part` for one of its `$defs`.
    Every problem found becomes an InputError at the failing node's `file:line:col`; all of
    them are raised together as InputErrors, in file order.
    """
    root = _root_for(schema_name)
    seal = _seal(data, schema_name)
    if seal is not None and seal.exists():
        return  # this very content passed this very schema before
    import jsonschema  # only when there is something new to check: it costs 0.1 s to import

    validator = jsonschema.Draft202012Validator(root)
    errors: list[InputError] = []
    for error in validator.iter_errors(data):
        errors.extend(_convert(error, root, data, source))
    if not errors:
        _remember(seal)
        return
    unique = {e.message: e for e in errors}.values()
    ordered = sorted(unique, key=_order)
    raise InputErrors(ordered)


def _order(error: InputError) -> tuple[int, int]:
    where = error.location
    return ((where.line or 0) if where else 0, (where.col or 0) if where else 0)


def _show(value: Any, secret: bool = False) -> str:
    """A value as a message quotes it; secrets only by their kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if secret:
        return "a string" if isinstance(value, str) else "a number"
    if isinstance(value, str):
        return repr(str(value))
    return str(value)


def _types(schema_type: str | Sequence[str]) -> str:
    names = [schema_type] if isinstance(schema_type, str) else list(schema_type)
    words = [TYPE_WORDS.get(n, n) for n in names if n != "null"] or ["nothing"]
    return " or ".join(words)


def _resolve(root: dict[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _label(schema: Any, key: Any, node: Any) -> str | None:
    templates = schema.get("x-label") if isinstance(schema, dict) else None
    if templates is None:
        return None
    fields = (
        {k: v for k, v in node.items() if isinstance(v, str | int)}
        if isinstance(node, dict)
        else {}
    )
    for template in [templates] if isinstance(templates, str) else templates:
        try:
            return str(template).format(**{**fields, "key": key})
        except (KeyError, IndexError):
            continue
    return None


def _chain(root: dict[str, Any], schema: Any) -> Iterator[dict[str, Any]]:
    """A schema, then what its `$ref` points at, and so on."""
    seen = 0
    while isinstance(schema, dict) and seen < 32:
        yield schema
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return
        schema = _resolve(root, ref)
        seen += 1


def _enter(root: dict[str, Any], schema: Any, token: str) -> Any:
    """`schema[token]`, looking through `$ref` (jsonschema leaves `$ref` out of its paths)."""
    for part in _chain(root, schema):
        if token in part:
            return part[token]
    raise KeyError(token)


def _context(error: ValidationError, root: dict[str, Any], data: Any) -> tuple[str, bool]:
    """`host 'web1': port` for an error: the innermost label, then the path below it.

    Walks the schema path alongside the instance path, so a label is found exactly where the
    schema that matched the node says so. Also says if the node is a secret.
    """
    schema: Any = root
    node = data
    path = list(error.absolute_path)
    tokens = list(error.absolute_schema_path)
    consumed = 0
    label, label_at, secret = "", 0, False
    i = 0
    try:
        while i < len(tokens) - 1:
            token = tokens[i]
            if token in ("properties", "patternProperties", "prefixItems"):
                schema = _enter(root, schema, token)[tokens[i + 1]]
                i += 2
                node, consumed = _descend(node, path, consumed)
            elif token in ("additionalProperties", "items"):
                schema = _enter(root, schema, token)
                i += 1
                node, consumed = _descend(node, path, consumed)
            elif token in ("allOf", "anyOf", "oneOf"):
                schema = _enter(root, schema, token)[tokens[i + 1]]
                i += 2
            elif token in ("if", "then", "else", "not"):
                schema = _enter(root, schema, token)
                i += 1
            else:
                break
            for part in _chain(root, schema):
                secret = secret or bool(part.get("x-secret"))
                key = path[consumed - 1] if consumed else ""
                found = _label(part, key, node)
                if found:
                    label, label_at = found, consumed
                    break
    except (KeyError, IndexError, TypeError):
        pass  # a schema shape we do not follow: the path alone still says where
    rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[label_at:])
    parts = [p for p in (label, rest.lstrip(".")) if p]
    return ": ".join(parts), secret


def _descend(node: Any, path: list[Any], consumed: int) -> tuple[Any, int]:
    if consumed < len(path):
        try:
            return node[path[consumed]], consumed + 1
        except (KeyError, IndexError, TypeError):
            return None, consumed + 1
    return node, consumed


def _locate(data: Any, path: Sequence[Any], source: str) -> Location:
    where = location_of(data, None, Location(source))
    node = data
    for part in path:
        where = location_of(node, part, where)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return where


def _convert(
    error: ValidationError, root: dict[str, Any], data: Any, source: str
) -> Iterator[InputError]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("x-expected")
    kind = error.validator
    if kind in ("oneOf", "anyOf") and not expected and error.context:
        from jsonschema.exceptions import best_match

        yield from _convert(best_match(error.context), root, data, source)
        return
    context, secret = _context(error, root, data)
    secret = secret or bool(schema.get("x-secret"))
    prefix = f"{context}: " if context else ""
    where = _locate(data, list(error.absolute_path), source)
    value = error.instance
    shown = _show(value, secret)
    if kind == "additionalProperties" and isinstance(value, dict):
        known = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for key in value:
            if key in known or any(_matches(p, key) for p in patterns):
                continue
            yield InputError(
                f"{prefix}unknown key '{key}'" + did_you_mean(key, known),
                key_location_of(value, key, where),
                "one of: " + ", ".join(known) if known else (expected or "no keys here"),
            )
        return
    rule: Any = error.validator_value
    if kind == "required":
        missing = rule if isinstance(rule, list) else []
        for key in missing:
            if isinstance(value, dict) and key not in value:
                yield InputError(f"{prefix}missing required key '{key}'", where, expected)
        return
    if kind == "type":
        problem = f"{shown} is not {_types(rule)}"
        expected = expected or _types(rule)
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        problem = f"{shown} is out of range"
        expected = expected or f"{kind} {rule}"
    elif kind == "enum":
        choices = [str(c) for c in rule]
        problem = f"{shown} is not allowed" + did_you_mean(str(value), choices)
        expected = expected or "one of: " + ", ".join(choices)
    elif kind == "minLength":
        problem = "empty value"
        expected = expected or "a non-empty string"
    elif kind in ("oneOf", "anyOf", "pattern", "const", "not"):
        problem = f"{shown} is not valid"
    else:
        problem = error.message if not secret else f"{shown} is not valid"
    yield InputError(prefix + problem, where, expected)


def _matches(pattern: str, key: str) -> bool:
    import re

    return re.search(pattern, key) is not None


def _seal(data: Any, schema_name: str) -> Path | None:
    """The cache file that says `data` was valid against `schema_name` (None: no cache).

    Keyed by a hash of the schema file and the data, so any change to either validates
    again. Only successes are cached: errors are always computed, with their lines.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        name = schema_name.partition("#")[0]
        text = resources.files(__name__).joinpath(f"{name}.json").read_bytes()
        digest = hashlib.sha256(text)
        digest.update(schema_name.encode())
        digest.update(json.dumps(data, sort_keys=True, default=str).encode())
    except (OSError, TypeError, ValueError):
        return None
    return Path(base) / "machineroom" / "valid" / digest.hexdigest()


def _remember(seal: Path | None) -> None:
    if seal is None:
        return
    try:
        seal.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        seal.touch()
    except OSError:
        pass  # a read-only home only costs speed
