"""The playbook model: plays, stages, roles, blocks, tasks and handlers as frozen plain data.

The loader (`playbook/load.py`) builds these from YAML, resolving roles, `import_tasks` and
`import_role` (static) at load time; `include_tasks` / `include_role` (dynamic) stay as tasks
of kind "include" that the executor expands per host at run time. Values are kept exactly as
written (strings may hold Jinja2); templating happens per host in the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from machineroom.errors import Location


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class RoleRef:
    """Where a task came from when it belongs to a role: its name, folder and variables."""

    name: str
    path: str  # the role's folder
    defaults: Mapping[str, Any] = field(default_factory=_empty)  # defaults/main.yml
    vars: Mapping[str, Any] = field(default_factory=_empty)  # vars/main.yml
    params: Mapping[str, Any] = field(default_factory=_empty)  # `- role: x` + its keys / vars:
    location: Location | None = None
    # var -> "file:line" where defaults/main.yml and vars/main.yml set it (for `explain`)
    defaults_sources: Mapping[str, str] = field(default_factory=_empty)
    vars_sources: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class Task:
    """One task. `module` is the canonical module name (`copy`), `args` its raw arguments.

    kind "module": a module call; kind "include": `include_tasks` / `include_role` expanded at
    run time (args: `file` or `name`, plus `apply`/vars); kind "meta": `meta: flush_handlers`
    and friends (args: {"action": ...}).
    """

    module: str
    args: Mapping[str, Any] = field(default_factory=_empty)
    kind: Literal["module", "include", "meta"] = "module"
    name: str | None = None
    when: tuple[Any, ...] = ()  # raw conditions (strings or bools), all must hold
    loop: Any = None  # list, or a template string giving one; None: no loop
    loop_with: str | None = None  # `with_NAME`: the loop value is the terms of lookup NAME
    loop_control: Mapping[str, Any] = field(default_factory=_empty)
    register: str | None = None
    notify: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()  # handlers only
    tags: frozenset[str] = frozenset()
    vars: Mapping[str, Any] = field(default_factory=_empty)
    environment: Mapping[str, Any] = field(default_factory=_empty)
    become: bool | None = None
    become_user: str | None = None
    changed_when: tuple[Any, ...] | None = None
    failed_when: tuple[Any, ...] | None = None
    ignore_errors: bool = False
    ignore_unreachable: bool = False
    retries: int | None = None
    until: Any = None
    delay: float = 5.0
    timeout: float | None = None
    check_mode: bool | None = None  # per-task override of --check
    diff: bool | None = None
    run_once: bool = False
    any_errors_fatal: bool | None = None
    no_log: bool = False  # hide the task's output, diff and result everywhere
    # where and how the task connects (executor/delegation.py); None: the host's own way
    delegate_to: str | None = None  # another host (a template), `localhost` the workstation
    delegate_facts: bool = False  # facts the task sets go to the delegated host
    connection: str | None = None  # "local": on the workstation, with the host's variables
    remote_user: str | None = None  # log in as this user (outranks the inventory's user)
    port: int | str | None = None
    become_method: str | None = None  # sudo or su
    become_flags: str | None = None
    async_seconds: int | None = None  # `async:` run in the background for at most this long
    poll: int | None = None  # `poll:` seconds between checks; 0: fire and forget
    throttle: int | None = None  # at most this many hosts run the task at once
    # true/false keywords written as templates (keyword -> template), evaluated per host
    # when the task runs; the field of the same name keeps its default until then
    templated: Mapping[str, str] = field(default_factory=_empty)
    role: RoleRef | None = None
    location: Location | None = None
    # a stable id, e.g. "site.yml:14" (+ "#2" for imports repeated), used in results and resume
    id: str = ""
    # "file:line" of each include_tasks / include_role that brought this task in at run time
    included_from: tuple[str, ...] = ()
    # an include's module_defaults (play, blocks, itself): the tasks it brings in get them
    module_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)
    # a task machineroom cannot run (a module it lacks, an argument it does not implement)
    # that sits behind a condition: the load-time message, a warning at load and the
    # task's failure on a host where it runs (playbook/deferred.py)
    deferred: str | None = None

    @property
    def display_name(self) -> str:
        """The task's name, or `module` plus the role, as Ansible shows it."""
        base = self.name or self.module
        return f"{self.role.name} : {base}" if self.role else base


