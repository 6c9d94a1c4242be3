"""Loading a playbook: YAML plays into the model, every role and import resolved, all checked.

`load_playbook()` reads the playbook, the playbooks it imports, its `vars_files`, its roles and
their task files, and checks them all (structure against `schema/playbook.json`, one known
module per task, module arguments against each module's schema) before returning; every
problem found is raised at once as InputErrors. Nothing is connected and nothing is templated.
A task machineroom cannot run behind a condition is a warning (`Playbook.warnings`), not an
error: see playbook/deferred.py.
`select_stages()` narrows a loaded playbook to the stages `--stage` names.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from machineroom.errors import InputError, InputErrors, Location, did_you_mean
from machineroom.playbook.args import is_template
from machineroom.playbook.deferred import settle
from machineroom.playbook.keywords import bool_or_none, connection_keywords, parse_tags
from machineroom.playbook.model import (
    Block,
    Item,
    Play,
    Playbook,
    RoleRef,
    Stage,
    Task,
    map_tasks,
)
from machineroom.playbook.roles import RoleLoader
from machineroom.playbook.tasks import (
    LoadContext,
    Scope,
    aligned_steps,
    find_task_file,
    include_cycle,
    load_task_file,
    merge_module_defaults,
    parse_items,
    push_play_keywords,
    where_searched,
)
from machineroom.schema import validate
from machineroom.templating import Templar, Where
from machineroom.yamlio import (
    LocatedDict,
    file_present,
    key_location_of,
    load_yaml,
    location_of,
    to_plain,
)

SECTION_STAGES = ("pre_tasks", "main", "post_tasks")
# include_tasks / include_role nested deeper than this at run time fail the host: the chain
# is shown (a file that includes itself with no `when` that ends it would never stop)
MAX_INCLUDE_DEPTH = 50


def load_playbook(path: str | os.PathLike[str], *, roles_path: Sequence[str] = ()) -> Playbook:
    """Load and check the playbook at `path`.

    Roles are looked up in the playbook's `roles/` folder, then in each `roles_path` entry,
    then beside the playbook. Raises InputErrors listing every problem, in load order.
    """
    source = Path(path)
    ctx = LoadContext(base=source.parent)
    roles = RoleLoader(ctx, search=())
    ctx.import_role = roles.import_role
    plays = _load_file(source, ctx, roles, [Path(p) for p in roles_path], stack=(), steps=("",))
    warnings: list[str] = []
    for play in plays:
        for stage in play.stages:
            settle(stage.items, ctx.errors, warnings)
        settle(play.handlers, ctx.errors, warnings)
    if ctx.errors:
        unique = {e.message: e for e in ctx.errors}
        raise InputErrors(unique.values())
    # a role applied twice warns once
    return Playbook(path=str(source), plays=tuple(plays), warnings=tuple(dict.fromkeys(warnings)))


def _load_file(
    path: Path,
    ctx: LoadContext,
    roles: RoleLoader,
    roles_path: list[Path],
    stack: tuple[str, ...],
    steps: tuple[str, ...],
) -> list[Play]:
    """The plays of one playbook file; `stack` the playbooks importing it (resolved paths),
    `steps` where each of those and this file were imported ("" for the first)."""
    try:
        data = load_yaml(path)
        if data is None:
            raise InputError("the playbook is empty", Location(str(path)), "a list of plays")
        _short_import_playbook(data)
        validate(data, "playbook", str(path))
    except InputErrors as exc:
        ctx.errors.extend(exc.errors)
        # keep going on a list of plays: the problems inside its tasks are worth reporting too
        if not isinstance(data, list):
            return []
    except InputError as exc:
        ctx.errors.append(exc)
        return []
    stack = (*stack, str(path.resolve()))
    plays: list[Play] = []
    for index, node in enumerate(data):
        if not isinstance(node, Mapping):
            continue
        where = location_of(data, index, Location(str(path)))
        if "import_playbook" in node:
            plays.extend(_import_playbook(node, where, path, ctx, roles, roles_path, stack, steps))
            continue
        roles.search = (path.parent / "roles", *roles_path, path.parent)
        play = _load_play(node, where, path, ctx, roles)
        if play is not None:
            plays.append(play)
    return plays


def _short_import_playbook(data: Any) -> None:
    """`ansible.builtin.import_playbook:` read as `import_playbook:` (in place, locations kept)."""
    for node in data if isinstance(data, list) else ():
        for long in ("ansible.builtin.import_playbook", "ansible.legacy.import_playbook"):
            if isinstance(node, LocatedDict) and long in node and "import_playbook" not in node:
                node["import_playbook"] = node.pop(long)
                for attr in ("key_locations", "value_locations"):
                    found = getattr(node, attr, None)
                    if isinstance(found, dict) and long in found:
                        found["import_playbook"] = found.pop(long)


def _import_playbook(
    node: Mapping[str, Any],
    where: Location,
    path: Path,
    ctx: LoadContext,
    roles: RoleLoader,
    roles_path: list[Path],
    stack: tuple[str, ...],
    steps: tuple[str, ...],
) -> list[Play]:
    name = node["import_playbook"]
    at = location_of(node, "import_playbook", where)
    if not isinstance(name, str):
        return []
    if is_template(name):
        ctx.errors.append(InputError(f"import_playbook: {name!r} is a template", at, "a file name"))
        return []
    target = path.parent / name
    try:
        present = file_present(target)
    except InputError as exc:
        problem = f"import_playbook: {exc.location}: {exc.problem}"
        ctx.errors.append(InputError(problem, at, exc.expected))
        return []
    if not present:
        ctx.errors.append(
            InputError(
                f"import_playbook: file '{name}' not found",
                at,
                f"a path relative to the folder of {path}",
            )
        )
        return []
    here = ctx.short(at)
    chain = include_cycle(stack, steps, str(target.resolve()), here)
    if chain is not None:
        ctx.errors.append(
            InputError(
                f"import_playbook: {name} includes itself: {chain}",
                at,
                "a playbook that does not import itself, directly or through others",
            )
        )
        return []
    plays = _load_file(target, ctx, roles, roles_path, stack, (*aligned_steps(stack, steps), here))
    extra_vars = to_plain(node.get("vars")) if isinstance(node.get("vars"), Mapping) else {}
    extra_tags = parse_tags(node.get("tags"))
    source = f"{where.file}:{location_of(node, 'vars', where).line}"
    return [
        replace(
            play,
            vars=MappingProxyType({**extra_vars, **play.vars}),
            vars_sources=MappingProxyType({**{k: source for k in extra_vars}, **play.vars_sources}),
            tags=play.tags | extra_tags,
        )
        for play in plays
    ]


def _play_vars(
    node: Mapping[str, Any],
    where: Location,
    path: Path,
    ctx: LoadContext,
    per_host: list[tuple[tuple[str, ...], Location]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """`vars:` then each of `vars_files:` (later wins, as in Ansible), with where each came from.
    Entries chosen per host (templates, lists of candidates) go to `per_host` instead."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def merge(data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        for key, value in data.items():
            at = key_location_of(data, key, where)
            values[key] = to_plain(value)
            sources[key] = f"{at.file}:{at.line}"

    merge(node.get("vars"))
    files = node.get("vars_files")
    names = [files] if isinstance(files, str) else files if isinstance(files, list) else []
    for index, name in enumerate(names):
        at = location_of(names, index, location_of(node, "vars_files", where))
        if isinstance(name, list) or is_template(name):
            # `"vars/{{ ansible_os_family }}.yml"`, `[first, fallback]`: read per host
            per_host.append(
                (tuple(str(n) for n in (name if isinstance(name, list) else [name])), at)
            )
            continue
        if not isinstance(name, str):
            continue
        try:
            data = load_yaml(path.parent / name)
            validate(data, "playbook#vars", str(path.parent / name))
        except InputErrors as exc:
            ctx.errors.extend(exc.errors)
            continue
        except InputError as exc:
            if exc.problem == "file not found":
                exc = InputError(
                    f"vars_files: file '{name}' not found",
                    at,
                    f"a path relative to the folder of {path}",
                )
            ctx.errors.append(exc)
            continue
        merge(data)
    return values, sources


