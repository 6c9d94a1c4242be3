"""The pre-flight check of template files: errors found before any host is contacted.

Every `template:` task the run would run has its file (and the files it includes or imports)
compiled: a syntax error, an unknown filter or test, an included file that is not there is
reported at once with the file:line, whatever the variables. Then the file is rendered for
each host with the variables known before the run (inventory, play, role, block and task
vars, `-e`, magic variables), to find an undefined variable now rather than on every host.

A false "undefined" would stop a playbook that runs fine, so rendering is careful:
- a name the run could still set (gathered facts, `register`, `set_fact`, `include_vars`,
  loop variables, `hostvars`, every `ansible_*` name) renders as `_Later`, whose first use
  (printing it, comparing it, `is defined`, `| default`, any filter or test) stops this
  host's check without a verdict: everything before it was decided by values the run will
  have too;
- a lookup stops it as well (`pipe` runs a command, `password` writes a file);
- when the playbook could set names nobody can list (an `include_tasks`, a module run by
  ansible-core, `include_vars` of a file, a `set_fact` key that is a template), only the
  compile step runs;
- the task must run on the host: its tags selected, its `when` (and its blocks') true with
  the known variables, no loop, no delegation, not a handler (a change may never notify it);
  a `run_once` task is rendered for the play's first host only.
Only an undefined name is reported; any other failure is left for the run to report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from machineroom.errors import InputError, InputErrors
from machineroom.executor.files import search_paths
from machineroom.inventory.model import Host, Inventory
from machineroom.lookups import TASK_DIR_VAR
from machineroom.modules import canonical_name
from machineroom.modules.template import DELIMITERS
from machineroom.playbook.model import Block, Play, Playbook, Task
from machineroom.playbook.tags import tags_allow
from machineroom.templating import (
    BASE_DIR_VAR,
    Templar,
    TemplateError,
    Where,
    is_template,
    template_variables,
)
from machineroom.vars import build_var_stack, magic_vars, role_name_vars
from machineroom.yamlio import read_text

# Names the run sets or changes while it runs, whatever the playbook says.
_ALWAYS_LATER = frozenset(
    {"item", "facts", "ansible_facts", "hostvars", "groups", "group_names", "play_hosts", "vars"}
)
# ...and the names starting so, when they are not set before the run (facts, ansible_loop)
_LATER_PREFIX = "ansible_"
_NOT_LATER = frozenset({"ansible_managed"})  # the template module's default when unset
# module -> the names it sets as facts (prefixes end in "_")
_FACT_NAMES: dict[str, tuple[str, ...]] = {
    "facts": ("ansible_", "facts"),
    "hostname": ("ansible_",),
    "getent": ("getent_",),
    "package_facts": ("packages",),
    "service_facts": ("services",),
}
_MAX_HOSTS_NAMED = 3
_RENDER_HOSTS = 50
_END_ACTIONS = frozenset({"end_host", "end_play", "end_batch"})


class _Deferred(BaseException):
    """A template touched a value only the run will know: no verdict for this host.

    A BaseException, so that no `except Exception` on the way (Jinja's, the Templar's)
    mistakes it for the template's own failure."""


def _defer(*_: Any, **__: Any) -> NoReturn:
    raise _Deferred


class _Later:
    """A variable the run may set: any use of it defers the check (see the module doc)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<set at run time: {self.name}>"

    def __getattr__(self, name: str) -> NoReturn:
        raise _Deferred

    __bool__ = __str__ = __iter__ = __len__ = __getitem__ = __contains__ = _defer
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _defer
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _defer
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _defer
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = __call__ = _defer
    __int__ = __float__ = __index__ = __format__ = __reversed__ = _defer


def _touches_later(values: Iterable[Any]) -> bool:
    return any(isinstance(v, _Later) for v in values)


def _guard(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` (a filter or test) deferring when it is handed a `_Later`."""

    @functools.wraps(function)  # keeps jinja's pass_context marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _touches_later(args) or _touches_later(kwargs.values()):
            raise _Deferred
        return function(*args, **kwargs)

    return guarded