@dataclass(frozen=True)
class Block:
    """A `block:` with optional `rescue:` and `always:`; its keywords apply to all inside."""

    block: tuple[Task | Block, ...]
    rescue: tuple[Task | Block, ...] = ()
    always: tuple[Task | Block, ...] = ()
    name: str | None = None
    when: tuple[Any, ...] = ()
    tags: frozenset[str] = frozenset()
    vars: Mapping[str, Any] = field(default_factory=_empty)
    become: bool | None = None
    become_user: str | None = None
    ignore_errors: bool | None = None
    role: RoleRef | None = None
    location: Location | None = None


Item = Task | Block


def map_tasks(items: Sequence[Item], change: Callable[[Task], Task]) -> list[Item]:
    """`items` with `change` applied to every task, those inside blocks included."""
    return [
        replace(
            item,
            block=tuple(map_tasks(item.block, change)),
            rescue=tuple(map_tasks(item.rescue, change)),
            always=tuple(map_tasks(item.always, change)),
        )
        if isinstance(item, Block)
        else change(item)
        for item in items
    ]


@dataclass(frozen=True)
class Stage:
    """A named group of tasks that runs as a unit: handlers are flushed at its end, a failure
    is recorded as the stage a host stopped at, `--stage NAME` selects it, `--resume` restarts
    there. A role listed under a play's `stages:` is a stage; otherwise a play's sections
    (pre_tasks, roles + tasks, post_tasks) are its stages, named after the section."""

    name: str
    items: tuple[Item, ...]
    role: RoleRef | None = None
    location: Location | None = None


@dataclass(frozen=True)
class Play:
    """One play: which hosts, how, and its stages in order."""

    hosts: str  # a host pattern
    stages: tuple[Stage, ...]
    handlers: tuple[Task, ...] = ()  # play handlers and every role's handlers, in load order
    name: str | None = None
    vars: Mapping[str, Any] = field(default_factory=_empty)  # vars + vars_files, merged
    vars_sources: Mapping[str, str] = field(default_factory=_empty)  # var -> "file:line"
    # vars_files entries read per host: templates, or lists of candidates (the first found
    # wins) naming one; each its candidates and where it was written (executor/play_files.py)
    host_vars_files: tuple[tuple[tuple[str, ...], Location], ...] = ()
    become: bool = False
    become_user: str | None = None
    serial: tuple[int | str, ...] = ()  # e.g. (1, "50%"): batch sizes, the last repeats
    max_fail_percentage: float | None = None
    any_errors_fatal: bool = False
    strategy: Literal["free", "linear"] = "free"
    # None (not written): gather when the play could read a fact (executor/facts_needed.py)
    gather_facts: bool | None = None
    check_mode: bool | None = None
    tags: frozenset[str] = frozenset()
    connection: str | None = None  # "local" runs every task on the workstation
    remote_user: str | None = None  # tasks' defaults for these keywords (Task has them)
    port: int | str | None = None
    become_method: str | None = None
    become_flags: str | None = None
    force_handlers: bool = False  # a host that failed still runs the handlers notified
    # Ansible's role_names (roles the play names or imports) and the roles pulled in as
    # dependencies, in load order
    role_names: tuple[str, ...] = ()
    dependent_role_names: tuple[str, ...] = ()
    # order of the hosts: inventory, reverse_inventory, sorted, reverse_sorted or shuffle
    order: str = "inventory"
    # the fact-gathering task's arguments (gather_subset, gather_timeout, fact_path)
    facts_args: Mapping[str, Any] = field(default_factory=_empty)
    # vars_prompt entries (name, prompt, default, private, confirm), asked before the run
    vars_prompt: tuple[Mapping[str, Any], ...] = ()
    location: Location | None = None


@dataclass(frozen=True)
class Playbook:
    """A playbook file: its plays in order."""

    path: str
    plays: tuple[Play, ...]
    # "file:line:col: problem" of each task machineroom cannot run behind a condition
    warnings: tuple[str, ...] = ()
