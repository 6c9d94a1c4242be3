"""Task lists: YAML task mappings into `Task` and `Block`, with `import_tasks` resolved.

A task mapping holds keywords (`name`, `when`, `loop`, ...) and exactly one module key.
Problems are collected in the `LoadContext` rather than raised, so that one load reports
every mistake in every file at once; a task with a problem is left out of the result.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from machineroom.errors import InputError, InputErrors, Location, did_you_mean
from machineroom.modules import canonical_name, get_module, known_names, without_namespace
from machineroom.modules.ansible_fallback import FallbackModule, Resolution, resolve
from machineroom.modules.base import Module
from machineroom.playbook.args import RAW_KEYS, check_args, is_template, normalize_args, parse_kv
from machineroom.playbook.deferred import deferred_text, is_unimplemented
from machineroom.playbook.keywords import (
    ACTION_KEYS,
    PUSHED_DOWN,
    TASK_KEYWORDS,
    UNSUPPORTED,
    WITH_LOOKUPS,
    bool_or_none,
    conditions,
    flag_templates,
    label_of,
    parse_tags,
    plain_mapping,
    pushed_value,
    task_fields,
)
from machineroom.playbook.model import Block, Item, RoleRef, Task, map_tasks
from machineroom.schema import validate
from machineroom.yamlio import (
    LocatedDict,
    file_present,
    key_location_of,
    load_yaml,
    location_of,
    to_plain,
)

STATIC = ("import_tasks", "import_role")
DYNAMIC = ("include_tasks", "include_role")
META_ACTIONS = (
    "flush_handlers",
    "refresh_inventory",
    "noop",
    "clear_facts",
    "clear_host_errors",
    "end_play",
    "end_host",
    "end_batch",
    "reset_connection",
)
TASK_FILE_NAMES = ("{}.yml", "{}.yaml", "{}")

RoleImporter = Callable[[Mapping[str, Any], Location, "Scope"], list[Item]]


@dataclass
class LoadContext:
    """What one `load_playbook` call shares: where ids are relative to, errors, the role hook."""

    base: Path
    errors: list[InputError] = field(default_factory=list)
    ids: Counter[str] = field(default_factory=Counter)
    # set by the playbook loader: expands `import_role` (roles.py needs this module)
    import_role: RoleImporter | None = None
    # handlers found while loading the current play (roles add theirs)
    handlers: list[Task] = field(default_factory=list)
    dynamic_roles: bool = False  # the play has include_role: handlers may come at run time
    # module name -> default arguments: the play's, with the enclosing blocks' on top
    module_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def short(self, where: Location) -> str:
        """`tasks/main.yml:12`: where a statement is, relative to the playbook's folder."""
        return short_location(where, self.base)

    def task_id(self, where: Location) -> str:
        """`tasks/main.yml:12`, relative to the playbook's folder; `#2` on its second use."""
        try:
            name = os.path.relpath(where.file, self.base)
        except ValueError:  # another drive on Windows
            name = where.file
        base = f"{name}:{where.line}"
        self.ids[base] += 1
        count = self.ids[base]
        return base if count == 1 else f"{base}#{count}"


@dataclass(frozen=True)
class Scope:
    """Where a task list is being read: its file, role, import chain, and handler-ness."""

    file: Path
    role: RoleRef | None = None
    role_tasks: Path | None = None  # the role's tasks/ folder, also searched by imports
    stack: tuple[str, ...] = ()  # resolved files and role folders being read (cycles)
    # for each entry of `stack`, "file:line" of the statement that entered it ("" for none)
    steps: tuple[str, ...] = ()
    handlers: bool = False


def short_location(where: Location, base: Path) -> str:
    """`file:line` with the file relative to `base` (the playbook's folder) when it can be."""
    try:
        name = os.path.relpath(where.file, base)
    except ValueError:  # another drive on Windows
        name = where.file
    return f"{name}:{where.line}" if where.line is not None else name


def aligned_steps(stack: Sequence[str], steps: Sequence[str]) -> tuple[str, ...]:
    """`steps` with one entry per entry of `stack` ("" for those entered by no statement)."""
    kept = tuple(steps)[len(steps) - len(stack) :] if len(steps) > len(stack) else tuple(steps)
    return ("",) * (len(stack) - len(kept)) + kept


