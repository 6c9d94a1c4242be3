"""`machineroom explain VAR --host H`: a variable's value for a host and every layer that sets it.

Without a playbook: the inventory layers (every group's own value, not only the winner),
extra vars and magic variables. With `--playbook`: for each play that targets the host, the
play's vars and, for each role of that play whose defaults, vars or params set VAR, the stack
a task of that role sees (role defaults at the bottom, role vars and params above play vars).
When no role sets VAR, one stack without role layers is shown per play. `--role` picks one
role. Registered values, set_fact and facts exist only while a playbook runs, so they are not
shown. A value holding `{{ }}` is also rendered with the same variables, when it can be.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.context import inventory_options, make_workspace
from machineroom.errors import ExitCode, InputError

if TYPE_CHECKING:
    from machineroom.inventory.model import Host, Inventory
    from machineroom.playbook.model import Item, Play, RoleRef
    from machineroom.vars import VarStack


@click.command("explain")
@click.argument("var")
@click.option("--host", "host_id", required=True, help="The host whose value to explain.")
@inventory_options
@click.option(
    "--playbook",
    type=click.Path(dir_okay=False),
    help="Include the vars of the plays (and their roles) that target the host.",
)
@click.option("--role", "role_name", help="With --playbook: explain as a task of this role.")
@click.option(
    "-e",
    "--extra-vars",
    "extra_vars",
    multiple=True,
    help="key=value, JSON, or @file.yml, as for apply; repeatable.",
)
def explain_command(
    var: str,
    host_id: str,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    playbook: str | None,
    role_name: str | None,
    extra_vars: tuple[str, ...],
) -> None:
    """Print VAR's value for a host and where each layer set it (the last one wins)."""
    from machineroom.vars import build_var_stack, magic_vars, parse_extra_vars

    workspace = make_workspace(inventory_paths, state_path)
    inventory = workspace.inventory
    host = inventory.host(host_id)
    extra, extra_sources = parse_extra_vars(extra_vars)

    contexts: list[tuple[str, VarStack]] = []
    if playbook is None:
        if role_name:
            raise click.UsageError("--role needs --playbook")
        magic = magic_vars(host, inventory, [host.id], check_mode=False, playbook_dir=None)
        stack = build_var_stack(
            host,
            extra_vars=extra,
            extra_sources=extra_sources,
            magic=magic,
            inventory=inventory,
        )
        contexts.append(("", stack))
    else:
        contexts.extend(
            _play_contexts(var, host, inventory, playbook, role_name, extra, extra_sources)
        )

    found = False
    for title, stack in contexts:
        if title:
            click.echo(title)
        found = _print_explanation(var, host, stack, quiet=not title) or found
    if not found:
        click.echo(f"{var} is not set for {host.id} in any layer", err=True)
        raise SystemExit(ExitCode.ERROR)


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


def _print_explanation(var: str, host: Host, stack: VarStack, quiet: bool) -> bool:
    from machineroom.vars import to_json_text

    rows = stack.explain(var)
    if not rows:
        if not quiet:
            click.echo("  not set")
        return False
    _, value, source = rows[-1]
    click.echo(f"{var} = {to_json_text(value)}    ({rows[-1][0].name}, {source})")
    rendered = _rendered(var, value, host, stack)
    if rendered is not None:
        click.echo(f"  renders to: {rendered}")
    width = max(len(layer.name) for layer, _, _ in rows)
    for index, (layer, layer_value, where) in enumerate(rows):
        mark = "*" if index == len(rows) - 1 else " "
        click.echo(f"  {mark} {layer.name:<{width}}  {to_json_text(layer_value)}  {where}")
    return True


def _rendered(var: str, value: Any, host: Host, stack: VarStack) -> str | None:
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