def _serial(value: Any) -> tuple[int | str, ...]:
    values = value if isinstance(value, list) else [] if value is None else [value]
    result: list[int | str] = []
    for item in values:
        text = str(item).strip()
        result.append(int(text) if text.isdigit() else text)
    return tuple(result)


# play keywords that are the fact-gathering task's arguments
FACTS_KEYWORDS = ("gather_subset", "gather_timeout", "fact_path")


def _strategy(
    node: Mapping[str, Any], play_vars: Mapping[str, Any], where: Location, ctx: LoadContext
) -> Literal["free", "linear"]:
    """The play's strategy; a template is rendered with the play's vars, as Ansible does.
    host_pinned is free: hosts already keep their own worker to the end of the play here."""
    value = node.get("strategy")
    if is_template(value):
        at = location_of(node, "strategy", where)
        try:
            value = Templar().render(value, dict(play_vars), Where(at))
        except InputError as exc:
            ctx.errors.append(exc)
            return "free"
        if value not in ("free", "linear", "host_pinned"):
            ctx.errors.append(
                InputError(f"strategy renders as {value!r}", at, "free, linear or host_pinned")
            )
    return "linear" if value == "linear" else "free"


def _load_play(
    node: Mapping[str, Any], where: Location, path: Path, ctx: LoadContext, roles: RoleLoader
) -> Play | None:
    roles.start_play()
    ctx.handlers = []
    ctx.dynamic_roles = False
    ctx.module_defaults = merge_module_defaults({}, node.get("module_defaults"))
    errors_before = len(ctx.errors)
    scope = Scope(file=path, stack=(str(path.resolve()),))
    per_host: list[tuple[tuple[str, ...], Location]] = []
    play_vars, sources = _play_vars(node, where, path, ctx, per_host)
    stages: list[Stage] = []

    def section(key: str) -> list[Item]:
        value = node.get(key)
        return parse_items(value, ctx, scope) if isinstance(value, list) else []

    if "pre_tasks" in node:
        stages.append(
            Stage(
                "pre_tasks",
                tuple(section("pre_tasks")),
                location=key_location_of(node, "pre_tasks", where),
            )
        )
    stage_roles = node.get("stages")
    for index, spec in enumerate(stage_roles if isinstance(stage_roles, list) else []):
        at = location_of(stage_roles, index, where)
        role, items = roles.expand(spec, at)
        if role is None:
            continue
        taken = [s.name for s in stages]
        if role.name in taken or role.name in SECTION_STAGES:
            ctx.errors.append(
                InputError(
                    f"stage '{role.name}' twice in this play",
                    at,
                    "each stage once, and none named pre_tasks, main or post_tasks",
                )
            )
            continue
        stages.append(Stage(role.name, tuple(items), role=role, location=at))
    if "roles" in node or "tasks" in node:
        main: list[Item] = []
        role_list = node.get("roles")
        for index, spec in enumerate(role_list if isinstance(role_list, list) else []):
            _, role_items = roles.expand(spec, location_of(role_list, index, where))
            main.extend(role_items)
        main.extend(section("tasks"))
        first = "roles" if "roles" in node else "tasks"
        stages.append(Stage("main", tuple(main), location=key_location_of(node, first, where)))
    if "post_tasks" in node:
        stages.append(
            Stage(
                "post_tasks",
                tuple(section("post_tasks")),
                location=key_location_of(node, "post_tasks", where),
            )
        )
    roles.parse_handlers(node.get("handlers"), path)
    handlers = tuple(t for t in push_play_keywords(ctx.handlers, node) if isinstance(t, Task))
    stages = [replace(s, items=tuple(push_play_keywords(s.items, node))) for s in stages]
    if len(ctx.errors) == errors_before and not ctx.dynamic_roles:
        _check_notify(stages, handlers, ctx)
    hosts = node.get("hosts")
    become_user = node.get("become_user")
    max_fail = node.get("max_fail_percentage")
    connection = node.get("connection")
    return Play(
        hosts=",".join(hosts) if isinstance(hosts, list) else str(hosts or ""),
        stages=tuple(stages),
        handlers=handlers,
        name=str(node["name"]) if isinstance(node.get("name"), str) else None,
        vars=MappingProxyType(play_vars),
        vars_sources=MappingProxyType(sources),
        host_vars_files=tuple(per_host),
        become=node.get("become") is True,
        become_user=become_user if isinstance(become_user, str) else None,
        serial=_serial(node.get("serial")),
        max_fail_percentage=float(max_fail) if isinstance(max_fail, int | float) else None,
        any_errors_fatal=node.get("any_errors_fatal") is True,
        strategy=_strategy(node, play_vars, where, ctx),
        gather_facts=bool_or_none(node.get("gather_facts")),
        check_mode=node.get("check_mode") if isinstance(node.get("check_mode"), bool) else None,
        force_handlers=node.get("force_handlers") is True,
        role_names=tuple(roles.named),
        dependent_role_names=tuple(roles.dependent),
        order=str(node.get("order") or "inventory"),
        facts_args=MappingProxyType(
            {k: to_plain(node[k]) for k in FACTS_KEYWORDS if node.get(k) is not None}
        ),
        vars_prompt=tuple(to_plain(p) for p in node.get("vars_prompt") or ()),
        tags=parse_tags(node.get("tags")),
        connection=connection if isinstance(connection, str) else None,
        **connection_keywords(node),
        location=where,
    )


