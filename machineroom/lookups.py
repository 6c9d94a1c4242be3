"""The lookups behind Ansible's `with_*` loops, usable as `lookup()`/`query()` too.

Each function takes the Jinja context, the terms and the keyword arguments, and returns the
list Ansible's lookup plugin of the same name returns (ansible-core 2.19's rules, kept: items
flatten one level, dict gives key/value pairs, together pads with None, sequence gives strings).
"""

from __future__ import annotations

import copy
import glob
import os
import re
import secrets
import shlex
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.runtime import Context

# The variable that says a lookup runs for `with_NAME` of a task, and which folder
# (files, vars, templates) first_found searches first: the task's module decides, as Ansible's.
WITH_SUBDIR_VAR = "__mr_with_subdir__"
# the folder of the file the running task is written in (Ansible searches it too)
TASK_DIR_VAR = "__mr_task_dir__"

Lookup = Callable[[Context, tuple[Any, ...], dict[str, Any]], list[Any]]


def _fail(message: str) -> jinja2.TemplateRuntimeError:
    return jinja2.TemplateRuntimeError(message)


def _flatten(terms: Any) -> list[Any]:
    """One level: a list among the terms gives its elements (Ansible's LookupBase._flatten)."""
    flat: list[Any] = []
    for term in terms:
        flat.extend(term) if isinstance(term, list | tuple) else flat.append(term)
    return flat


