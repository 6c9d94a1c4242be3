"""ansible-playbook's flags that reshape or describe a playbook before it runs.

`--start-at-task`, `-b/--become-user/--become-method` change the loaded playbook (a pure
function each); `--list-hosts`, `--list-tasks`, `--list-tags` and `--syntax-check` print what
ansible-playbook prints, in its layout, without connecting to any host.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from machineroom.errors import UsageError
from machineroom.inventory.model import Host
from machineroom.playbook.model import Block, Item, Play, Playbook, Task
from machineroom.playbook.tags import tags_allow

if TYPE_CHECKING:
    from machineroom.runs.habits import AnsibleHabits
    from machineroom.runs.request import RunRequest
    from machineroom.runs.workspace import Workspace

# --- -b, --become-user, --become-method ----------------------------------------------------


def with_become(playbook: Playbook, become: bool, user: str | None, method: str | None) -> Playbook:
    """Every play becoming (`-b`, ansible.cfg's become), as the user and with the method
    given where the play names none. A task's own `become: false` still wins, as in Ansible."""
    if method not in (None, "sudo", "su"):
        raise UsageError(f"--become-method {method}: machineroom becomes with sudo or su")
    plays = []
    for play in playbook.plays:
        plays.append(
            dataclasses.replace(
                play,
                become=play.become or become,
                become_user=play.become_user or user,
                become_method=play.become_method or method,
            )
        )
    return dataclasses.replace(playbook, plays=tuple(plays))


# --- --start-at-task -----------------------------------------------------------------------


def task_matches(task: Task, pattern: str) -> bool:
    """As ansible-core: the task's name, or `role : name`, equal to or matching the glob."""
    names = [n for n in (task.name, task.display_name if task.name else None) if n]
    return any(n == pattern or fnmatch.fnmatch(n, pattern) for n in names)


def start_at_task(playbook: Playbook, pattern: str) -> Playbook:
    """The playbook from the first task matching `pattern` on: earlier plays run nothing
    (no facts either), earlier tasks of its play are left out. Only tasks known at load are
    searched (include_tasks files are not), as in ansible-core."""
    plays = list(playbook.plays)
    for index, play in enumerate(plays):
        stages = []
        found = False
        for stage in play.stages:
            if found:
                stages.append(stage)
                continue
            items, found = _from_match(stage.items, pattern)
            stages.append(dataclasses.replace(stage, items=tuple(items)))
        if found:
            plays[index] = dataclasses.replace(play, stages=tuple(stages))
            for earlier in range(index):
                plays[earlier] = _emptied(plays[earlier])
            return dataclasses.replace(playbook, plays=tuple(plays))
    raise UsageError(
        f'--start-at-task: no task matches "{pattern}" (only tasks of the playbook, its roles '
        "and its imports are searched, not include_tasks files)"
    )


def _from_match(items: Sequence[Item], pattern: str) -> tuple[list[Item], bool]:
    """The items from the first task matching on, and whether one matched."""
    for position, item in enumerate(items):
        if isinstance(item, Block):
            inner, found = _from_match(item.block, pattern)
            if found:
                kept = dataclasses.replace(item, block=tuple(inner))
                return [kept, *items[position + 1 :]], True
            rest, found = _from_match(item.always, pattern)
            if found:
                kept = dataclasses.replace(item, block=(), rescue=(), always=tuple(rest))
                return [kept, *items[position + 1 :]], True
        elif task_matches(item, pattern):
            return list(items[position:]), True
    return [], False


def _emptied(play: Play) -> Play:
    stages = tuple(dataclasses.replace(s, items=()) for s in play.stages)
    return dataclasses.replace(play, stages=stages, gather_facts=False)


# --- --list-hosts, --list-tasks, --list-tags, --syntax-check --------------------------------


def _listed_tasks(
    items: Sequence[Item], tags: frozenset[str]
) -> Iterator[tuple[Task, frozenset[str]]]:
    """Tasks in the order ansible-playbook lists them, each with its inherited tags."""
    for item in items:
        if isinstance(item, Block):
            inner = tags | item.tags
            for part in (item.block, item.rescue, item.always):
                yield from _listed_tasks(part, inner)
        else:
            yield item, tags | item.tags


def _task_label(task: Task) -> str:
    """What ansible-playbook shows for a task: its name (`role : name`), else its action."""
    return task.display_name if task.name else task.module


def render_listing(
    playbook_label: str,
    playbook: Playbook,
    play_hosts: Sequence[Sequence[Host]] | None,
    *,
    list_tasks: bool,
    list_tags: bool,
    only_tags: frozenset[str],
    skip_tags: frozenset[str],
) -> str:
    """ansible-playbook's `--list-hosts` / `--list-tasks` / `--list-tags` output."""
    lines = ["", f"playbook: {playbook_label}"]
    for index, play in enumerate(playbook.plays):
        name = play.name or play.hosts
        lines.append("")
        lines.append(
            f"  play #{index + 1} ({play.hosts}): {name}\tTAGS: [{','.join(sorted(play.tags))}]"
        )
        if play_hosts is not None:
            hosts = play_hosts[index]
            lines.append(f"    pattern: {[play.hosts]!r}")
            lines.append(f"    hosts ({len(hosts)}):")
            lines += [f"      {h.id}" for h in hosts]
        if not (list_tasks or list_tags):
            continue
        block = ["    tasks:"] if list_tasks else []
        all_tags: set[str] = set()
        for stage in play.stages:
            for task, tags in _listed_tasks(stage.items, play.tags):
                if not tags_allow(tags, only_tags, skip_tags):
                    continue
                all_tags |= tags - play.tags
                if list_tasks:
                    block.append(f"      {_task_label(task)}\tTAGS: [{', '.join(sorted(tags))}]")
        if list_tags:
            block.append(f"      TASK TAGS: [{', '.join(sorted(all_tags | play.tags))}]")
        lines += block
    return "\n".join(lines) + "\n"


def render_syntax_ok(playbook_label: str) -> str:
    """What `ansible-playbook --syntax-check` prints for a playbook that loads."""
    return f"\nplaybook: {playbook_label}\n"


def describe_playbook(
    request: RunRequest, habits: AnsibleHabits, workspace: Callable[[], Workspace]
) -> str:
    """What --syntax-check, --list-hosts, --list-tasks, --list-tags print; nothing is
    contacted. `workspace` is called only when the hosts are listed (the other listings
    need no inventory)."""
    from machineroom.inventory import select_hosts
    from machineroom.playbook.load import load_playbook
    from machineroom.runs.apply import words
    from machineroom.runs.prepare import play_hosts_of, roles_path

    path = request.target
    playbook = load_playbook(path, roles_path=roles_path(path))
    if habits.syntax_check:
        from pathlib import Path

        from machineroom.executor.template_check import compile_templates

        compile_templates(playbook, str(Path(path).resolve().parent))  # template files too
        return render_syntax_ok(path)
    play_hosts = None
    if habits.list_hosts:
        inventory = workspace().inventory
        limit = request.limit
        allowed = {h.id for h in select_hosts(inventory, limit)} if limit else None
        play_hosts = [
            [h for h in play_hosts_of(inventory, play.hosts) if allowed is None or h.id in allowed]
            for play in playbook.plays
        ]
    only = words(request.tags)
    if habits.list_tags and not (request.tags or request.skip_tags):
        only = frozenset({"never", "all"})  # as ansible-playbook: every tag, `never` included
    return render_listing(
        path,
        playbook,
        play_hosts,
        list_tasks=habits.list_tasks,
        list_tags=habits.list_tags,
        only_tags=only,
        skip_tags=words(request.skip_tags),
    )
