"""A command's settings when its flags do not say: environment, project file, ansible.cfg.

Precedence, highest first, as Ansible's: a command-line flag (click), then environment
variables ($MACHINEROOM_*, $ANSIBLE_*), then `machineroom.yml`, then `ansible.cfg`, then
machineroom's default. Each value keeps where it came from, for messages. Warnings about
ignored ansible.cfg settings go to `warn` once per process, before the command's work (the CLI
points it at its coloured stderr).

The command's `-i` values locate a project file beside the inventory: the CLI names them with
`use_inventory_paths` as soon as it has parsed them (its option defaults read settings too).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machineroom.runs.ansible_cfg import Setting, read_ansible_settings
from machineroom.runs.project_config import find_project_config, read_project_config


@dataclass(frozen=True)
class Settings:
    """Merged settings: name -> Setting (value and source)."""

    values: dict[str, Setting] = field(default_factory=dict)
    project_file: Path | None = None
    ansible_cfg: Path | None = None

    def get(self, name: str, default: Any = None) -> Any:
        """The value of setting `name`, or `default` when nothing sets it."""
        setting = self.values.get(name)
        return default if setting is None else setting.value

    def source(self, name: str) -> str | None:
        """Where setting `name` was written (`ansible.cfg:3`, `$ANSIBLE_FORKS`), or None."""
        setting = self.values.get(name)
        return None if setting is None else setting.source


_cache: dict[tuple[str, tuple[str, ...]], Settings] = {}
_warned: set[str] = set()
_inventory_paths: list[tuple[str, ...]] = [()]  # the running command's -i values


def _stderr_warning(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


warn: Callable[[str], None] = _stderr_warning  # where ansible.cfg warnings go


def use_inventory_paths(paths: tuple[str, ...]) -> None:
    """The running command's `-i` values: settings asked for without paths use these."""
    _inventory_paths[0] = tuple(paths)


def current_settings(inventory_paths: tuple[str, ...] | None = None) -> Settings:
    """The settings of this command. `inventory_paths` (its `-i` values) let a project file
    beside the inventory be found; without them, those `use_inventory_paths` named."""
    if inventory_paths is None:
        inventory_paths = _inventory_paths[0]
    cwd = Path.cwd()
    key = (str(cwd), inventory_paths)
    if key not in _cache:
        _cache[key] = _load(cwd, inventory_paths)
    return _cache[key]


def _load(cwd: Path, inventory_paths: tuple[str, ...]) -> Settings:
    env = dict(os.environ)
    ansible, warnings, cfg_path = read_ansible_settings(env, cwd, Path.home())
    project_path = find_project_config(env, cwd, inventory_paths)
    project = read_project_config(project_path, cwd) if project_path else {}
    from_env = {k: v for k, v in ansible.items() if v.source.startswith("$")}
    from_cfg = {k: v for k, v in ansible.items() if not v.source.startswith("$")}
    merged = {**from_cfg, **project, **from_env}
    for warning in warnings:
        if warning not in _warned:
            _warned.add(warning)
            warn(warning)
    return Settings(merged, project_path, cfg_path)


def default_of(name: str, fallback: Any) -> Any:
    """An option's default: setting `name` when something sets it, else `fallback`."""
    return current_settings().get(name, fallback)