def lookup_items(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_items`: the terms, lists among them flattened one level."""
    return _flatten(terms)


def lookup_list(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_list`: the terms as they are."""
    return list(terms)


def lookup_flattened(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_flattened` (community.general's): every level flattened."""
    flat: list[Any] = []
    for term in terms:
        flat.extend(lookup_flattened(context, tuple(term), kwargs)) if isinstance(
            term, list | tuple
        ) else flat.append(term)
    return flat


def lookup_dict(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_dict`: one `{key, value}` item per entry of each mapping."""
    found: list[Any] = []
    for term in terms:
        if not isinstance(term, Mapping):
            raise _fail(f"the 'dict' lookup expects a mapping, got {type(term).__name__}: {term!r}")
        found.extend({"key": k, "value": v} for k, v in term.items())
    return found


def lookup_together(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_together`: the lists side by side, the short ones padded with None."""
    if not terms:
        raise _fail("with_together requires at least one element in each list")
    rows: list[list[Any]] = []
    longest = max(len(t) if isinstance(t, list | tuple) else 1 for t in terms)
    columns = [list(t) if isinstance(t, list | tuple) else [t] for t in terms]
    for i in range(longest):
        rows.append(_flatten([c[i] if i < len(c) else None for c in columns]))
    return rows


def lookup_nested(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_nested`/`with_cartesian`: every combination, the first list varying slowest."""
    if not terms:
        raise _fail("with_nested requires at least one element in the nested list")
    result: list[Any] = list(terms[0])
    for more in terms[1:]:
        result = [_flatten([x, y]) for x in result for y in more]
    return [_flatten(x) if isinstance(x, list | tuple) else [x] for x in result]


def lookup_indexed_items(
    context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """`with_indexed_items`: `[index, item]` pairs over the flattened items."""
    return [[i, item] for i, item in enumerate(_flatten(terms))]


def lookup_random_choice(
    context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """`with_random_choice`: one of the terms, chosen at random."""
    return [secrets.choice(terms)] if terms else []


def lookup_subelements(
    context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """`with_subelements`: `[parent, child]` for each child in each parent's list under a key
    (`a.b` goes deeper); the parent loses that key, as in Ansible. `{skip_missing: true}` as the
    third term skips parents without it."""
    if not 2 <= len(terms) <= 3:
        raise _fail("subelements lookup expects a list of two or three items")
    parents, key = terms[0], terms[1]
    if not isinstance(parents, list | dict) or not isinstance(key, str):
        raise _fail(
            "subelements lookup expects a list of two or three items, first a dict or a "
            "list, second a string pointing to the subkey"
        )
    flags = terms[2] if len(terms) == 3 else {}
    if not isinstance(flags, Mapping) or set(flags) - {"skip_missing"}:
        raise _fail("subelements lookup: the optional third item must be {skip_missing: bool}")
    skip_missing = str(flags.get("skip_missing", False)).lower() in ("true", "yes", "1", "on")
    if isinstance(parents, dict):
        if parents.get("skipped", False) is not False:
            return []  # a registered result that was skipped as a whole
        parents = list(parents.values())
    keys = key.split(".")
    found: list[Any] = []
    for parent in parents:
        if not isinstance(parent, dict):
            raise _fail(f"subelements lookup expects a dictionary, got '{parent}'")
        if parent.get("skipped", False) is not False:
            continue
        parent = copy.deepcopy(parent)
        holder: Any = parent
        children: Any = []
        for depth, name in enumerate(keys):
            if not isinstance(holder, dict) or name not in holder:
                if skip_missing:
                    children = []
                    break
                raise _fail(f"could not find '{name}' key in iterated item '{holder}'")
            if depth < len(keys) - 1:
                holder = holder[name]
                continue
            if not isinstance(holder[name], list):
                raise _fail(f"the key {name} should point to a list, got '{holder[name]}'")
            children = holder.pop(name)
        found.extend([parent, child] for child in children)
    return found


_NUM = "(0?x?[0-9a-f]+)"
_SHORTCUT = re.compile(f"^({_NUM}-)?{_NUM}(/{_NUM})?(:(.+))?$", re.IGNORECASE)


def _number(text: Any, name: str) -> int:
    # ansible-core 2.19 reads the options as decimal integers (0x0f00 is refused)
    try:
        return int(str(text).strip())
    except ValueError:
        raise _fail(f"with_sequence: {name} must be an integer, got {text!r}") from None


def _sequence_options(term: Any) -> dict[str, Any]:
    if isinstance(term, Mapping):
        return dict(term)
    text = str(term).strip()
    match = _SHORTCUT.match(text)
    if match:
        _, start, end, _, stride, _, fmt = match.groups()
        given = {"start": start, "end": end, "stride": stride, "format": fmt}
        return {k: v for k, v in given.items() if v is not None}
    options: dict[str, Any] = {}
    try:
        parts = shlex.split(text)  # key="value" quoting, as Ansible's parse_kv
    except ValueError as exc:
        raise _fail(f"with_sequence: cannot read {text!r}: {exc}") from None
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep:
            raise _fail(f"with_sequence: cannot read {part!r} (expected name=value)")
        options[name] = value
    return options


def lookup_sequence(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_sequence: start=1 end=5 format=x%02d` (or `4:host%02d`, `count=`, `stride=`):
    the numbers formatted, as strings."""
    found: list[Any] = []
    for term in terms or ({},):
        options = {**_sequence_options(term), **kwargs}
        unknown = set(options) - {"start", "end", "count", "stride", "format"}
        if unknown:
            raise _fail(f"unrecognized arguments to with_sequence: {sorted(unknown)}")
        start = _number(options.get("start", 1), "start")
        stride = _number(options.get("stride", 1), "stride")
        fmt = str(options.get("format", "%d"))
        if options.get("count") is None and options.get("end") is None:
            raise _fail("must specify count or end in with_sequence")
        if options.get("count") is not None and options.get("end") is not None:
            raise _fail("can't specify both count and end in with_sequence")
        if options.get("count") is not None:
            count = _number(options["count"], "count")
            if count == 0:
                continue
            end = start + count * stride - 1
        else:
            end = _number(options["end"], "end")
        if stride > 0 and end < start:
            raise _fail("to count backwards make stride negative")
        if stride < 0 and end > start:
            raise _fail("to count forward don't make stride negative")
        if stride == 0:
            continue
        if fmt.count("%") != 1:
            raise _fail(f"bad formatting string: {fmt}")
        adjust = 1 if stride > 0 else -1
        try:
            found.extend(fmt % i for i in range(start, end + adjust, stride))
        except (ValueError, TypeError):
            raise _fail(f"problem formatting {fmt!r} with a number") from None
    return found


def _search_bases(context: Context) -> list[str]:
    # the role's folder first, then the playbook's (Ansible's search path for a role's task)
    templar = getattr(context.environment, "templar", None)
    bases = [
        context.get("__mr_base_dir__"),  # templating.BASE_DIR_VAR: the role's or playbook's
        context.get("role_path"),
        context.get(TASK_DIR_VAR),  # a role's tasks/ (`include_tasks: "{{ lookup(...) }}"`)
        context.get("playbook_dir"),
        getattr(templar, "base_dir", None),
    ]
    seen: list[str] = []
    for base in bases:
        if base and str(base) not in seen:
            seen.append(str(base))
    if not seen:
        seen.append(os.getcwd())
    return seen


def find_in_search_path(context: Context, subdir: str | None, needle: str) -> str | None:
    """The first of base/subdir/needle, base/needle over the role's and the playbook's folder."""
    needle = os.path.expanduser(needle)
    if os.path.isabs(needle):
        return needle if os.path.exists(needle) else None
    for base in _search_bases(context):
        candidates = []
        if subdir and needle.split("/")[0] != subdir:
            candidates.append(os.path.join(base, subdir, needle))
        candidates.append(os.path.join(base, needle))
        for path in candidates:
            if os.path.exists(path):
                return os.path.normpath(path)
    return None


def _split(value: Any, separators: str) -> list[str]:
    if isinstance(value, str):
        return [p for p in re.split(f"[{re.escape(separators)}]", value)]
    found: list[str] = []
    for one in value or []:
        found.extend(_split(one, separators))
    return found


def _first_found_candidates(terms: Any, options: dict[str, Any]) -> list[str]:
    candidates: list[str] = []
    for term in terms:
        if isinstance(term, Mapping):
            options.update(term)
            files = term.get("files", [])
        elif isinstance(term, str):
            files = [term]
        elif isinstance(term, list | tuple):
            candidates.extend(_first_found_candidates(term, options))
            continue
        else:
            raise _fail(f"first_found: a string, a mapping or a list is needed, not {term!r}")
        filelist = _split(files, ",;")
        paths = _split(options.get("paths", []), ",:;")
        if paths:
            candidates.extend(os.path.join(p, f) for p in paths for f in filelist)
        else:
            candidates.extend(filelist)
    return candidates


def lookup_first_found(
    context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """`with_first_found`: the path of the first file found. For a task's `with_first_found`
    a relative name is looked for in the role's (then the playbook's) `files/`, `vars/` or
    `templates/` (the module decides, as Ansible) and beside it; for `lookup()` beside it."""
    options = {k: v for k, v in kwargs.items() if k in ("files", "paths", "skip")}
    subdir = context.get(WITH_SUBDIR_VAR)
    names = list(terms) or list(options.get("files", []))
    for candidate in _first_found_candidates(names, options):
        path = find_in_search_path(context, str(subdir) if subdir else None, str(candidate))
        if path is not None:
            return [path]
    if str(options.get("skip", False)).lower() in ("true", "yes", "1", "on"):
        return []
    if kwargs.get("errors") == "ignore":
        return []
    raise _fail("No file was found when using first_found.")


def lookup_fileglob(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_fileglob`: the files (not folders) matching each pattern; a bare pattern is
    searched in `files/` of the role or playbook, then beside it."""
    found: list[Any] = []
    for term in terms:
        pattern = os.path.expanduser(str(term))
        head, tail = os.path.split(pattern)
        if os.path.isabs(pattern):
            folders = [head]
        elif head:
            folder = find_in_search_path(context, "files", head)
            folders = [folder] if folder else []
        else:
            folders = [p for b in _search_bases(context) for p in (os.path.join(b, "files"), b)]
        for folder in folders:
            matched = [g for g in glob.glob(os.path.join(folder, tail)) if os.path.isfile(g)]
            if matched:
                found.extend(matched)
                break
    return found


def lookup_lines(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`with_lines`: the output lines of each command, run on the workstation."""
    found: list[Any] = []
    for term in terms:
        done = subprocess.run(
            str(term),
            shell=True,
            cwd=context.get("playbook_dir") or None,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise _fail(f"lookup_plugin.lines({term}) returned {done.returncode}")
        found.extend(done.stdout.decode("utf-8", "replace").splitlines())
    return found


LOOKUPS: dict[str, Lookup] = {
    "items": lookup_items,
    "list": lookup_list,
    "flattened": lookup_flattened,
    "dict": lookup_dict,
    "together": lookup_together,
    "nested": lookup_nested,
    "cartesian": lookup_nested,
    "indexed_items": lookup_indexed_items,
    "random_choice": lookup_random_choice,
    "subelements": lookup_subelements,
    "sequence": lookup_sequence,
    "first_found": lookup_first_found,
    "fileglob": lookup_fileglob,
    "lines": lookup_lines,
}


def with_subdir(module: str) -> str:
    """The folder `with_first_found` searches for a task of `module`, as Ansible picks it:
    templates for template modules, vars for include_vars, files otherwise."""
    for word in ("template", "var", "file"):
        if word in module:
            return word + "s"
    return "files"
