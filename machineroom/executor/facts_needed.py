"""Whether a play uses facts at all, so that gathering them can be skipped when it does not.

Ansible gathers facts for every play unless told not to; here a play that does not say
`gather_facts:` gathers them only when something it runs could read one: a task's arguments,
conditions or loops, a variable (play, role, inventory), or a template file of its roles or
playbook mentions `ansible_facts`, `facts` or an `ansible_*` fact name. A dynamic include
could read anything, so a play with one always gathers, and so does one with `include_vars`
(its files are chosen at run time). The scan errs on the side of gathering: a mention in a
comment is enough.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from machineroom.inventory.model import Host
from machineroom.playbook.model import Block, Item, Play, RoleRef, Task

# ansible_* names that are not facts (connection settings and magic variables)
_NOT_FACTS = (
    "host|user|port|password|become_password|become_pass|ssh_\\w+|connection|check_mode"
    "|play_\\w+|loop_var|loop|failed_task|failed_result|limit|run_tags|skip_tags|version"
    "|python_interpreter|become|become_user|become_method"
)
FACT_MENTION = re.compile(rf"\b(?:ansible_facts|facts)\b|\bansible_(?!(?:{_NOT_FACTS})\b)\w+")


def play_needs_facts(play: Play, hosts: Iterable[Host], playbook_dir: str) -> bool:
    """True when the play could read a fact (see the module docstring)."""
    roles: dict[str, RoleRef] = {}
    for task in _tasks([*[i for s in play.stages for i in s.items], *play.handlers]):
        # include_vars: the files it reads (chosen at run time) could mention a fact
        if task.kind == "include" or task.module == "include_vars":
            return True
        if task.role is not None:
            roles[task.role.path] = task.role
        if _mentions(
            [
                task.args,
                task.when,
                task.loop,
                task.until,
                task.changed_when,
                task.failed_when,
                task.vars,
                task.environment,
                task.name,
            ]
        ):
            return True
    if play.host_vars_files:  # a file chosen per host (by a fact, most often)
        return True
    if _mentions(play.vars) or any(_mentions(h.vars) for h in hosts):
        return True
    folders = [Path(playbook_dir) / "templates"]
    for role in roles.values():
        if _mentions([role.defaults, role.vars, role.params]):
            return True
        folders.append(Path(role.path) / "templates")
    return any(_file_mentions(path) for folder in folders for path in _files(folder))


def _tasks(items: Iterable[Item]) -> Iterable[Task]:
    for item in items:
        if isinstance(item, Block):
            yield from _tasks([*item.block, *item.rescue, *item.always])
            if _mentions([item.when, item.vars]):
                yield Task(module="debug", args={"msg": "{{ ansible_facts }}"})  # say "yes"
        else:
            yield item


def _mentions(value: Any) -> bool:
    if isinstance(value, str):
        return FACT_MENTION.search(value) is not None
    if isinstance(value, Mapping):
        return any(_mentions(k) or _mentions(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_mentions(v) for v in value)
    return False


def _files(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.is_file()]


def _file_mentions(path: Path) -> bool:
    try:
        return FACT_MENTION.search(path.read_text(encoding="utf-8", errors="replace")) is not None
    except OSError:
        return True  # unreadable: better to gather