def include_cycle(stack: Sequence[str], steps: Sequence[str], target: str, here: str) -> str | None:
    """The include chain `a.yml:3 -> b.yml:2 -> a.yml:3` when `target` (a resolved file or
    role folder) is already being read, as entered at `here`; None when it is not."""
    if target not in stack:
        return None
    aligned = aligned_steps(stack, steps)
    entries = [step for step in aligned[stack.index(target) + 1 :] if step] + [here]
    return " -> ".join([*entries, entries[0]])


def load_task_file(path: Path, ctx: LoadContext, scope: Scope) -> list[Item]:
    """Read a task file (`tasks/main.yml`, an import) and parse its tasks."""
    try:
        data = load_yaml(path)
        validate(data, "playbook#tasks", str(path))
    except InputErrors as exc:
        ctx.errors.extend(exc.errors)
        return []
    except InputError as exc:
        ctx.errors.append(exc)
        return []
    if data is None:
        return []
    return parse_items(data, ctx, scope)


def parse_items(data: Sequence[Any], ctx: LoadContext, scope: Scope) -> list[Item]:
    """Parse a (schema-checked) list of task mappings into Tasks and Blocks."""
    items: list[Item] = []
    for index, node in enumerate(data or ()):
        if not isinstance(node, Mapping):
            continue  # the schema reported it
        where = location_of(data, index, Location(str(scope.file)))
        items.extend(_parse_item(node, where, ctx, scope))
    return items


def _parse_item(
    node: Mapping[str, Any], where: Location, ctx: LoadContext, scope: Scope
) -> list[Item]:
    node = _short_include_keys(node)
    if any(k in node for k in ("block", "rescue", "always")):
        if scope.handlers:
            ctx.errors.append(InputError("a block in handlers", where, "handlers as plain tasks"))
            return []
        return [_parse_block(node, where, ctx, scope)]
    if "import_tasks" in node or "import_role" in node:
        return _parse_import(node, where, ctx, scope)
    if any(key in node for key in ACTION_KEYS):
        expanded = expand_action(node, where, ctx)
        if expanded is None:
            return []
        node = expanded
    task = parse_task(node, where, ctx, scope)
    return [task] if task is not None else []


def expand_action(
    node: Mapping[str, Any], where: Location, ctx: LoadContext
) -> Mapping[str, Any] | None:
    """`local_action: copy src=a dest=b` / `action: {module: copy, src: a}` as the task
    Ansible reads: the module as its own key; `local_action` also delegates to localhost.
    None (after reporting why) when no module is named."""
    key = next(k for k in ACTION_KEYS if k in node)
    value = node[key]
    at = key_location_of(node, key, where)
    module: Any = None
    args: Any = None
    if isinstance(value, Mapping):
        module = value.get("module")
        args = LocatedDict({k: v for k, v in value.items() if k != "module"})
        args.location = at
        args.key_locations = dict(getattr(value, "key_locations", {}))
        args.value_locations = dict(getattr(value, "value_locations", {}))
    elif isinstance(value, str) and value.strip():
        module, _, rest = value.strip().partition(" ")
        args = rest.strip() or None
    others = [k for k in ACTION_KEYS if k in node and k != key]
    problem = None
    if not isinstance(module, str) or not module:
        problem = f"{label_of(node)}{key}: no module named"
    elif module in node or others:
        problem = f"{label_of(node)}{key} and another module in one task"
    if problem is not None:
        ctx.errors.append(
            InputError(problem, at, f"{key}: MODULE ARGS, or a mapping with module: and its args")
        )
        return None
    expanded = LocatedDict({k: v for k, v in node.items() if k != key})
    expanded[module] = args
    if key == "local_action":
        expanded.setdefault("delegate_to", "localhost")
    expanded.location = getattr(node, "location", where)
    expanded.key_locations = {**getattr(node, "key_locations", {}), module: at}
    expanded.value_locations = {**getattr(node, "value_locations", {}), module: at}
    return expanded