class _KnownVars(Mapping[str, Any]):
    """The variables a task sees before the run: `_Later` for the names the run may set."""

    def __init__(
        self, known: Mapping[str, Any], later: frozenset[str], prefixes: tuple[str, ...]
    ) -> None:
        self._known = known
        self._later = later
        self._prefixes = prefixes

    def _is_later(self, key: str) -> bool:
        if key in self._later:
            return True
        return key not in self._known and key not in _NOT_LATER and key.startswith(self._prefixes)

    def __getitem__(self, key: str) -> Any:
        if self._is_later(key):
            return _Later(key)
        return self._known[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self._is_later(key) or key in self._known)

    def __iter__(self) -> Iterator[str]:
        # an included template gets a copy of these: the later names must be in it
        yield from self._known
        yield from (k for k in self._later if k not in self._known)

    def __len__(self) -> int:
        return len(self._known) + len(self._later - set(self._known))


@dataclass(frozen=True)
class _Settable:
    """What the playbook's tasks may set at run time; `unknown`: names nobody can list."""

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = (_LATER_PREFIX,)
    unknown: str | None = None  # why, for the record


def _later_names(playbook: Playbook) -> _Settable:
    names: set[str] = set(_ALWAYS_LATER)
    for play in playbook.plays:
        if play.host_vars_files:
            return _Settable(unknown="vars_files chosen per host")
        for task in _all_tasks(play):
            if task.kind == "include":
                return _Settable(unknown=f"{task.module} loads tasks at run time")
            if task.register:
                names.add(task.register)
            control = task.loop_control
            names.add(str(control.get("loop_var", "item")))
            if control.get("index_var"):
                names.add(str(control["index_var"]))
            module = canonical_name(task.module)
            if module is None:
                return _Settable(unknown=f"{task.module} may set any variable")
            if module in ("set_fact", "add_host"):  # add_host: a known host's vars too
                keys = [str(k) for k in task.args if k != "cacheable"]
                if any(is_template(k) for k in keys) or is_template(task.args):
                    return _Settable(unknown=f"a {module} key is a template")
                names.update(keys)
            elif module == "include_vars":
                name = task.args.get("name")
                if not isinstance(name, str) or is_template(name):
                    return _Settable(unknown="include_vars sets the names in its files")
                names.add(name)
            else:
                names.update(_FACT_NAMES.get(module, ()))
    prefixes = {n for n in names if n.endswith("_")} | {_LATER_PREFIX}
    return _Settable(frozenset(names - prefixes), tuple(sorted(prefixes)))


def _all_tasks(play: Play) -> Iterator[Task]:
    for stage in play.stages:
        yield from (task for task, _ in _walk(stage.items, ()))
    yield from play.handlers


def _walk(
    items: Sequence[Task | Block], blocks: tuple[Block, ...]
) -> Iterator[tuple[Task, tuple[Block, ...]]]:
    for item in items:
        if isinstance(item, Block):
            inner = (*blocks, item)
            for part in (item.block, item.rescue, item.always):
                yield from _walk(part, inner)
        else:
            yield item, blocks


@dataclass
class _Findings:
    """Errors by (task, message), with the hosts they were found on, in order."""

    hosts: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    errors: dict[tuple[str, str], TemplateError] = field(default_factory=dict)

    def add(self, task: Task, error: TemplateError, host: str | None) -> None:
        key = (task.id or str(task.location), error.detail)
        self.errors.setdefault(key, error)
        hosts = self.hosts.setdefault(key, [])
        if host is not None and host not in hosts:
            hosts.append(host)

    def raise_any(self, tasks: Mapping[str, Task], early: bool = True) -> None:
        if not self.errors:
            return
        found = []
        for key, error in self.errors.items():
            task = tasks[key[0]]
            hosts = self.hosts[key]
            on = ""
            if hosts:
                named = ", ".join(hosts[:_MAX_HOSTS_NAMED])
                more = len(hosts) - _MAX_HOSTS_NAMED
                on = f" on {named}" + (f" and {more} more" if more > 0 else "")
            found.append(
                InputError(
                    f'task "{task.display_name}"{on}: {error.detail}'
                    + (" (found before contacting any host)" if early else ""),
                    task.location,
                )
            )
        raise InputErrors(found)


