"""The variables a task sees on a host, and where each was set.

`Scope` is what the blocks around a task add to it; `task_var_stack` puts every source of
variables in precedence order with its provenance (vars.py), `task_vars` resolves it to the
values the templates see. `origin_note` says where a variable a failed template used was set
(a `-e @vars.yml` value included), for the task's error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from machineroom.executor.hoststate import HostState, PlayShared, RunShared
from machineroom.executor.play_files import host_vars_files
from machineroom.lookups import TASK_DIR_VAR
from machineroom.playbook.model import Block, RoleRef, Task
from machineroom.templating import BASE_DIR_VAR, TemplateError
from machineroom.vars import VarStack, build_var_stack, magic_vars, role_name_vars


@dataclass(frozen=True)
class Scope:
    """What the blocks around a task add to it: conditions, vars, become, tags, errors."""

    stage: str
    blocks: tuple[Block, ...] = ()
    when: tuple[Any, ...] = ()
    become: bool | None = None
    become_user: str | None = None
    ignore_errors: bool | None = None
    tags: frozenset[str] = frozenset()
    role: RoleRef | None = None
    include_vars: Mapping[str, Any] = field(default_factory=dict)
    handler: bool = False  # the tasks run as notified handlers

    def enter(self, block: Block) -> Scope:
        """The scope inside `block`."""
        return replace(
            self,
            blocks=(*self.blocks, block),
            when=(*self.when, *block.when),
            become=block.become if block.become is not None else self.become,
            become_user=block.become_user or self.become_user,
            ignore_errors=block.ignore_errors
            if block.ignore_errors is not None
            else self.ignore_errors,
            tags=self.tags | block.tags,
            role=block.role or self.role,
        )


def task_var_stack(
    task: Task | None, state: HostState, play_state: PlayShared, run: RunShared, scope: Scope
) -> VarStack:
    """Every source of variables the task sees on this host, in precedence order, each value
    with where it was set (the -e values with their `-e` argument or file)."""
    role = (task.role if task else None) or scope.role

    def stack_with(files: Mapping[str, Any], sources: Mapping[str, str]) -> VarStack:
        return build_var_stack(
            state.host,
            play=play_state.play,
            role=role,
            blocks=scope.blocks,
            task=task,
            facts=state.facts,
            registered=state.registered,
            include_params=scope.include_vars,
            included=state.included,
            play_files=files,
            play_files_sources=sources,
            extra_vars=run.options.extra_vars,
            extra_sources=run.options.extra_var_sources,
            magic=_magic(state, play_state, run, role),
        )

    stack = stack_with({}, {})
    if play_state.play.host_vars_files:  # their names are rendered with the other variables
        lenient = task is None or task.module == "facts"  # before the facts exist
        found = host_vars_files(play_state.play, stack.resolve(), run.templar, lenient=lenient)
        stack = stack_with(*found)
    return stack


def task_vars(
    task: Task | None, state: HostState, play_state: PlayShared, run: RunShared, scope: Scope
) -> dict[str, Any]:
    """Every variable the task sees on this host, by precedence, plus the magic ones."""
    values = task_var_stack(task, state, play_state, run, scope).resolve()
    if task is not None and task.location is not None:
        values[TASK_DIR_VAR] = os.path.dirname(os.path.abspath(task.location.file))
    if (
        run.vault_in_vars or state.included or play_state.play.host_vars_files
    ) and run.decrypt is not None:
        from machineroom.vault import decrypt_tree

        values = {k: decrypt_tree(v, run.decrypt) for k, v in values.items()}
    return values


def origin_note(
    error: Exception,
    task: Task | None,
    state: HostState,
    play_state: PlayShared,
    run: RunShared,
    scope: Scope,
) -> str:
    """Where the variables a failed template used were set, to add to its message:
    ` ['app' set by extra vars (-e), -e argument 1 (app=...)]` for `{{ app.version }}`
    when `app` has no `version`, or for the variables whose values held the failing
    template. Empty when the error names no variable that is set."""
    if not isinstance(error, TemplateError):
        return ""
    names = [*error.via]
    if error.variable:
        root = error.variable.split(".", 1)[0].split("[", 1)[0]
        if root != error.variable:  # `app.version`: app is set, its key is missing
            names.insert(0, root)
    if not names:
        return ""
    try:
        stack = task_var_stack(task, state, play_state, run, scope)
    except Exception:  # the error message matters more than its note
        return ""
    notes = []
    for name in dict.fromkeys(names):
        found = stack.explain(name)
        if found:
            layer, _, where = found[-1]
            # a registered result knows no place of its own: the layer's name says it all
            detail = f", {where}" if where and layer.name != "registered and set_fact" else ""
            notes.append(f"'{name}' set by {layer.name}{detail}")
    return f" [{'; '.join(notes)}]" if notes else ""


def _magic(
    state: HostState, play_state: PlayShared, run: RunShared, role: RoleRef | None
) -> dict[str, Any]:
    """Magic variables, computed once per host, play and role (they scan the inventory)."""
    key = (state.host.id, role.path if role else None)
    cached = play_state.magic.get(key)
    if cached is None:
        cached = magic_vars(
            state.host,
            run.inventory,
            play_state.host_ids(),
            check_mode=run.options.check,
            playbook_dir=run.playbook_dir,
            role_path=role.path if role else None,
            run_tags=tuple(run.options.tags),
            skip_tags=tuple(run.options.skip_tags),
        )
        if role is not None:
            cached["role_name"] = role.name
        cached.update(role_name_vars(play_state.play))
        # lookup('file', ...) resolves relative paths against the role's or playbook's folder
        cached[BASE_DIR_VAR] = role.path if role is not None else run.playbook_dir
        play_state.magic[key] = cached
    return cached