def iter_tasks(items: Sequence[Item]) -> Iterator[Task]:
    """Every task of a list of items, blocks opened (block, rescue, then always)."""
    for item in items:
        if isinstance(item, Block):
            yield from iter_tasks(item.block)
            yield from iter_tasks(item.rescue)
            yield from iter_tasks(item.always)
        else:
            yield item


def _check_notify(stages: Sequence[Stage], handlers: Sequence[Task], ctx: LoadContext) -> None:
    # Ansible finds an unknown handler only when a task notifies it on some host; a typo
    # is cheaper to hear about now
    known: set[str] = set()
    for handler in handlers:
        for name in (handler.name, *handler.listen):
            if name:
                known.add(name)
                if handler.role is not None:
                    known.add(f"{handler.role.name} : {name}")
    tasks = [task for stage in stages for task in iter_tasks(stage.items)]
    for task in [*tasks, *handlers]:
        for name in task.notify:
            if name in known or is_template(name):
                continue
            label = f'task "{task.name}": ' if task.name else ""
            ctx.errors.append(
                InputError(
                    f"{label}notify: no handler '{name}' in this play" + did_you_mean(name, known),
                    task.location,
                    "the name of a handler, or a topic one listens to",
                )
            )


def stage_names(playbook: Playbook) -> list[str]:
    """The names of the playbook's stages, each once, in order of first appearance."""
    names: dict[str, None] = {}
    for play in playbook.plays:
        for stage in play.stages:
            names.setdefault(stage.name)
    return list(names)


