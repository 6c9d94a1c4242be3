"""What `machineroom explain VAR --host H` computes: a variable's value for a host and every
layer that sets it, as plain data the CLI prints.

Without a playbook: the inventory layers (every group's own value, not only the winner),
extra vars and magic variables. With a playbook: for each play that targets the host, the
play's vars and, for each role of that play whose defaults, vars or params set VAR, the stack
a task of that role sees (role defaults at the bottom, role vars and params above play vars).
When no role sets VAR, one stack without role layers is given per play; `role_name` picks one
role. Registered values, set_fact and facts exist only while a playbook runs, so they are not
shown. A value holding `{{ }}` is also rendered with the same variables, when it can be.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputError

if TYPE_CHECKING:
    from machineroom.inventory.model import Host, Inventory
    from machineroom.playbook.model import Item, Play, RoleRef
    from machineroom.runs.workspace import Workspace
    from machineroom.vars import VarStack


@dataclass(frozen=True)
class LayerValue:
    """One layer that sets the variable: its name, the value as one line of JSON, and where."""

    layer: str
    value: str
    where: str


@dataclass(frozen=True)
class Explanation:
    """The variable in one context: a play (and role) that targets the host, or, without a
    playbook, the inventory alone (`title` empty). `layers` lowest first, the last wins;
    empty when no layer sets it. `rendered`: the winning value with its templates rendered
    (or why that needs a run), None when it holds no template."""

    title: str
    layers: tuple[LayerValue, ...]
    rendered: str | None

    @property
    def winner(self) -> LayerValue | None:
        """The layer whose value the host gets, or None when no layer sets it."""
        return self.layers[-1] if self.layers else None


def explain_var(
    workspace: Workspace,
    var: str,
    host_id: str,
    extra_vars: Sequence[str],
    playbook: str | None = None,
    role_name: str | None = None,
) -> Iterator[Explanation]:
    """`var` for host `host_id`, one Explanation per context (see the module docstring);
    `extra_vars` as `-e` takes them. Raises InputError when no play of `playbook` targets
    the host, or when `role_name` is no role of it (after the contexts found)."""
    from machineroom.vars import build_var_stack, magic_vars, parse_extra_vars

    if playbook is not None:
        workspace.use_playbook_vars(playbook)  # its group_vars/ and host_vars/ count too
    inventory = workspace.inventory
    host = inventory.host(host_id)
    extra, extra_sources = parse_extra_vars(extra_vars)
    if playbook is None:
        magic = magic_vars(host, inventory, [host.id], check_mode=False, playbook_dir=None)
        stack = build_var_stack(
            host,
            extra_vars=extra,
            extra_sources=extra_sources,
            magic=magic,
            inventory=inventory,
        )
        yield _explanation("", var, host, stack)
        return
    for title, stack in _play_contexts(
        var, host, inventory, playbook, role_name, extra, extra_sources
    ):
        yield _explanation(title, var, host, stack)


def _explanation(title: str, var: str, host: Host, stack: VarStack) -> Explanation:
    from machineroom.vars import to_json_text

    rows = stack.explain(var)
    layers = tuple(
        LayerValue(layer.name, to_json_text(value), where) for layer, value, where in rows
    )
    rendered = _rendered(rows[-1][1], host, stack) if rows else None
    return Explanation(title, layers, rendered)


def _play_contexts(
    var: str,
    host: Host,
    inventory: Inventory,
    playbook_path: str,
    role_name: str | None,
    extra: dict[str, Any],
    extra_sources: dict[str, str],
) -> Iterator[tuple[str, VarStack]]:
    from machineroom.inventory import select_hosts
    from machineroom.playbook.load import load_playbook
    from machineroom.vars import build_var_stack, magic_vars

    book_dir = Path(playbook_path).resolve().parent
    playbook = load_playbook(playbook_path, roles_path=[str(book_dir / "roles"), "roles"])
    targeted = False
    for number, play in enumerate(playbook.plays, start=1):
        try:
            play_hosts = [h.id for h in select_hosts(inventory, play.hosts)]
        except InputError:
            continue
        if host.id not in play_hosts:
            continue
        targeted = True
        roles = _roles_of(play)
        if role_name:
            roles = [r for r in roles if r.name == role_name]
            if not roles:
                continue
        else:
            roles = [r for r in roles if var in r.defaults or var in r.vars or var in r.params]
        label = f"play {number} ({play.name or play.hosts})"
        choices: list[RoleRef | None] = [*roles] or [None]
        for role in choices:
            magic = magic_vars(
                host,
                inventory,
                play_hosts,
                check_mode=False,
                playbook_dir=str(book_dir),
                role_path=role.path if role else None,
            )
            stack = build_var_stack(
                host,
                play=play,
                role=role,
                extra_vars=extra,
                extra_sources=extra_sources,
                magic=magic,
                inventory=inventory,
            )
            seen_as = f", as a task of role {role.name} sees it" if role else ""
            yield f"# {label}{seen_as}", stack
    if not targeted:
        raise InputError(f"no play in {playbook_path} targets host '{host.id}'")
    if role_name and not any(r.name == role_name for p in playbook.plays for r in _roles_of(p)):
        raise InputError(f"no role '{role_name}' in {playbook_path}")


def _roles_of(play: Play) -> list[RoleRef]:
    """Every role a play uses (stages, `roles:`, imported roles, dependencies), each once."""
    found: dict[str, RoleRef] = {}

    def walk(items: Sequence[Item]) -> None:
        from machineroom.playbook.model import Block

        for item in items:
            if item.role is not None:
                found.setdefault(item.role.name, item.role)
            if isinstance(item, Block):
                walk(item.block)
                walk(item.rescue)
                walk(item.always)

    for stage in play.stages:
        if stage.role is not None:
            found.setdefault(stage.role.name, stage.role)
        walk(stage.items)
    return list(found.values())


def _rendered(value: Any, host: Host, stack: VarStack) -> str | None:
    """The value with its templates rendered, or why that needs a run."""
    from machineroom.templating import Templar, TemplateError, Where, is_template
    from machineroom.vars import to_json_text

    if not is_template(value) and not (isinstance(value, dict | list) and "{" in str(value)):
        return None
    try:
        result = Templar().render(value, stack.view(), Where(None, None, host.id))
    except TemplateError as exc:
        return f"(not without running: {exc})"
    return to_json_text(result)