def compile_templates(playbook: Playbook, playbook_dir: str) -> None:
    """Raise InputErrors for the files of the playbook's `template:` tasks that do not
    compile (a syntax error, an unknown filter or test, an included file not there): what
    `validate` and `--syntax-check` check, without an inventory."""
    templar = Templar(base_dir=playbook_dir)
    findings = _Findings()
    by_id: dict[str, Task] = {}
    for play in playbook.plays:
        walked = [pair for stage in play.stages for pair in _walk(stage.items, ())]
        for task, blocks in [*walked, *((handler, ()) for handler in play.handlers)]:
            if canonical_name(task.module) != "template" or task.kind != "module":
                continue
            if _failure_expected(task, blocks):
                continue  # as apply: the playbook handles the task failing
            by_id[task.id or str(task.location)] = task
            _compile(templar, task, playbook_dir, findings)
    findings.raise_any(by_id, early=False)


def check_templates(
    playbook: Playbook,
    inventory: Inventory,
    play_hosts: Sequence[Sequence[Host]],
    *,
    playbook_dir: str,
    extra_vars: Mapping[str, Any],
    tags: frozenset[str] = frozenset(),
    skip_tags: frozenset[str] = frozenset(),
    check: bool = False,
    render: bool = True,
    vault: bool = False,
) -> None:
    """Raise InputErrors for the template files of `template:` tasks that cannot work: a
    syntax error (always), an undefined variable no task can set (when `render`, and the
    task surely runs on the host). Nothing is contacted, nothing runs."""
    templar = Templar(base_dir=playbook_dir)
    templar.guard_calls(_guard, _defer)
    later = _later_names(playbook) if render else _Settable(unknown="not asked")
    findings = _Findings()
    inputs = _Inputs(templar, later, extra_vars, vault)
    by_id: dict[str, Task] = {}
    for play, hosts in zip(playbook.plays, play_hosts, strict=True):
        if not hosts:
            continue
        ids = [h.id for h in hosts]
        sample = _sample(hosts)
        magic = {
            h.id: magic_vars(
                h,
                inventory,
                ids,
                check_mode=check,
                playbook_dir=playbook_dir,
                run_tags=sorted(tags),
                skip_tags=sorted(skip_tags),
            )
            | role_name_vars(play)
            for h in sample
        }
        walked = [pair for stage in play.stages for pair in _walk(stage.items, ())]
        walked += [(handler, ()) for handler in play.handlers]
        # a host may leave the play before the task: it need not render there
        ends_early = any(
            t.kind == "meta" and t.args.get("action") in _END_ACTIONS for t, _ in walked
        )
        for task, blocks in walked:
            if canonical_name(task.module) != "template" or task.kind != "module":
                continue
            task_tags = play.tags.union(task.tags, *(b.tags for b in blocks))
            if not tags_allow(task_tags, tags, skip_tags) or _failure_expected(task, blocks):
                continue
            by_id[task.id or str(task.location)] = task
            compiled = _compile(templar, task, playbook_dir, findings)
            if compiled is None or later.unknown is not None or ends_early:
                continue
            if any(task is handler for handler in play.handlers):
                continue  # runs only when a change notifies it: maybe never
            if "run_once" in task.templated:
                continue  # run once or on every host: the run decides
            # run_once: on the play's first host (of each batch: the first is surely one)
            for host in sample[:1] if task.run_once else sample:
                error = _render_for(inputs, task, blocks, play, host, compiled, magic[host.id])
                if error is not None:
                    findings.add(task, error, host.id)
    findings.raise_any(by_id)


def _sample(hosts: Sequence[Host]) -> list[Host]:
    """The hosts a template is rendered for: one of each set of groups first (hosts in the
    same groups share their group variables), then the others in order, at most
    _RENDER_HOSTS (a 10,000-host play is not rendered 10,000 times before it starts)."""
    chosen: dict[str, Host] = {}
    by_groups: dict[tuple[str, ...], Host] = {}
    for host in hosts:
        by_groups.setdefault(tuple(host.groups), host)
    for host in [*by_groups.values(), *hosts]:
        if len(chosen) >= _RENDER_HOSTS:
            break
        chosen.setdefault(host.id, host)
    order = {h.id: i for i, h in enumerate(hosts)}
    return sorted(chosen.values(), key=lambda h: order[h.id])


def _failure_expected(task: Task, blocks: tuple[Block, ...]) -> bool:
    """The playbook handles the task failing (ignore_errors, failed_when, a rescue): an
    error is its business, at run time."""
    if task.ignore_errors or task.failed_when is not None:
        return True
    if "ignore_errors" in task.templated:  # `ignore_errors: "{{ x }}"`: maybe
        return True
    return any(b.rescue or b.ignore_errors for b in blocks)


