"""A play's vars_files chosen per host, as Ansible reads them.

`vars_files: ["vars/{{ ansible_os_family }}.yml"]` names a file per host, and an entry that is
a list (`[vars/{{ ansible_distribution }}.yml, vars/default.yml]`) reads the first candidate
that exists. Names are rendered with the host's variables each time a task's variables are
built (facts gathered mid-play count, as in Ansible). A name whose template needs a variable
the host does not have is skipped while facts are gathered and fails later tasks, as in
ansible-core 2.19; a rendered entry none of whose candidates exists fails the task, naming
them. A file is read again only when it changed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from machineroom.errors import InputError, InputErrors, Location
from machineroom.playbook.model import Play
from machineroom.schema import validate
from machineroom.templating import Templar, TemplateError, Where
from machineroom.yamlio import key_location_of, load_yaml, to_plain

_read: dict[tuple[Path, int, int], tuple[dict[str, Any], dict[str, str]]] = {}
_guard = threading.Lock()


def host_vars_files(
    play: Play, variables: Mapping[str, Any], templar: Templar, *, lenient: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """The variables of `play`'s per-host vars_files for one host, and where each was set.
    `lenient` (while facts are gathered): a name needing an undefined variable is skipped."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for candidates, at in play.host_vars_files:
        base = Path(at.file).parent
        names: list[str] = []
        for candidate in candidates:
            try:
                names.append(str(templar.render(candidate, variables, Where(at))))
            except TemplateError as exc:
                if not exc.variable or not lenient:
                    raise InputError(f"vars_files: {exc.problem}", at) from None
        if not names:
            continue  # every candidate needs a variable this host lacks (yet)
        found = next((base / n for n in names if (base / n).is_file()), None)
        if found is None:
            raise InputError(
                "vars_files: no file found among " + ", ".join(repr(n) for n in names),
                at,
                f"a path relative to the folder of {at.file}",
            )
        data, where = _load(found)
        values.update(data)
        sources.update(where)
    return values, sources


def _load(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's variables and their file:line, read once while the file stays the same."""
    stat = path.stat()
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
    with _guard:
        cached = _read.get(key)
    if cached is None:
        data = load_yaml(path)
        try:
            validate(data, "playbook#vars", str(path))
        except InputErrors as exc:
            raise exc.errors[0] from None
        mapping = data if isinstance(data, Mapping) else {}
        here = Location(str(path))
        cached = (
            {str(k): to_plain(v) for k, v in mapping.items()},
            {str(k): _short(key_location_of(mapping, k, here)) for k in mapping},
        )
        with _guard:
            _read[key] = cached
    return cached


def _short(at: Location) -> str:
    return f"{at.file}:{at.line}" if at.line else at.file