def _short_include_keys(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """`ansible.builtin.import_tasks:` (and the other imports and includes) as the short key."""
    renamed = {key: without_namespace(key) for key in node if isinstance(key, str)}
    renamed = {k: v for k, v in renamed.items() if k != v and v in STATIC + DYNAMIC}
    if not renamed:
        return node
    result = LocatedDict({renamed.get(k, k): v for k, v in node.items()})
    result.location = getattr(node, "location", None)  # type: ignore[assignment]
    for attr in ("key_locations", "value_locations"):
        found = getattr(node, attr, {})
        setattr(result, attr, {renamed.get(k, k): v for k, v in found.items()})
    return result


def merge_module_defaults(
    outer: Mapping[str, Mapping[str, Any]], more: Any
) -> dict[str, dict[str, Any]]:
    """`module_defaults:` of a play, block or task over the enclosing ones (the inner value
    of an argument wins); `copy` and `ansible.builtin.copy` name the same module."""
    merged = {name: dict(values) for name, values in outer.items()}
    if isinstance(more, Mapping):
        for name, values in more.items():
            if isinstance(values, Mapping):
                key = canonical_name(str(name)) or without_namespace(str(name))
                merged[key] = {**merged.get(key, {}), **to_plain(values)}
    return merged


def _with_defaults(
    key: str, args: dict[str, Any], defaults: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The task's arguments over its module's defaults (the task's own win)."""
    found = defaults.get(canonical_name(key) or without_namespace(key))
    if not found:
        return args
    merged = LocatedDict({**found, **args})
    merged.location = getattr(args, "location", None)  # type: ignore[assignment]
    merged.key_locations = dict(getattr(args, "key_locations", {}))
    merged.value_locations = dict(getattr(args, "value_locations", {}))
    return merged


def _module_key(node: Mapping[str, Any], where: Location, ctx: LoadContext) -> str | None:
    """The one key of the task naming its module; reports none, several, or unknown ones."""
    label = label_of(node)
    others = [k for k in node if k not in TASK_KEYWORDS]
    modules = [k for k in others if canonical_name(k) is not None or k in STATIC + DYNAMIC]
    problems: list[InputError] = []
    for key in others:
        if key in modules:
            continue
        at = key_location_of(node, key, where)
        if key in UNSUPPORTED:
            problems.append(InputError(f"{label}'{key}' is not supported by machineroom", at))
        elif key.startswith("with_"):
            loops = [f"with_{name}" for name in WITH_LOOKUPS]
            problems.append(
                InputError(
                    f"{label}'{key}' is not supported{did_you_mean(key, loops)}",
                    at,
                    "one of " + ", ".join(loops) + ", or loop:",
                )
            )
        elif modules:
            hint = did_you_mean(key, TASK_KEYWORDS)
            problems.append(InputError(f"{label}unknown task keyword '{key}'{hint}", at))
        else:
            hint = did_you_mean(key, known_names()) or did_you_mean(key, TASK_KEYWORDS)
            problems.append(InputError(f"{label}unknown module '{key}'{hint}", at))
    if len(modules) > 1:
        names = " and ".join(f"'{m}'" for m in modules)
        problems.append(
            InputError(
                f"{label}two modules in one task: {names}",
                key_location_of(node, modules[1], where),
                "exactly one module per task",
            )
        )
    if not modules and not others:
        problems.append(
            InputError(f"{label}no module", where, "one module key, e.g. command: or copy:")
        )
    loops = [k for k in node if k == "loop" or (k.startswith("with_") and k in TASK_KEYWORDS)]
    if len(loops) > 1:
        # ansible-core: "duplicate loop in task"; one would silently win here
        problems.append(
            InputError(
                f"{label}two loops in one task: " + " and ".join(f"'{k}'" for k in loops),
                key_location_of(node, loops[1], where),
                "one of loop: or with_*:",
            )
        )
    ctx.errors.extend(problems)
    return modules[0] if len(modules) == 1 and not problems else None


def _load_module(name: str) -> Module | None:
    try:
        return get_module(name)
    except ImportError:
        # the module's code is not there (yet): its arguments cannot be checked here
        return None


def module_args(
    key: str, node: Mapping[str, Any], where: Location, ctx: LoadContext, module: Module | None
) -> dict[str, Any] | None:
    """The arguments of `key:` (a mapping, free-form or key=value text), merged with `args:`."""
    value = node[key]
    at = location_of(node, key, where)
    label = label_of(node)
    inline: dict[str, Any]
    if value is None:
        inline = {}
    elif isinstance(value, Mapping):
        inline = dict(value)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        free_form = module.free_form if module is not None else None
        if key in ("include_tasks", "import_tasks"):
            inline = {"file": text}
        elif key == "meta":
            inline = {"action": text.strip()}
        elif free_form is not None:
            inline, rest = parse_kv(text, raw_keys=RAW_KEYS)
            if rest:
                inline[free_form] = rest
        else:
            inline, rest = parse_kv(text)
            if rest and key in ("include_role", "import_role") and not inline:
                inline = {"name": rest}
            elif rest:
                ctx.errors.append(
                    InputError(
                        f"{label}{key}: '{rest}' is not key=value",
                        at,
                        "arguments as key=value pairs or a mapping",
                    )
                )
                return None
    else:
        ctx.errors.append(
            InputError(f"{label}{key}: arguments are a list", at, "a mapping or key=value text")
        )
        return None
    extra = node.get("args")
    if not isinstance(extra, Mapping):
        return inline if not isinstance(value, Mapping) else value  # type: ignore[return-value]
    # keep the line numbers of both sources for the argument check; inline wins
    merged = LocatedDict({**extra, **inline})
    merged.location = at
    merged.key_locations = {
        **getattr(extra, "key_locations", {}),
        **getattr(value, "key_locations", {}),
    }
    merged.value_locations = {
        **getattr(extra, "value_locations", {}),
        **getattr(value, "value_locations", {}),
    }
    return merged


def _lacking_module(node: Mapping[str, Any], where: Location) -> InputError | None:
    """The problem of a task whose one non-keyword key names a module machineroom lacks
    (`yum:`, `win_service:`, a collection's): settled later by whether it certainly runs."""
    others = [k for k in node if k not in TASK_KEYWORDS]
    if len(others) != 1:
        return None
    key = others[0]
    if canonical_name(key) is not None or key in STATIC + DYNAMIC or key in UNSUPPORTED:
        return None
    if key.startswith("with_"):
        return None
    hint = did_you_mean(key, known_names())
    at = key_location_of(node, key, where)
    return InputError(f"{label_of(node)}unknown module '{key}'{hint}", at)


def _raw_args(node: Mapping[str, Any], key: str) -> dict[str, Any]:
    # a module we lack: its arguments are kept as written, for `plan` and the results
    value = node[key]
    inline = to_plain(value) if isinstance(value, Mapping) else {}
    if value is not None and not isinstance(value, Mapping):
        inline = {"_raw_params": to_plain(value)}
    extra = node.get("args")
    return {**(to_plain(extra) if isinstance(extra, Mapping) else {}), **inline}


def resolve_fallback(name: str, base: Path, role: RoleRef | None) -> Resolution:
    """What ansible-core makes of a module machineroom lacks, searching the playbook's and
    the role's library/ and collections/ (modules/ansible_fallback.py)."""
    return resolve(name, base, [role.path] if role is not None else [])


def _fallback_problem(
    lacking: InputError, resolution: Resolution, node: Mapping[str, Any], key: str, at: Location
) -> InputError:
    # a typo of one of our modules keeps "did you mean"; otherwise ansible-core's reason
    # (not installed, an action plugin, a collection missing) says more than "unknown".
    # Another collection's name is no typo of ours, however alike (`community.general.`).
    ours = "." not in key or key.startswith(("ansible.builtin.", "ansible.legacy."))
    typo = ours and "did you mean" in lacking.problem and not resolution.found
    if not resolution.problem or typo:
        return lacking
    return InputError(f"{label_of(node)}{resolution.problem}", key_location_of(node, key, at))


def _fallback_task(
    key: str,
    module: FallbackModule,
    node: Mapping[str, Any],
    where: Location,
    ctx: LoadContext,
    scope: Scope,
) -> Task | None:
    """A task whose module ansible-core runs: its arguments as written, checked on the host
    (a misspelt documented one is reported now)."""
    args = module_args(key, node, where, ctx, module)
    if args is None:
        return None
    defaults = merge_module_defaults(ctx.module_defaults, node.get("module_defaults"))
    args = _with_defaults(key, args, defaults)  # module_defaults apply as to native modules
    typos = module.typos(args)
    for argument, problem in typos:
        at = key_location_of(args, argument, key_location_of(node, key, where))
        ctx.errors.append(InputError(f"{label_of(node)}{key}: {problem}", at))
    if typos:
        return None
    return Task(
        module=key,
        args=MappingProxyType(to_plain(args)),
        role=scope.role,
        location=where,
        id=ctx.task_id(where),
        **task_fields(node),
    )


def parse_task(
    node: Mapping[str, Any], where: Location, ctx: LoadContext, scope: Scope
) -> Task | None:
    """One task mapping (not a block, not an import) into a Task, or None after a problem.

    A task machineroom cannot run (see playbook/deferred.py) comes back with `deferred` set.
    """
    lacking = _lacking_module(node, where)
    if lacking is not None:
        lacked = next(k for k in node if k not in TASK_KEYWORDS)
        resolution = resolve_fallback(lacked, ctx.base, scope.role)
        if resolution.module is not None:  # ansible-core runs it
            return _fallback_task(lacked, resolution.module, node, where, ctx, scope)
        lacking = _fallback_problem(lacking, resolution, node, lacked, where)
        return Task(
            module=lacked,
            args=MappingProxyType(_raw_args(node, lacked)),
            role=scope.role,
            location=where,
            id=ctx.task_id(where),
            deferred=deferred_text([lacking]),
            **task_fields(node),
        )
    key = _module_key(node, where, ctx)
    if key is None:
        return None
    label = label_of(node)
    if "listen" in node and not scope.handlers:
        ctx.errors.append(
            InputError(
                f"{label}listen: only handlers listen", key_location_of(node, "listen", where)
            )
        )
    at = key_location_of(node, key, where)
    module = None if key in DYNAMIC else _load_module(key)
    args = module_args(key, node, where, ctx, module)
    if args is None:
        return None
    defaults = merge_module_defaults(ctx.module_defaults, node.get("module_defaults"))
    if key not in DYNAMIC:
        args = _with_defaults(key, args, defaults)
    fields = task_fields(node)
    deferred: str | None = None
    if key in DYNAMIC:
        kind = "include"
        name = key
        _check_include(key, args, at, label, ctx, scope)
    elif canonical_name(key) == "meta":
        kind, name = "meta", "meta"
        action = args.get("action")
        if action not in META_ACTIONS and not is_template(action):
            ctx.errors.append(
                InputError(
                    f"{label}meta: unknown action {action!r}"
                    + did_you_mean(str(action), META_ACTIONS),
                    location_of(node, key, where),
                    "one of: " + ", ".join(META_ACTIONS),
                )
            )
    else:
        kind = "module"
        name = canonical_name(key) or key
        if module is not None:
            args, problems = normalize_args(key, args, module.schema, label, at)
            problems += check_args(key, args, module.schema, label, at)
            # a task written to fail (ignore_errors, failed_when: tests of error handling)
            # fails where it runs, as in Ansible, whatever is wrong with its arguments
            expects_failure = fields["ignore_errors"] or fields["failed_when"] is not None
            if problems and (expects_failure or all(is_unimplemented(p) for p in problems)):
                # arguments we do not implement: an error only if the task certainly runs
                deferred = deferred_text(problems)
            else:
                ctx.errors.extend(problems)
    return Task(
        module=name,
        args=MappingProxyType(to_plain(args)),
        module_defaults=MappingProxyType(defaults if kind == "include" else {}),
        kind=kind,  # type: ignore[arg-type]
        role=scope.role,
        location=where,
        id=ctx.task_id(where),
        deferred=deferred,
        **fields,
    )


def find_task_file(name: str, scope: Scope) -> Path | None:
    """An imported/included file: beside the including file, then in the role's tasks/.

    None when there is none; one that is there but cannot be read (a symlink loop, a folder,
    no permission) is an InputError naming it.
    """
    folders = [scope.file.parent]
    if scope.role_tasks is not None and scope.role_tasks not in folders:
        folders.append(scope.role_tasks)
    for folder in folders:
        candidate = folder / name
        if file_present(candidate):
            return candidate
    return None


def _found(
    name: str, at: Location, label: str, key: str, ctx: LoadContext, scope: Scope
) -> Path | Literal[False] | None:
    """find_task_file for an import or include at `at`: False after reporting a file that is
    there but cannot be read."""
    try:
        return find_task_file(name, scope)
    except InputError as exc:
        problem = f"{label}{key}: {exc.location}: {exc.problem}"
        ctx.errors.append(InputError(problem, at, exc.expected))
        return False


def where_searched(scope: Scope) -> str:
    """Where a task file named by an import or include was looked for, for messages."""
    where = f"a file beside {scope.file}"
    if scope.role_tasks is not None and scope.role_tasks != scope.file.parent:
        where += f" or in {scope.role_tasks}"
    return where


def _check_include(
    key: str, args: Mapping[str, Any], at: Location, label: str, ctx: LoadContext, scope: Scope
) -> None:
    # an include is expanded per host at run time, but a file or role that does not exist
    # at all is worth saying now, before anything connects
    # include_role takes `role:` for `name:`, as ansible-core does
    target = args.get("file") if key == "include_tasks" else args.get("name", args.get("role"))
    if target is None:
        wanted = "file" if key == "include_tasks" else "name"
        ctx.errors.append(InputError(f"{label}{key}: missing required argument '{wanted}'", at))
        return
    if is_template(target):
        if key == "include_role":
            ctx.dynamic_roles = True
        return
    if key == "include_tasks" and _found(str(target), at, label, key, ctx, scope) is None:
        ctx.errors.append(
            InputError(
                f"{label}include_tasks: file '{target}' not found",
                at,
                where_searched(scope),
            )
        )
    if key == "include_role":
        ctx.dynamic_roles = True


def _parse_import(
    node: Mapping[str, Any], where: Location, ctx: LoadContext, scope: Scope
) -> list[Item]:
    key = _module_key(node, where, ctx)
    if key is None:
        return []
    label = label_of(node)
    at = key_location_of(node, key, where)
    args = module_args(key, node, where, ctx, None)
    if args is None:
        return []
    if key == "import_role":
        if ctx.import_role is None:
            ctx.errors.append(InputError(f"{label}import_role is not allowed here", at))
            return []
        items = ctx.import_role(args, at, scope)
    else:
        items = _import_tasks(args, at, label, ctx, scope)
    templated = flag_templates(node)
    if templated:
        items = push_templates(items, templated)
    # the other task keywords of an import reach each imported task, as in Ansible
    pushed = {
        key: pushed_value(key, node[key])
        for key in (*PUSHED_DOWN, "ignore_errors")
        if key in node and node[key] is not None and key not in templated
    }
    if pushed:
        items = _push_down(items, pushed)
    notify = task_fields(node)["notify"]
    if notify:
        items = map_tasks(
            items,
            lambda t: replace(t, notify=(*t.notify, *(n for n in notify if n not in t.notify))),
        )
    return apply_keywords(
        items,
        when=conditions(node.get("when")),
        tags=parse_tags(node.get("tags")),
        vars=plain_mapping(node.get("vars")),
        become=bool_or_none(node.get("become")),
        become_user=node.get("become_user") if isinstance(node.get("become_user"), str) else None,
    )


def _import_tasks(
    args: Mapping[str, Any], at: Location, label: str, ctx: LoadContext, scope: Scope
) -> list[Item]:
    name = args.get("file")
    if not isinstance(name, str) or is_template(name):
        ctx.errors.append(
            InputError(
                f"{label}import_tasks: {name!r} is not a file name",
                at,
                "a file name without templates (use include_tasks for a file chosen per host)",
            )
        )
        return []
    path = _found(name, at, label, "import_tasks", ctx, scope)
    if path is False:
        return []
    if path is None:
        ctx.errors.append(
            InputError(
                f"{label}import_tasks: file '{name}' not found",
                at,
                where_searched(scope),
            )
        )
        return []
    resolved = str(path.resolve())
    here = ctx.short(at)
    chain = include_cycle(scope.stack, scope.steps, resolved, here)
    if chain is not None:
        ctx.errors.append(
            InputError(
                f"{label}import_tasks: {name} includes itself: {chain}",
                at,
                "a file that does not import itself, directly or through others",
            )
        )
        return []
    inner = replace(
        scope,
        file=path,
        stack=(*scope.stack, resolved),
        steps=(*aligned_steps(scope.stack, scope.steps), here),
    )
    return load_task_file(path, ctx, inner)


def apply_keywords(
    items: Sequence[Item],
    *,
    when: tuple[Any, ...] = (),
    tags: frozenset[str] = frozenset(),
    vars: Mapping[str, Any] | None = None,
    become: bool | None = None,
    become_user: str | None = None,
) -> list[Item]:
    """Give each item the keywords of what imported it: conditions first, tags added, vars
    underneath its own, become where it sets none (Ansible's inheritance)."""
    if not (when or tags or vars or become is not None or become_user):
        return list(items)
    result: list[Item] = []
    for item in items:
        result.append(
            replace(
                item,
                when=(*when, *item.when),
                tags=tags | item.tags,
                vars=MappingProxyType({**(vars or {}), **item.vars}),
                become=item.become if item.become is not None else become,
                become_user=item.become_user or become_user,
            )
        )
    return result


# play keywords that reach every task of the play and its handlers (Ansible's inheritance)
PLAY_PUSHED = (
    "environment",
    "ignore_errors",
    "ignore_unreachable",
    "no_log",
    "diff",
    "throttle",
    "timeout",
)


def push_play_keywords(items: Sequence[Item], node: Mapping[str, Any]) -> list[Item]:
    """`items` with the play's task keywords (`environment:`, `no_log:`, ...) where a task
    (or block) sets none; templated true/false ones are evaluated per host."""
    templated = {k: v for k, v in flag_templates(node).items() if k in PLAY_PUSHED}
    pushed = {
        key: pushed_value(key, node[key])
        for key in PLAY_PUSHED
        if key in node and node[key] is not None and key not in templated
    }
    result = _push_down(items, pushed) if pushed else list(items)
    return push_templates(result, templated) if templated else result


# pushed-down true/false keywords that a task's false does not undo
TRUE_WINS = ("ignore_unreachable", "run_once", "no_log", "delegate_facts", "ignore_errors")


def _push_down(items: Sequence[Item], values: Mapping[str, Any]) -> list[Item]:
    def push(task: Task) -> Task:
        changes: dict[str, Any] = {}
        for key, value in values.items():
            current = getattr(task, key)
            if key == "environment":
                changes[key] = MappingProxyType({**value, **current})
            elif key in TRUE_WINS:
                changes[key] = current or value
            elif current is None:
                changes[key] = value
        return replace(task, **changes)

    return map_tasks(items, push)


def push_templates(items: Sequence[Item], templated: Mapping[str, str]) -> list[Item]:
    """Give each task the templated true/false keywords of what holds it (a block, an
    import) where it sets none of its own; a nested block that sets one keeps its own."""
    result: list[Item] = []
    for item in items:
        if isinstance(item, Block):
            own = {"become": item.become, "ignore_errors": item.ignore_errors}
            inner = {k: v for k, v in templated.items() if own.get(k) is None}
            result.append(
                replace(
                    item,
                    block=tuple(push_templates(item.block, inner)),
                    rescue=tuple(push_templates(item.rescue, inner)),
                    always=tuple(push_templates(item.always, inner)),
                )
            )
            continue
        adds = {
            key: template
            for key, template in templated.items()
            if key not in item.templated and getattr(item, key) in (None, False)
        }
        if adds:
            result.append(replace(item, templated=MappingProxyType({**item.templated, **adds})))
        else:
            result.append(item)
    return result


def _parse_block(node: Mapping[str, Any], where: Location, ctx: LoadContext, scope: Scope) -> Block:
    sections: dict[str, tuple[Item, ...]] = {}
    outer = ctx.module_defaults
    ctx.module_defaults = merge_module_defaults(outer, node.get("module_defaults"))
    try:
        for section in ("block", "rescue", "always"):
            sections[section] = tuple(parse_items(node.get(section) or [], ctx, scope))
    finally:
        ctx.module_defaults = outer
    pushed: dict[str, Any] = {}
    templated = flag_templates(node)
    for key in PUSHED_DOWN:
        if key in node and node[key] is not None and key not in templated:
            value = node[key]
            pushed[key] = pushed_value(key, value)
    if pushed:
        sections = {k: tuple(_push_down(v, pushed)) for k, v in sections.items()}
    if templated:
        sections = {k: tuple(push_templates(v, templated)) for k, v in sections.items()}
    return Block(
        block=sections["block"],
        rescue=sections["rescue"],
        always=sections["always"],
        name=str(node["name"]) if isinstance(node.get("name"), str) else None,
        when=conditions(node.get("when")),
        tags=parse_tags(node.get("tags")),
        vars=plain_mapping(node.get("vars")),
        become=bool_or_none(node.get("become")),
        become_user=node.get("become_user") if isinstance(node.get("become_user"), str) else None,
        ignore_errors=bool_or_none(node.get("ignore_errors")),
        role=scope.role,
        location=where,
    )