def select_stages(playbook: Playbook, names: Collection[str]) -> Playbook:
    """Keep only the named stages (`--stage`); plays left without a stage are dropped.

    An unknown name is an InputError that lists the playbook's stage names.
    """
    known = stage_names(playbook)
    unknown = sorted(name for name in names if name not in known)
    if unknown:
        raise InputErrors(
            InputError(
                f"unknown stage '{name}'" + did_you_mean(name, known),
                Location(playbook.path),
                "one of: " + ", ".join(known),
            )
            for name in unknown
        )
    wanted = set(names)
    plays = []
    for play in playbook.plays:
        stages = tuple(stage for stage in play.stages if stage.name in wanted)
        if stages:
            plays.append(replace(play, stages=stages))
    return replace(playbook, plays=tuple(plays))


def _base_of(task: Task) -> Path:
    """The playbook folder a task's id is relative to (ids are `relative/file.yml:LINE`)."""
    where = Path(task.location.file if task.location else ".")
    relative = Path(task.id.rsplit(":", 1)[0])
    if ".." not in relative.parts and where.parts[-len(relative.parts) :] == relative.parts:
        return (
            Path(*where.parts[: -len(relative.parts)]) if where.parts != relative.parts else Path()
        )
    return where.parent


def load_include(
    task: Task, args: Mapping[str, Any], *, roles_path: Sequence[str] = ()
) -> tuple[list[Item], RoleRef | None]:
    """Expand an `include_tasks` / `include_role` task, its `args` already templated for a host.

    Files are found as `import_tasks` finds them (beside the including file, then in the role's
    tasks/); roles in the including role's siblings, the playbook's roles/, `../roles`, the
    current folder's roles/ and `roles_path`. Returns the items and, for a role, its RoleRef.
    The included role's handlers are not added to the play (see docs/playbooks.md).
    Raises InputErrors when the file or role is missing or invalid.
    """
    base = _base_of(task)
    ctx = LoadContext(base=base)
    ctx.module_defaults = merge_module_defaults({}, task.module_defaults)
    where = task.location or Location(str(base))
    chain = (*task.included_from, ctx.short(where))
    if len(chain) > MAX_INCLUDE_DEPTH:
        raise InputError(
            f"{task.module}: includes nested more than {MAX_INCLUDE_DEPTH} deep: "
            + _show_chain(chain),
            where,
            f"includes that end within {MAX_INCLUDE_DEPTH} levels (a `when:` that turns false)",
        )
    file = Path(where.file)
    role_tasks = Path(task.role.path) / "tasks" if task.role else None
    scope = Scope(file=file, role=task.role, role_tasks=role_tasks, stack=(str(file.resolve()),))
    search = [base / "roles", base.parent / "roles", Path("roles"), *map(Path, roles_path), base]
    if task.role is not None:
        search.insert(0, Path(task.role.path).parent)
    roles = RoleLoader(ctx, search=tuple(dict.fromkeys(search)))
    ctx.import_role = roles.import_role
    items: list[Item] = []
    role: RoleRef | None = None
    if task.module == "include_role":
        name = args.get("name", args.get("role"))  # `role:` is ansible-core's other name
        spec = {"role": name, **({"vars": args["vars"]} if "vars" in args else {})}
        files = {
            k: str(args[k])
            for k in ("tasks_from", "vars_from", "defaults_from", "handlers_from")
            if k in args
        }
        role, items = roles.expand(spec, where, dedup=False, files=files)
    else:
        name = str(args.get("file", args.get("_raw_params", "")))
        try:
            path = find_task_file(name, scope)
        except InputError as exc:
            problem = f"include_tasks: {exc.location}: {exc.problem}"
            raise InputError(problem, where, exc.expected) from None
        if path is None:
            ctx.errors.append(
                InputError(
                    f"include_tasks: file '{name}' not found",
                    where,
                    where_searched(scope),
                )
            )
        else:
            items = load_task_file(path, ctx, replace(scope, file=path))
    # the include was reached: what in it has no condition of its own certainly runs
    settle(items, ctx.errors, [])
    if ctx.errors:
        raise InputErrors(ctx.errors)
    return _included_from(items, chain), role


def _show_chain(chain: Sequence[str]) -> str:
    """The repeating part of an include chain (`a.yml:3 -> b.yml:2 -> a.yml:3`), or its ends."""
    last = chain[-1]
    first = chain.index(last)
    if first < len(chain) - 1:
        again = chain.index(last, first + 1)
        return " -> ".join(chain[first : again + 1])
    return " -> ".join([*chain[:2], "...", *chain[-2:]])


def _included_from(items: Sequence[Item], chain: tuple[str, ...]) -> list[Item]:
    # each task remembers the includes above it: the next include knows how deep it is
    return map_tasks(items, lambda task: replace(task, included_from=chain))