@dataclass(frozen=True)
class _Compiled:
    path: Path
    text: str
    search: tuple[str, ...]


def _compile(
    templar: Templar, task: Task, playbook_dir: str, findings: _Findings
) -> _Compiled | None:
    """The task's template file, compiled with what it includes; None when it cannot be
    found now (a templated `src`, a missing file: the run says so) or has an error."""
    src = task.args.get("src")
    if not isinstance(src, str) or is_template(src) or is_template(_delimiters(task)):
        return None
    search = tuple(str(p) for p in search_paths("templates", task.role, playbook_dir))
    wanted = Path(src).expanduser()
    candidates = [wanted] if wanted.is_absolute() else [Path(s) / wanted for s in search]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        return None
    try:
        text = read_text(path)
        templar.compile_file(
            text,
            str(path),
            Where(),
            search=search,
            trim_blocks=bool(task.args.get("trim_blocks", True)),
            lstrip_blocks=bool(task.args.get("lstrip_blocks", False)),
            **_delimiters(task),
        )
    except TemplateError as error:
        findings.add(task, error, None)
        return None
    except InputError:
        return None  # unreadable, not UTF-8: the run reports it as it does today
    return _Compiled(path, text, search)


@dataclass(frozen=True)
class _Inputs:
    """What every render of the check shares: the guarded Templar, the names the run may
    set, the `-e` values, whether any variable holds a vault value."""

    templar: Templar
    later: _Settable
    extra_vars: Mapping[str, Any]
    vault: bool


def _render_for(
    inputs: _Inputs,
    task: Task,
    blocks: tuple[Block, ...],
    play: Play,
    host: Host,
    compiled: _Compiled,
    magic: Mapping[str, Any],
) -> TemplateError | None:
    """The undefined-variable error rendering the file would surely give on `host`, or None
    (it renders, or the verdict needs what only the run knows)."""
    templar, later, extra_vars, vault = (
        inputs.templar,
        inputs.later,
        inputs.extra_vars,
        inputs.vault,
    )
    if task.loop is not None or task.loop_with or task.delegate_to:
        return None
    magic = dict(magic)
    role = task.role
    if role is not None:
        magic["role_path"] = role.path
        magic["role_name"] = role.name
    magic[BASE_DIR_VAR] = role.path if role is not None else magic.get("playbook_dir")
    try:
        stack = build_var_stack(
            host, play=play, role=role, blocks=blocks, task=task, extra_vars=extra_vars, magic=magic
        )
        known = stack.resolve()
    except Exception:
        return None
    if task.location is not None:
        known[TASK_DIR_VAR] = str(Path(task.location.file).resolve().parent)
    # a vault value is decrypted by the run, as it is used: not here
    secret = frozenset(k for k, v in known.items() if vault and k not in magic and _holds_vault(v))
    variables = _KnownVars(known, later.names | secret, later.prefixes)
    where = Where(task.location)
    conditions = [*(c for b in blocks for c in b.when), *task.when]
    try:
        if not all(bool(templar.evaluate(c, variables, where)) for c in conditions):
            return None
    except (_Deferred, Exception):
        return None  # the run decides; a condition's own error is reported by it
    try:
        templar.render_file(
            compiled.text,
            template_variables(
                variables, str(task.args["src"]), compiled.path, _dest(task.args.get("dest"))
            ),
            where,
            path=str(compiled.path),
            search=compiled.search,
            trim_blocks=bool(task.args.get("trim_blocks", True)),
            lstrip_blocks=bool(task.args.get("lstrip_blocks", False)),
            **_delimiters(task),
        )
    except _Deferred:
        return None
    except TemplateError as error:
        # only an undefined name is sure: other failures may depend on what the run brings
        return error if error.variable and not error.via else None
    except Exception:
        return None
    return None


def _delimiters(task: Task) -> dict[str, str]:
    """The task's `variable_start_string`... arguments (the module checks their types)."""
    return {k: str(task.args[k]) for k in DELIMITERS if task.args.get(k) is not None}


def _dest(dest: Any) -> str | None:
    """`template_destpath` as the check can know it: `dest` unless it is itself a template
    (then a string all the same: the file's text may only print it)."""
    return None if dest is None else str(dest)


def _holds_vault(value: Any) -> bool:
    from machineroom.vault import contains_vault

    try:
        return bool(contains_vault(value))
    except Exception:
        return True
