"""`machineroom.yml`: a project's own settings (inventory, state database, known_hosts, vault
password file, forks, timeouts, ...), read by every command.

Found as $MACHINEROOM_CONFIG, else the first `machineroom.yml` in the current folder or a
folder above it (up to the top of its git repository), else beside the inventory given with
`-i` (its folder and those above, up to the repository's top). Paths in it are relative to
the file. It is validated against `schema/project.json`: a mistake is an error naming the
file, the line and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from machineroom.errors import InputError
from machineroom.runs.ansible_cfg import Setting

FILE_NAME = "machineroom.yml"
CONFIG_ENV = "MACHINEROOM_CONFIG"
PATH_KEYS = (
    "state",
    "known_hosts",
    "vault_password_file",
    "private_key_file",
    "cluster_tls_ca",
    "cluster_tls_cert",
    "cluster_tls_key",
)


def find_project_config(
    env: Mapping[str, str], cwd: Path, inventory_paths: Iterable[str] = ()
) -> Path | None:
    """The project file to read, or None."""
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise InputError(f"${CONFIG_ENV}: {named}: no such file")
        return path
    starts = [cwd]
    for inventory in inventory_paths:
        where = Path(inventory).resolve()
        starts.append(where if where.is_dir() else where.parent)
    for start in starts:
        found = _upwards(start.resolve())
        if found is not None:
            return found
    return None


def _upwards(folder: Path) -> Path | None:
    """The first machineroom.yml in `folder` or above, stopping at a repository's top."""
    for candidate in (folder, *folder.parents):
        path = candidate / FILE_NAME
        if path.is_file():
            return path
        if (candidate / ".git").exists():
            return None
    return None


def read_project_config(path: Path, cwd: Path) -> dict[str, Setting]:
    """The settings of a project file, each with its `file:line`; paths made absolute."""
    from machineroom.schema import validate
    from machineroom.yamlio import load_yaml, location_of

    shown = _shown(path, cwd)
    data = load_yaml(path)
    validate(data, "project", shown)
    if not data:
        return {}
    base = path.resolve().parent
    settings: dict[str, Setting] = {}
    for key, value in data.items():
        where = location_of(data, key)
        source = f"{shown}:{where.line}" if where.line else shown
        settings[str(key)] = Setting(_value(str(key), value, base), source)
    return settings


def _value(key: str, value: Any, base: Path) -> Any:
    if key in PATH_KEYS:
        return _absolute(str(value), base)
    if key in ("inventory", "roles_path"):
        values = [value] if isinstance(value, str) else list(value)
        return [_absolute(str(v), base) for v in values]
    return value


def _absolute(text: str, base: Path) -> str:
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else base / path)


def _shown(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)
