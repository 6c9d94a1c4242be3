"""Roles in Ansible's layout: found by name, read, and expanded into tasks.

A role folder holds `tasks/main.yml`, `handlers/main.yml`, `defaults/main.yml`,
`vars/main.yml`, `meta/main.yml` (with `dependencies` and `allow_duplicates`), and `templates/`
and `files/` for the modules that read local files. Dependencies run before the role; within a
play each role (with the same parameters) runs once unless it allows duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from machineroom.errors import InputError, InputErrors, Location, did_you_mean
from machineroom.playbook.keywords import parse_tags
from machineroom.playbook.model import Item, RoleRef, Task
from machineroom.playbook.tasks import (
    TASK_FILE_NAMES,
    LoadContext,
    Scope,
    aligned_steps,
    apply_keywords,
    include_cycle,
    load_task_file,
    parse_items,
)
from machineroom.schema import validate
from machineroom.yamlio import (
    LocatedDict,
    file_present,
    load_yaml,
    location_of,
    to_plain,
    unreadable,
)

# keys of a role entry (`- role: x ...`) that are keywords; every other key is a parameter
ROLE_KEYWORDS = frozenset({"role", "name", "vars", "when", "tags", "become", "become_user"})


@dataclass
class RoleLoader:
    """Expands roles for one playbook: the folders searched, and what each play has run."""

    ctx: LoadContext
    search: Sequence[Path]
    seen: set[str] = field(default_factory=set)  # dedup keys of roles already in this play
    named: list[str] = field(default_factory=list)  # roles the play names or imports
    dependent: list[str] = field(default_factory=list)  # roles pulled in as dependencies

    def start_play(self) -> None:
        """Forget which roles ran: dedup is per play, as in Ansible."""
        self.seen = set()
        self.named, self.dependent = [], []

    def find(self, name: str, where: Location) -> Path | None:
        """The folder of role `name`; a missing role is reported with the folders searched."""
        try:
            return self._find(name, where)
        except OSError as exc:  # a roles folder we may not look in
            path = exc.filename if isinstance(exc.filename, str) else name
            error = unreadable(path, exc)
            self.ctx.errors.append(
                InputError(f"role '{name}': {path}: {error.problem}", where, error.expected)
            )
            return None

    def _find(self, name: str, where: Location) -> Path | None:
        if "/" in name or name.startswith("."):
            candidate = Path(name) if Path(name).is_absolute() else self.ctx.base / name
            if candidate.is_dir():
                return candidate
            self.ctx.errors.append(
                InputError(f"role '{name}' not found", where, f"a role folder at {candidate}")
            )
            return None
        for folder in self.search:
            if (folder / name).is_dir():
                return folder / name
        present = sorted(
            {
                p.name
                for folder in self.search
                if folder.is_dir()
                for p in folder.iterdir()
                if p.is_dir()
            }
        )
        searched = ", ".join(str(f) for f in self.search)
        self.ctx.errors.append(
            InputError(
                f"role '{name}' not found" + did_you_mean(name, present),
                where,
                f"a folder named {name} in one of: {searched}",
            )
        )
        return None

    def expand(
        self,
        spec: Any,
        where: Location,
        *,
        parents: tuple[str, ...] = (),
        steps: tuple[str, ...] = (),
        dedup: bool = True,
        files: Mapping[str, str] | None = None,
        dependency: bool = False,
    ) -> tuple[RoleRef | None, list[Item]]:
        """A role entry (`name`, or `{role: name, when:, tags:, vars:, x: 1}`) as its items:
        its dependencies first, then its tasks, each carrying the entry's keywords.

        `parents` are the role folders and files being read (a `Scope.stack`), `steps` where
        each was entered: a role that includes itself is reported with that chain."""
        entry: Mapping[str, Any]
        if isinstance(spec, str):
            name, entry = spec, {}
        elif isinstance(spec, Mapping):
            raw = spec.get("role", spec.get("name"))
            if not isinstance(raw, str):
                return None, []  # the schema reported it
            name, entry = raw, spec
        else:
            return None, []
        folder = self.find(name, where)
        if folder is None:
            return None, []
        resolved = str(folder.resolve())
        here = self.ctx.short(where)
        chain = include_cycle(parents, steps, resolved, here)
        if chain is not None:
            self.ctx.errors.append(
                InputError(
                    f"role '{name}' includes itself: {chain}",
                    where,
                    "a role that does not depend on or import itself, directly or through others",
                )
            )
            return None, []
        steps = (*aligned_steps(parents, steps), here)
        parents = (*parents, resolved)
        files = files or {}
        params: dict[str, Any] = {
            k: to_plain(v) for k, v in entry.items() if k not in ROLE_KEYWORDS
        }
        if isinstance(entry.get("vars"), Mapping):
            params.update(to_plain(entry["vars"]))
        meta = self._read_vars(folder / "meta", "main", "playbook#role_meta")
        allow_duplicates = isinstance(meta, Mapping) and meta.get("allow_duplicates") is True
        key = json.dumps([resolved, sorted(files.items()), params], sort_keys=True, default=str)
        if dedup and key in self.seen and not allow_duplicates:
            return None, []
        self.seen.add(key)
        listed = self.dependent if dependency else self.named
        if folder.name not in listed:
            listed.append(folder.name)
        defaults = self._read_vars(folder / "defaults", files.get("defaults_from", "main"))
        role_vars = self._read_vars(folder / "vars", files.get("vars_from", "main"))
        role = RoleRef(
            name=folder.name,
            path=str(folder),
            defaults=MappingProxyType(to_plain(defaults or {})),
            vars=MappingProxyType(to_plain(role_vars or {})),
            params=MappingProxyType(params),
            location=where,
            defaults_sources=MappingProxyType(_sources(defaults)),
            vars_sources=MappingProxyType(_sources(role_vars)),
        )
        items: list[Item] = []
        deps = meta.get("dependencies") if isinstance(meta, Mapping) else None
        for index, dep in enumerate(deps or []):
            dep_where = location_of(deps, index, where)
            _, dep_items = self.expand(
                dep, dep_where, parents=parents, steps=steps, dependency=True
            )
            items.extend(dep_items)
        tasks_folder = folder / "tasks"
        task_file = _find_main(tasks_folder, files.get("tasks_from", "main"), self.ctx.errors)
        if task_file is not None:
            scope = Scope(
                file=task_file,
                role=role,
                role_tasks=tasks_folder,
                stack=(*parents, str(task_file.resolve())),
                steps=(*steps, ""),
            )
            items.extend(load_task_file(task_file, self.ctx, scope))
        elif "tasks_from" in files:
            self.ctx.errors.append(
                InputError(
                    f"role '{name}': tasks file '{files['tasks_from']}' not found",
                    where,
                    f"a file in {tasks_folder}",
                )
            )
        self._load_handlers(folder, role, files.get("handlers_from", "main"))
        keywords = entry
        when = to_plain(keywords.get("when"))
        become_user = keywords.get("become_user")
        items = apply_keywords(
            items,
            when=() if when is None else tuple(when) if isinstance(when, list) else (when,),
            tags=parse_tags(keywords.get("tags")),
            become=keywords.get("become") if isinstance(keywords.get("become"), bool) else None,
            become_user=become_user if isinstance(become_user, str) else None,
        )
        return role, items

    def _load_handlers(self, folder: Path, role: RoleRef, name: str) -> None:
        path = _find_main(folder / "handlers", name, self.ctx.errors)
        if path is None:
            return
        # an include in handlers/main.yml finds its file beside it or in tasks/, as Ansible's
        scope = Scope(file=path, role=role, role_tasks=folder / "tasks", handlers=True)
        for item in load_task_file(path, self.ctx, scope):
            if isinstance(item, Task):
                self.ctx.handlers.append(item)

    def _read_vars(self, folder: Path, name: str, schema: str = "playbook#vars") -> Any:
        path = _find_main(folder, name, self.ctx.errors)
        if path is None:
            return None
        try:
            data = load_yaml(path)
            validate(data, schema, str(path))
        except InputErrors as exc:
            self.ctx.errors.extend(exc.errors)
            return None
        except InputError as exc:
            self.ctx.errors.append(exc)
            return None
        return data

    def import_role(self, args: Mapping[str, Any], where: Location, scope: Scope) -> list[Item]:
        """`import_role: name=x tasks_from=y`: the role's tasks, in place, at load time."""
        name = args.get("name", args.get("role"))  # `role:` is ansible-core's other name
        if not isinstance(name, str) or "{{" in name:
            self.ctx.errors.append(
                InputError(
                    f"import_role: {name!r} is not a role name",
                    where,
                    "a role name without templates (use include_role for one chosen per host)",
                )
            )
            return []
        files = {
            k: str(args[k])
            for k in ("tasks_from", "vars_from", "defaults_from", "handlers_from")
            if k in args
        }
        spec = {
            "role": name,
            **({"vars": args["vars"]} if isinstance(args.get("vars"), Mapping) else {}),
        }
        _, items = self.expand(
            spec, where, parents=scope.stack, steps=scope.steps, dedup=False, files=files
        )
        return items

    def parse_handlers(self, data: Any, file: Path) -> None:
        """A play's own `handlers:` section."""
        if isinstance(data, list):
            scope = Scope(file=file, handlers=True)
            for item in parse_items(data, self.ctx, scope):
                if isinstance(item, Task):
                    self.ctx.handlers.append(item)


def _find_main(folder: Path, name: str, errors: list[InputError]) -> Path | None:
    """`folder/NAME.yml` (or .yaml, or bare); one that is there but cannot be read (a symlink
    loop, a folder, no permission) is reported in `errors`, never taken as absent."""
    for pattern in TASK_FILE_NAMES:
        candidate = folder / pattern.format(name)
        if pattern == "{}" and candidate.is_dir():
            continue  # tasks/main/ is a folder of its own, not main.yml written bare
        try:
            if file_present(candidate):
                return candidate
        except InputError as exc:
            errors.append(exc)
            return None
    return None


def _sources(data: Any) -> dict[str, str]:
    if not isinstance(data, LocatedDict):
        return {}
    return {key: f"{where.file}:{where.line}" for key, where in data.key_locations.items()}
