"""Finding and reading the files of an `include_vars` task, as Ansible does.

A relative `file` or `dir` is looked up in the role's `vars/`, the role's folder, the
playbook's `vars/`, then the playbook's folder (executor/files.py's search order). Files are
read with yamlio's loaders: its limits, file:line:col errors, `!vault` values kept as vault
values (decrypted when used, like every variable).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from machineroom.errors import InputError
from machineroom.executor.files import search_paths
from machineroom.modules.include_vars import LOADED
from machineroom.playbook.model import RoleRef, Task
from machineroom.yamlio import load_yaml, location_of


def load_var_files(
    args: Mapping[str, Any], task: Task, role: RoleRef | None, playbook_dir: str
) -> dict[str, Any]:
    """`args` plus `__mr_loaded__`: each file's path and variables, in the order Ansible
    reads them. A missing file or folder, a file that is not a mapping, an unknown extension
    in a folder: an InputError naming it (and the paths searched)."""
    if "dir" in args and "file" in args:
        raise InputError(
            f'task "{task.display_name}": include_vars: give file or dir, not both',
            task.location,
        )
    if "dir" in args:
        folder = _find(str(args["dir"]).strip(), task, role, playbook_dir, want_dir=True)
        paths = _files_in(folder, args, role)
    else:
        # `include_vars: >` folds the name with a trailing newline: Ansible strips it
        paths = [_find(str(args["file"]).strip(), task, role, playbook_dir, want_dir=False)]
    loaded = [{"path": str(path), "vars": _read(path, task)} for path in paths]
    return {**args, LOADED: loaded}


def _find(name: str, task: Task, role: RoleRef | None, playbook_dir: str, want_dir: bool) -> Path:
    path = Path(name).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        # absolute, as Ansible reports them (a role's path may be relative to the cwd)
        folders = search_paths("vars", role, playbook_dir)
        candidates = [(folder / path).absolute() for folder in folders]
    for candidate in candidates:
        if candidate.is_dir() if want_dir else candidate.is_file():
            return candidate
    what = "folder" if want_dir else "file"
    raise InputError(
        f"task \"{task.display_name}\": include_vars: {what} '{name}' not found (looked in "
        + ", ".join(str(p) for p in candidates)
        + ")",
        task.location,
    )


def _files_in(folder: Path, args: Mapping[str, Any], role: RoleRef | None) -> list[Path]:
    """The folder's files Ansible would include: sorted by folder then name, down to
    `depth` levels (0: all), matching `files_matching`, not in `ignore_files`, never the
    role's own vars/main.yml (the role has it already)."""
    depth = int(args.get("depth") or 0)
    matching = re.compile(str(args["files_matching"])) if args.get("files_matching") else None
    ignored = [re.compile(f"{pattern}$") for pattern in args.get("ignore_files") or []]
    extensions = [str(e).lstrip(".") for e in args.get("extensions") or ["json", "yaml", "yml"]]
    skip_unknown = bool(args.get("ignore_unknown_extensions"))
    role_main = (Path(role.path) / "vars" / "main.yml").resolve() if role is not None else None
    walked = sorted(os.walk(folder, followlinks=True), key=lambda entry: entry[0])
    found: list[Path] = []
    for root, _dirs, names in walked:
        level = len(Path(root).relative_to(folder).parts) + 1
        if depth and level > depth:
            continue
        for filename in sorted(names):
            path = Path(root) / filename
            if role_main is not None and path.resolve() == role_main:
                continue
            if matching is not None and not matching.search(filename):
                continue
            if any(pattern.search(filename) for pattern in ignored):
                continue
            if path.suffix.lstrip(".") not in extensions:
                if skip_unknown:
                    continue
                raise InputError(
                    f"include_vars: {path} does not have a valid extension: "
                    + ", ".join(extensions)
                )
            found.append(path)
    return found


def _read(path: Path, task: Task) -> dict[str, Any]:
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"include_vars: {path} must hold a mapping of variables, got {type(data).__name__}",
            location_of(data, None, task.location),
            "name: value pairs",
        )
    return dict(data)
