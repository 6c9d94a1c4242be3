"""Jinja2 templating of playbook values, conditions and template files, per task per host.

One environment configuration for the whole engine: StrictUndefined (an undefined variable is
an error naming it, never an empty string), no autoescape, trim_blocks, trailing newlines and
string-literal backslashes as ansible-core gives them (`_restore_newlines`, `_EscapingLexer`),
the filters and tests of `machineroom.filters`, and the `lookup`/`query` functions.

Rules that matter to users:
- A value that is exactly one `{{ expr }}` keeps the expression's type (list, dict, int, bool),
  as Ansible does; anything else renders to a string.
- Variables may refer to variables: a variable whose value holds `{{ }}` is rendered when a
  template uses it (lazily, as Ansible does), with a loop (`a: "{{ a }}"`) reported as an error.
- Text that came back from a host (registered output, facts) is wrapped in `Unsafe` by
  `mark_unsafe` and is never rendered: not when passed to `render`, not when a template uses
  it, not when a variable holding it is expanded. A render whose output includes an Unsafe
  piece returns Unsafe too, so the result cannot be rendered a second time by accident.

Compiled templates are cached per `Templar` (this runs for every task on every host).
"""

from __future__ import annotations

import datetime
import os
import pwd
import re
import threading
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.lexer import TOKEN_STRING, TOKEN_VARIABLE_BEGIN, TOKEN_VARIABLE_END, Lexer, get_lexer
from jinja2.runtime import ChainableUndefined, Context, StrictUndefined, Undefined
from jinja2.utils import internal_code, missing, pass_context

from machineroom.errors import InputError, Location
from machineroom.lookups import LOOKUPS as WITH_LOOKUPS
from machineroom.lookups import find_in_search_path
from machineroom.unsafe import Unsafe as Unsafe  # YAML's `!unsafe` values are read as it

# The special variable that carries the folder `lookup('file', ...)` resolves relative paths in.
BASE_DIR_VAR = "__mr_base_dir__"
# `{{ x | default(omit) }}`: the executor drops a module argument whose value is this token.
OMIT = "__omit_place_holder__machineroom__"

_RESULT = "__mr_result__"
_DELIMITERS = ("{{", "{%", "{#")
_CACHE_SIZE = 4096
_FILE_CACHE_SIZE = 256  # template files' texts are kept as keys: fewer of them
_BUILTIN = ("ansible.builtin", "ansible.legacy")  # where ansible-core's filters are


class UnsafeDict(dict[str, Any]):
    """A mapping already passed through `mark_unsafe` (its strings are Unsafe)."""


class UnsafeList(list[Any]):
    """A list already passed through `mark_unsafe` (its strings are Unsafe)."""


def mark_unsafe(value: Any) -> Any:
    """The same data with every string wrapped in `Unsafe`, recursively over dicts and lists.

    Values already marked are returned as they are (O(1)), so the executor can mark a result
    once when it stores it and the variable stack can mark again cheaply.
    """
    if isinstance(value, Unsafe | UnsafeDict | UnsafeList):
        return value
    if isinstance(value, str):
        return Unsafe(value)
    if isinstance(value, Mapping):
        return UnsafeDict({str(k): mark_unsafe(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return UnsafeList(mark_unsafe(v) for v in value)
    return value


def is_unsafe(value: Any) -> bool:
    """True for values `mark_unsafe` produced."""
    return isinstance(value, Unsafe | UnsafeDict | UnsafeList)


def is_template(value: Any) -> bool:
    """A (safe) string holding `{{`, `{%` or `{#`; Unsafe strings are never templates."""
    if not isinstance(value, str) or isinstance(value, Unsafe):
        return False
    return "{" in value and any(d in value for d in _DELIMITERS)


@dataclass(frozen=True)
class Where:
    """What is being rendered, for messages: the task's file:line, the task, the host."""

    location: Location | None = None
    task: str | None = None
    host: str | None = None

    def prefix(self) -> str:
        """`task "Install docker" on web1: ` (or less, when not known)."""
        parts = []
        if self.task:
            parts.append(f'task "{self.task}"')
        if self.host:
            parts.append(f"on {self.host}")
        return " ".join(parts) + ": " if parts else ""


class TemplateError(InputError):
    """A template could not be rendered: an undefined variable, a syntax error, a bad filter.

    `variable` names the undefined variable (or attribute path, `docker.version`) when that is
    the cause; `template` is the text that failed; `via` the variables whose values held it
    (`greeting: "{{ name }}"`), outermost first.
    """

    def __init__(
        self,
        problem: str,
        where: Where,
        *,
        template: str | None = None,
        variable: str | None = None,
        via: tuple[str, ...] = (),
    ) -> None:
        self.where = where
        self.detail = problem  # the message without the task and host (where.prefix())
        self.template = template
        self.variable = variable
        self.via = via
        super().__init__(where.prefix() + problem, where.location)


# --- the environment -------------------------------------------------------------------------


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict (any use is an error) but chainable, so `x.y is defined` and
    `x.y | default(1)` work when x itself is undefined, as in Ansible."""

    __slots__ = ()


_resolving: ContextVar[tuple[str, ...]] = ContextVar("_resolving", default=())


class _VariableError(Exception):
    """A variable's own template failed while a template used it; carries the chain."""

    def __init__(
        self, names: tuple[str, ...], source: str, error: BaseException, loop: bool = False
    ) -> None:
        super().__init__(str(error))
        self.names = names
        self.source = source
        self.error = error
        self.loop = loop


class _Context(Context):
    """Looks variables up in the caller's mapping (no copy) and renders their templates."""

    unsafe_seen: bool = False
    _expanded: dict[str, Any] | None = None

    def resolve_or_missing(self, key: str) -> Any:
        if key in self.vars:
            return self.vars[key]
        try:
            value = self.parent[key]
        except KeyError:
            return self.environment.globals.get(key, missing)
        if not isinstance(value, str | dict | list) or is_unsafe(value):
            return value
        if isinstance(value, str) and not is_template(value):
            return value
        if self._expanded is None:
            self._expanded = {}
        elif key in self._expanded:
            return self._expanded[key]
        result = self._expand(key, value)
        self._expanded[key] = result
        return result

    def _expand(self, key: str, value: Any) -> Any:
        chain = _resolving.get()
        if key in chain:
            loop = " -> ".join((*chain[chain.index(key) :], key))
            raise _VariableError(
                (key,), str(value), jinja2.TemplateRuntimeError(f"variable loop: {loop}"), True
            )
        token = _resolving.set((*chain, key))
        try:
            templar: Templar = self.environment.templar  # type: ignore[attr-defined]
            return templar._render_value(value, self.parent)
        except _VariableError as exc:
            raise _VariableError((key, *exc.names), exc.source, exc.error, exc.loop) from None
        except Exception as exc:
            if isinstance(exc, TemplateError):
                raise
            raise _VariableError((key,), _text_of(value), exc) from None
        finally:
            _resolving.reset(token)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return next((s for s in _strings(value) if is_template(s)), repr(value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    # Runs on every `{{ }}` output of a string render: an Unsafe piece taints the result.
    if isinstance(value, Unsafe) and isinstance(context, _Context):
        context.unsafe_seen = True
    return value


class _EscapingLexer(Lexer):
    """Jinja's lexer, but string literals inside `{{ }}` keep their backslashes, as Ansible's.

    A playbook value has already been through YAML's escaping; Jinja unescaping its string
    literals a second time would turn `regex_replace('(a)', '\\1')` into the byte 0x01 instead
    of a group reference. ansible-core doubles the backslashes of every string token between
    `{{` and `}}` before Jinja unescapes it; `{% %}` statements and conditions are left alone.
    """

    def tokeniter(self, *args: Any, **kwargs: Any) -> Iterator[tuple[int, str, str]]:
        in_variable = False
        for lineno, kind, value in super().tokeniter(*args, **kwargs):
            if kind == TOKEN_VARIABLE_BEGIN:
                in_variable = True
            elif kind == TOKEN_VARIABLE_END:
                in_variable = False
            elif in_variable and kind == TOKEN_STRING:
                value = value.replace("\\", "\\\\")
            yield lineno, kind, value


class _Environment(jinja2.Environment):
    templar: Templar
    # playbook values: True; template files (as Ansible's template module): False
    escape_backslashes: bool = True
    _escaping_lexer: _EscapingLexer | None = None

    @property
    def lexer(self) -> Lexer:
        if not self.escape_backslashes:
            return get_lexer(self)
        if self._escaping_lexer is None:
            self._escaping_lexer = _EscapingLexer(self)
        return self._escaping_lexer


def _make_environment(templar: Templar) -> _Environment:
    from machineroom import filters

    env = _Environment(
        undefined=_Undefined,
        autoescape=False,
        # Ansible's: Jinja drops one final newline of the source, then as many newlines as the
        # source ended with are put back (`_restore_newlines`); trim_blocks everywhere
        keep_trailing_newline=False,
        trim_blocks=True,
        finalize=_finalize,
        auto_reload=False,
        cache_size=0,
    )
    env.context_class = _Context
    env.templar = templar
    env.filters.update(filters.FILTERS)
    env.tests.update(filters.TESTS)
    # ansible-core's own, by their full names too (`x | ansible.builtin.to_nice_yaml`)
    for table, own in ((env.filters, filters.FILTERS), (env.tests, filters.TESTS)):
        table.update({f"{prefix}.{name}": f for name, f in own.items() for prefix in _BUILTIN})
    env.globals["lookup"] = _lookup
    env.globals["query"] = _query
    env.globals["q"] = _query
    env.globals["omit"] = OMIT
    env.globals["now"] = _now
    env.globals["undef"] = _undef
    return env


def _now(utc: bool = False, fmt: str | None = None) -> datetime.datetime | str:
    """Ansible's `now()`: the controller's time, local or UTC, or it as `fmt` says."""
    moment = (
        datetime.datetime.now(datetime.UTC).replace(tzinfo=None) if utc else datetime.datetime.now()
    )
    return moment.strftime(fmt) if fmt else moment


@pass_context
def _undef(context: Context, hint: str | None = None) -> Undefined:
    """Ansible's `undef(hint)`: an undefined value, its hint the message when it is used."""
    return context.environment.undefined(hint=hint)


# --- template files --------------------------------------------------------------------------

# Where `{% include %}` / `{% import %}` look, for the template file being rendered now
_search_path: ContextVar[tuple[str, ...]] = ContextVar("_search_path", default=())


def find_included(name: str, search: Sequence[str]) -> Path | None:
    """The file `{% include name %}` means: `name` in the first folder of `search` that has
    it (an absolute name as it is), as Ansible's template module looks it up."""
    wanted = Path(os.path.expanduser(name))
    if wanted.is_absolute():
        return wanted if wanted.is_file() else None
    for folder in search:
        candidate = Path(folder) / wanted
        if candidate.is_file():
            return candidate
    return None


class _IncludeLoader(jinja2.BaseLoader):
    """Templates a template file includes or imports: found beside the file being rendered,
    then in the role's and the playbook's `templates/` (`render_file`'s search path)."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        search = _search_path.get()
        path = find_included(template, search)
        if path is None:
            raise jinja2.TemplateNotFound(
                template,
                f"template '{template}' not found (looked in "
                + (", ".join(shown_path(s) for s in search) or "no folder")
                + ")",
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise jinja2.TemplateNotFound(
                template, f"cannot read template {shown_path(str(path))}: {exc}"
            ) from None
        return text, str(path), lambda: True


def shown_path(path: str) -> str:
    """A file's path for a message: relative to the current folder when it is below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


# ansible-core's default for `ansible_managed` (its DEFAULT_MANAGED_STR setting)
ANSIBLE_MANAGED = "Ansible managed"


def template_variables(
    variables: Mapping[str, Any], src: str, path: Path, dest: str | None = None
) -> Mapping[str, Any]:
    """The host's variables plus those Ansible adds for a template file: `ansible_managed`
    ("Ansible managed" unless a variable sets it), `template_path` (`src` as written),
    `template_fullpath`, `template_host`, `template_uid`, `template_mtime`, `template_run_date`,
    `template_destpath` (the task's `dest`, None when not given).
    """
    info = path.stat()
    try:
        uid: str | int = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        uid = info.st_uid
    added: dict[str, Any] = {
        "template_host": os.uname().nodename,
        "template_path": src,
        "template_fullpath": str(path.resolve()),
        "template_uid": uid,
        "template_mtime": datetime.datetime.fromtimestamp(info.st_mtime),
        "template_run_date": datetime.datetime.now(),
        "template_destpath": dest,
    }
    if "ansible_managed" not in variables:
        added["ansible_managed"] = ANSIBLE_MANAGED
    # a view, not a copy: the host's mapping keeps answering its own lookups
    return ChainMap(added, variables)  # type: ignore[arg-type]


# --- lookups ---------------------------------------------------------------------------------


def _lookup_env(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    default = kwargs.get("default", "")
    return [os.environ.get(str(name), default) for name in terms]


def _lookup_file(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    base = context.get(BASE_DIR_VAR) or context.environment.templar.base_dir  # type: ignore[attr-defined]
    found = []
    for term in terms:
        path = Path(os.path.expanduser(str(term)))
        if not path.is_absolute() and base:
            path = Path(str(base)) / path
        # as Ansible: the role's then the playbook's files/ first, then beside them
        path = Path(find_in_search_path(context, "files", str(term)) or path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise jinja2.TemplateRuntimeError(
                f"lookup('file'): cannot read {path}: {exc.strerror or exc}"
            ) from None
        found.append(text.rstrip("\n") if kwargs.get("rstrip", True) else text)
    return found


def _lookup_vars(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    found = []
    for term in terms:
        value = context.resolve_or_missing(str(term))
        if value is missing:
            if "default" in kwargs:
                value = kwargs["default"]
            else:
                raise jinja2.UndefinedError(f"'{term}' is undefined")
        found.append(value)
    return found


def _lookup_template(context: Context, terms: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """`lookup('template', 'motd.j2')`: the file rendered as the template module renders it
    (Jinja's escapes, trim_blocks unless `trim_blocks=False`, `template_vars` added), as text.
    A relative name is looked up in `templates/` of the role or playbook, then beside it."""
    templar: Templar = context.environment.templar  # type: ignore[attr-defined]
    base = context.get(BASE_DIR_VAR) or templar.base_dir
    variables = context.get_all()
    found = []
    for term in terms:
        name = Path(os.path.expanduser(str(term)))
        candidates = [name] if name.is_absolute() or not base else []
        if base and not name.is_absolute():
            candidates = [Path(str(base)) / "templates" / name, Path(str(base)) / name]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise jinja2.TemplateRuntimeError(
                f"lookup('template'): {term} not found (looked in "
                + ", ".join(str(c) for c in candidates)
                + ")"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise jinja2.TemplateRuntimeError(
                f"lookup('template'): cannot read {path}: {exc}"
            ) from None
        mine = {**template_variables(variables, str(term), path), **kwargs.get("template_vars", {})}
        trim = bool(kwargs.get("trim_blocks", True))
        found.append(templar.render_file(text, mine, Where(), path=str(path), trim_blocks=trim))
    return found


LOOKUPS: dict[str, Callable[[Context, tuple[Any, ...], dict[str, Any]], list[Any]]] = {
    "env": _lookup_env,
    "file": _lookup_file,
    "template": _lookup_template,
    "vars": _lookup_vars,
    **WITH_LOOKUPS,  # the lookups behind the with_* loops
}


def _run_lookup(
    context: Context, name: str, terms: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    plugin = LOOKUPS.get(str(name))
    if plugin is None:
        from machineroom.errors import did_you_mean

        raise jinja2.TemplateRuntimeError(
            f"unknown lookup '{name}'{did_you_mean(str(name), LOOKUPS)}; "
            f"machineroom has: {', '.join(LOOKUPS)}"
        )
    kwargs.pop("wantlist", None)
    return plugin(context, terms, kwargs)


@pass_context
def _lookup(context: Context, name: str, *terms: Any, **kwargs: Any) -> Any:
    """`lookup('env', 'HOME')`: one value, or several joined with commas (as Ansible)."""
    wantlist = bool(kwargs.get("wantlist"))
    found = _run_lookup(context, name, terms, kwargs)
    if wantlist:
        return found
    if len(found) == 1:
        return found[0]
    if not found:
        return found
    if all(isinstance(v, str) for v in found):
        return ",".join(found)
    return found  # not all text (lookup('dict', ...)): the list as it is, as ansible-core 2.19


@pass_context
def _query(context: Context, name: str, *terms: Any, **kwargs: Any) -> list[Any]:
    """`query('env', 'A', 'B')`: always a list."""
    return _run_lookup(context, name, terms, kwargs)


# --- the Templar -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    template: jinja2.Template
    native: bool  # one `{{ expr }}`: the value is returned as it is, not as text
    source: str


class Templar:
    """Renders values, conditions and files with the variables of one task on one host.

    `base_dir` is where `lookup('file', ...)` looks for relative paths when the variables do
    not carry `__mr_base_dir__`. One Templar can be shared by every host's worker thread.
    """

    def __init__(self, *, base_dir: str | os.PathLike[str] | None = None) -> None:
        self.base_dir = str(base_dir) if base_dir is not None else None
        self._env = _make_environment(self)
        # Ansible's template module renders files with trim_blocks on and Jinja's own escapes
        # in string literals; so do we, so that the same .j2 file gives the same bytes.
        self._file_env = self._env.overlay(trim_blocks=True)
        assert isinstance(self._file_env, _Environment)
        self._file_env.escape_backslashes = False
        self._file_env._escaping_lexer = None
        self._file_env.loader = _IncludeLoader()  # `{% include %}`, `{% import %}`
        self._file_envs: dict[tuple[tuple[str, Any], ...], jinja2.Environment] = {}
        self._cache: dict[str, _Compiled] = {}
        self._files: dict[tuple[str, str, _FileOptions], jinja2.Template] = {}
        self._expressions: dict[str, jinja2.Template] = {}
        self._lock = threading.Lock()

    # public API

    def render(self, value: Any, variables: Mapping[str, Any], where: Where) -> Any:
        """Render every template string in `value` (recursively over dicts, lists, tuples).

        Strings without delimiters, Unsafe strings and non-strings come back as they are.
        A string that is exactly one `{{ expr }}` gives the expression's value with its type.
        """
        try:
            return self._render_value(value, variables)
        except Exception as exc:
            raise self._translate(exc, value, where) from None

    def evaluate(self, expression: str | bool, variables: Mapping[str, Any], where: Where) -> Any:
        """The value of a bare expression, as in `when:`, `until:`, `changed_when:`.

        Booleans and other non-strings pass through. `"{{ expr }}"` (a condition written with
        delimiters) is accepted and means `expr`; delimiters mixed with other text are an error,
        because Ansible's double evaluation of such conditions is a template-injection hole.
        """
        if not isinstance(expression, str) or isinstance(expression, Unsafe):
            return expression
        text = expression.strip()
        if is_template(text):
            inner = self._single_expression_source(text)
            if inner is None:
                raise TemplateError(
                    "a condition is a bare expression: write `x == 'a'`, not `{{ x }} == 'a'`",
                    where,
                    template=expression,
                )
            text = inner
        if not text:
            raise TemplateError("empty condition", where, template=expression)
        try:
            template = self._expression(text)
            context = self._new_context(template, variables)
            for _ in template.root_render_func(context):
                pass
            result = context.vars[_RESULT]
            _check_defined(result)
            return result
        except Exception as exc:
            raise self._translate(exc, expression, where) from None

    def render_file(
        self,
        text: str,
        variables: Mapping[str, Any],
        where: Where,
        *,
        path: str | None = None,
        search: Sequence[str] = (),
        trim_blocks: bool = True,
        lstrip_blocks: bool = False,
        newline_sequence: str = "\n",
        **delimiters: str,
    ) -> str:
        """A template file's whole text, rendered to text (trim_blocks on, as Ansible).

        `path` names the file in errors, with the line inside it (of the included file, when
        the error is in one). `search`: the folders `{% include %}` and `{% import %}` look
        in after the file's own. The keyword options are the template module's arguments of
        the same names.
        """
        header = _jinja2_header(text, path, where)
        if header is None and not is_template(text):
            return str(text)
        name = path or "<template>"
        folders = (str(Path(path).parent), *search) if path else tuple(search)
        token = _search_path.set(folders)
        options = _FileOptions(
            trim_blocks, lstrip_blocks, newline_sequence, header, _delimiters(delimiters)
        )
        body = text if header is None else text.partition("\n")[2]
        try:
            template = self._file_template(text, name, options)
            context = self._new_context(template, variables)
            rendered = "".join(template.root_render_func(context))
            result = _restore_newlines(body, rendered, options.newline)
            return Unsafe(result) if context.unsafe_seen else result
        except Exception as exc:
            raise self._translate(exc, text, where, path=path) from None
        finally:
            _search_path.reset(token)

    def compile_file(
        self,
        text: str,
        path: str,
        where: Where,
        *,
        search: Sequence[str] = (),
        trim_blocks: bool = True,
        lstrip_blocks: bool = False,
        **delimiters: str,
    ) -> list[str]:
        """Compile a template file and the templates it includes or imports by a constant
        name (recursively), rendering nothing: a TemplateError naming the file:line of the
        first syntax error, unknown filter or test, or included template not found.
        Returns the paths of the files compiled, the top one first."""
        folders = (str(Path(path).parent), *search)
        header = _jinja2_header(text, path, where)
        options = _FileOptions(trim_blocks, lstrip_blocks, "\n", header, _delimiters(delimiters))
        env = self._file_environment(options)  # included files are read with it too, as Ansible
        done: list[str] = []
        pending: list[tuple[str, str]] = [(_file_source(text, options, env), path)]
        while pending:
            source, name = pending.pop(0)
            done.append(name)
            try:
                env.compile(source, name=name, filename=name)
                tree = env.parse(source, name=name, filename=name)
            except Exception as exc:
                raise self._translate(exc, source, where, path=name) from None
            unknown = _unknown_filter_or_test(tree, env)
            if unknown is not None:
                kind, wanted, line = unknown
                raise self._translate(
                    jinja2.TemplateSyntaxError(f"No {kind} named '{wanted}'.", line, name, name),
                    source,
                    where,
                    path=name,
                )
            kinds = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
            reached = {id(n) for n in _always_run(tree, tree.find(nodes.Extends) is not None)}
            for node in tree.find_all(kinds):
                target = getattr(node, "template", None)
                if not isinstance(target, nodes.Const):
                    continue  # a name computed at run time
                wanted = str(target.value)
                found = find_included(wanted, folders)
                if found is None:
                    if isinstance(node, nodes.Include) and node.ignore_missing:
                        continue
                    if id(node) not in reached:
                        continue  # in a branch, loop or macro: Jinja looks only if it runs
                    raise TemplateError(
                        f"{shown_path(name)}:{node.lineno}: template '{wanted}' not found "
                        f"(looked in {', '.join(shown_path(f) for f in folders)})",
                        where,
                        template=source,
                    )
                if str(found) in done or any(str(found) == p for _, p in pending):
                    continue
                try:
                    pending.append((found.read_text(encoding="utf-8"), str(found)))
                except (OSError, UnicodeDecodeError) as exc:
                    raise TemplateError(
                        f"{shown_path(name)}:{node.lineno}: cannot read template "
                        f"{shown_path(str(found))}: {exc}",
                        where,
                        template=source,
                    ) from None
        return done

    def guard_calls(
        self,
        guard: Callable[[Callable[..., Any]], Callable[..., Any]],
        lookup: Callable[..., Any],
    ) -> None:
        """Every filter and test of this Templar called through `guard(function)`, and
        `lookup`/`query` replaced by `lookup`: how the pre-flight check renders templates
        without running what only the run should run (executor/template_check.py)."""
        for table in (self._env.filters, self._env.tests):
            for name, function in list(table.items()):
                table[name] = guard(function)
        for name in ("lookup", "query", "q"):
            self._env.globals[name] = lookup

    # internals

    def _file_template(self, text: str, name: str, options: _FileOptions) -> jinja2.Template:
        """The compiled template file, compiled once per run, not once per host."""
        key = (name, text, options)
        template = self._files.get(key)
        if template is not None:
            return template
        env = self._file_environment(options)
        code = env.compile(_file_source(text, options, env), name=name, filename=name)
        template = env.template_class.from_code(env, code, env.make_globals(None))
        with self._lock:
            if len(self._files) >= _FILE_CACHE_SIZE:
                self._files.clear()
            self._files[key] = template
        return template

    def _file_environment(self, options: _FileOptions) -> jinja2.Environment:
        settings = options.settings()
        key = tuple(sorted(settings.items()))
        if (
            not options.header
            and not options.delimiters
            and key
            == (
                ("lstrip_blocks", False),
                ("newline_sequence", "\n"),
                ("trim_blocks", True),
            )
        ):
            return self._file_env
        with self._lock:
            env = self._file_envs.get(key)
            if env is None:
                env = self._file_env.overlay(**settings)
                self._file_envs[key] = env
        return env

    def _render_value(self, value: Any, variables: Mapping[str, Any]) -> Any:
        if isinstance(value, str):
            if not is_template(value):
                return value
            return self._render_string(value, variables)
        if isinstance(value, UnsafeDict | UnsafeList):
            return value
        if isinstance(value, dict):
            # keys too, as Ansible's templar does (`set_fact: "{{ item }}=moo"`)
            return {
                self._render_value(k, variables): self._render_value(v, variables)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._render_value(v, variables) for v in value]
        if isinstance(value, tuple):
            return tuple(self._render_value(v, variables) for v in value)
        return value

    def _render_string(self, source: str, variables: Mapping[str, Any]) -> Any:
        compiled = self._compile(source)
        context = self._new_context(compiled.template, variables)
        if compiled.native:
            for _ in compiled.template.root_render_func(context):
                pass
            result = context.vars[_RESULT]
            _check_defined(result)
            if isinstance(result, str) and source.endswith("\n"):
                restored = _restore_newlines(source, result)
                return Unsafe(restored) if isinstance(result, Unsafe) else restored
            return result
        text = _restore_newlines(source, "".join(compiled.template.root_render_func(context)))
        return Unsafe(text) if context.unsafe_seen else text

    def _new_context(self, template: jinja2.Template, variables: Mapping[str, Any]) -> _Context:
        # shared=True hands our mapping (a ChainMap view, typically) to the context without
        # copying it; globals are looked up by _Context.resolve_or_missing instead.
        context = template.new_context(variables, shared=True)  # type: ignore[arg-type]
        assert isinstance(context, _Context)
        return context

    def _compile(self, source: str) -> _Compiled:
        compiled = self._cache.get(source)
        if compiled is not None:
            return compiled
        tree = self._env.parse(source)
        body = tree.body
        native = (
            len(body) == 1
            and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData)
        )
        if native:
            output = body[0]
            assert isinstance(output, nodes.Output)
            tree = _assign_template(output.nodes[0])
        compiled = _Compiled(self._env.from_string(tree), native, source)
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()  # crude, but a playbook rarely has this many strings
            self._cache[source] = compiled
        return compiled

    def _expression(self, source: str) -> jinja2.Template:
        template = self._expressions.get(source)
        if template is not None:
            return template
        from jinja2.parser import Parser

        parser = Parser(self._env, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise jinja2.TemplateSyntaxError(
                f"unexpected '{parser.stream.current.value}' after the expression",
                parser.stream.current.lineno,
            )
        template = self._env.from_string(_assign_template(expr))
        with self._lock:
            if len(self._expressions) >= _CACHE_SIZE:
                self._expressions.clear()
            self._expressions[source] = template
        return template

    def _single_expression_source(self, text: str) -> str | None:
        match = re.fullmatch(r"\{\{-?(.*?)-?\}\}", text, flags=re.DOTALL)
        if match is None or "{{" in match.group(1) or "}}" in match.group(1):
            return None
        return match.group(1).strip()

    def _translate(
        self,
        exc: BaseException,
        value: Any,
        where: Where,
        path: str | None = None,
    ) -> BaseException:
        """Any failure inside Jinja2 as a TemplateError that says what and where."""
        if isinstance(exc, TemplateError):
            return exc
        names: tuple[str, ...] = ()
        source = _text_of(value)
        if isinstance(exc, _VariableError):
            names = () if exc.loop else exc.names
            source, exc = exc.source, exc.error
        via = ""
        if names:
            via = " (in the value of " + " -> ".join(f"'{n}'" for n in names) + ")"
        file, line = _template_place(exc, path)
        shown_file = shown_path(file) if file else None
        place = f"{shown_file}:{line}: " if file and line else (f"{shown_file}: " if file else "")
        # a whole file is too long to quote: its path and line say where
        shown = "" if path and not names else f" in {_quote(source)}"
        if isinstance(exc, jinja2.UndefinedError):
            variable = _undefined_name(str(exc.message or exc), source)
            problem = (
                f"undefined variable '{variable}'"
                if variable
                else f"undefined value: {exc.message}"
            )
            detail = _attribute_detail(str(exc.message or ""), variable)
            return TemplateError(
                f"{place}{problem}{detail}{via}{shown}",
                where,
                template=source,
                variable=variable,
                via=names,
            )
        if isinstance(exc, jinja2.TemplateSyntaxError):
            text = exc.source if exc.source is not None else source
            at = f" at line {exc.lineno}" if "\n" in (text or "") else ""
            message, opened = self._syntax_message(exc, text or source)
            if path:
                at = ""
                place = f"{shown_file}:{opened or exc.lineno}: "
            return TemplateError(
                f"{place}template syntax error{at}: {message}{via}"
                + ("" if path and not names else f" in {_quote(text or source)}"),
                where,
                template=text,
                via=names,
            )
        if isinstance(exc, jinja2.TemplateNotFound):
            message = exc.message or f"template '{exc.name}' not found"
        elif isinstance(exc, jinja2.TemplateRuntimeError) and (exc.message or "").startswith(
            "No "
        ):  # an unknown filter or test inside an `{% if %}`, found as the line ran
            message = self._syntax_message(jinja2.TemplateSyntaxError(str(exc.message), 1), "")[0]
        elif isinstance(exc, jinja2.TemplateError):
            message = exc.message or str(exc)
        elif isinstance(exc, RecursionError):
            message = "templates refer to each other too deeply"
        else:
            message = f"{type(exc).__name__}: {exc}"
        return TemplateError(f"{place}{message}{via}{shown}", where, template=source, via=names)

    def _syntax_message(
        self, exc: jinja2.TemplateSyntaxError, source: str
    ) -> tuple[str, int | None]:
        """Jinja's message, said for a user: an unknown filter or test with the closest
        known name, a block left open with the line that opened it (then returned too)."""
        message = exc.message or str(exc)
        unknown = re.match(r"No (filter|test) named '([^']+)'", message)
        if unknown:
            kind, name = unknown.groups()
            from machineroom.errors import did_you_mean

            known = self._env.filters if kind == "filter" else self._env.tests
            return f"unknown {kind} '{name}'{did_you_mean(name, known)}", None
        if message.startswith("Unexpected end of template"):
            opened = _open_block(self._file_env, source)
            if opened is not None:
                keyword, line = opened
                return (
                    f"the '{keyword}' block opened here is not closed "
                    f"(no '{{% end{keyword} %}}' before the end of the file)",
                    line,
                )
        return message, None


def _unknown_filter_or_test(
    tree: nodes.Template, env: jinja2.Environment
) -> tuple[str, str, int] | None:
    """A filter or test the template surely uses that does not exist: ("filter", name, line).

    Jinja reports those only when the line runs if they sit inside an `{% if %}` or an
    inline `x if c else y` (as Ansible, whose collection filters a branch never taken need
    not be installed): only the ones every render meets are said here, those of an `{% if %}`
    condition itself included (not after an `and`/`or`, which may stop before them). A
    template that tests `'x' is filter` is left alone."""
    guarded = any(
        isinstance(node, nodes.Test) and node.name in ("filter", "test")
        for node in tree.find_all(nodes.Test)
    )
    if guarded:
        return None
    for node in _surely_run(tree):
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            return "filter", node.name, node.lineno
        if isinstance(node, nodes.Test) and node.name not in env.tests:
            return "test", node.name, node.lineno
    return None


def _always_run(node: nodes.Node, extends: bool) -> Iterator[nodes.Node]:
    """The statements under `node` every render of the file runs: not those in an `{% if %}`
    branch, a loop's body, a macro or call block, nor (when the file extends another) a
    `{% block %}`, which the parent may not have."""
    yield node
    if isinstance(node, nodes.If | nodes.For | nodes.Macro | nodes.CallBlock):
        return
    if isinstance(node, nodes.Block) and extends:
        return
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Stmt | nodes.Template):
            yield from _always_run(child, extends)


def _surely_run(node: nodes.Node) -> Iterator[nodes.Filter | nodes.Test]:
    """The filters and tests under `node` that run whenever it does: not those inside a
    branch of an `{% if %}` or inline if, nor right of an `and`/`or`."""
    if isinstance(node, nodes.Filter | nodes.Test):
        yield node
    if isinstance(node, nodes.If | nodes.CondExpr):
        yield from _surely_run(node.test)
    elif isinstance(node, nodes.And | nodes.Or):
        yield from _surely_run(node.left)
    else:
        for child in node.iter_child_nodes():
            yield from _surely_run(child)


def _open_block(env: jinja2.Environment, source: str) -> tuple[str, int] | None:
    """The innermost `{% for %}`, `{% if %}`, ... that has no end tag: its keyword, line."""
    openers = {"for", "if", "macro", "call", "filter", "block", "with", "autoescape", "set"}
    stack: list[tuple[str, int]] = []
    statement: list[tuple[int, str, str]] = []
    inside = False
    try:
        for lineno, kind, value in env.lexer.tokeniter(source, None):
            if kind == "block_begin":
                inside, statement = True, []
            elif kind == "block_end" and inside:
                inside = False
                if not statement or statement[0][1] != "name":
                    continue
                line, _, keyword = statement[0]
                assigns = any(k == "operator" and v == "=" for _, k, v in statement)
                if keyword in openers and not (keyword == "set" and assigns):
                    stack.append((keyword, line))
                elif keyword.startswith("end") and stack and stack[-1][0] == keyword[3:]:
                    stack.pop()
            elif inside and kind != "whitespace":
                statement.append((lineno, kind, value))
    except jinja2.TemplateSyntaxError:
        return None
    return stack[-1] if stack else None


# `#jinja2: trim_blocks: False, variable_start_string: '[['` on a template file's first line:
# the settings Ansible's template module lets the file change for itself (the line is dropped)
JINJA2_HEADER = "#jinja2:"
_HEADER_SETTINGS = frozenset(
    {
        "block_start_string",
        "block_end_string",
        "variable_start_string",
        "variable_end_string",
        "comment_start_string",
        "comment_end_string",
        "line_statement_prefix",
        "line_comment_prefix",
        "trim_blocks",
        "lstrip_blocks",
        "newline_sequence",
        "keep_trailing_newline",
    }
)


def _jinja2_header(text: str, path: str | None, where: Where) -> tuple[tuple[str, Any], ...] | None:
    """The settings of a template file's `#jinja2:` first line, None when it has none. As
    Ansible: `key: python-literal` pairs split on commas; a setting Jinja has no use for here
    is ignored (Ansible warns), a pair without a colon or with a bad value is an error."""
    if not text.startswith(JINJA2_HEADER):
        return None
    import ast

    line = text[len(JINJA2_HEADER) :].partition("\n")[0]
    settings: dict[str, Any] = {}
    for pair in line.split(","):
        key, colon, value = pair.partition(":")
        try:
            if not colon:
                raise ValueError("expected key: value")
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError) as exc:
            place = f"{shown_path(path)}:1: " if path else ""
            raise TemplateError(
                f"{place}cannot read the '#jinja2:' setting {pair.strip()!r} ({exc})",
                where,
                template=text,
            ) from None
        if key.strip() in _HEADER_SETTINGS:
            settings[key.strip()] = parsed
    return tuple(settings.items())


def _delimiters(given: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The template module's delimiter arguments (modules/template.py DELIMITERS: Jinja's
    own names, `variable_start_string`...), in a stable order for the caches."""
    for name in given:
        kind, _, edge = name.partition("_")
        if kind not in ("variable", "block", "comment") or edge not in (
            "start_string",
            "end_string",
        ):
            raise TypeError(f"unknown template option {name!r}")
    return tuple(sorted((k, str(v)) for k, v in given.items() if v is not None))


@dataclass(frozen=True)
class _FileOptions:
    """How a template file is read: the template module's options, then its `#jinja2:`."""

    trim_blocks: bool
    lstrip_blocks: bool
    newline_sequence: str
    header: tuple[tuple[str, Any], ...] | None = None
    delimiters: tuple[tuple[str, str], ...] = ()  # the module's variable_start_string...

    def settings(self) -> dict[str, Any]:
        return {
            "trim_blocks": self.trim_blocks,
            "lstrip_blocks": self.lstrip_blocks,
            "newline_sequence": self.newline_sequence,
            **dict(self.delimiters),
            **dict(self.header or ()),
        }

    @property
    def newline(self) -> str:
        return str(self.settings()["newline_sequence"])


def _file_source(text: str, options: _FileOptions, env: jinja2.Environment) -> str:
    """The text Jinja compiles: a `#jinja2:` line becomes an empty comment that keeps the
    file's line numbers and renders nothing (the line and its newline are gone, as Ansible
    drops them)."""
    if options.header is None:
        return text
    rest = text.partition("\n")[2]
    empty = env.comment_start_string + env.comment_end_string
    if env.trim_blocks:  # the newline after the comment is dropped
        return empty + "\n" + rest
    return env.comment_start_string + "\n" + env.comment_end_string + rest


def _restore_newlines(source: str, result: str, newline: str = "\n") -> str:
    """`result` ending in as many newlines as `source` does, when it ends in fewer (Ansible's
    rule: a last line that renders empty adds no newline of its own)."""
    wanted = len(source) - len(source.rstrip("\n"))
    if wanted == 0:
        return result
    have = len(result) - len(result.rstrip("\n"))
    return result + newline * (wanted - have) if wanted > have else result


def _assign_template(expr: nodes.Expr) -> nodes.Template:
    """A template whose only statement stores `expr`'s value, as `compile_expression` does."""
    body: list[nodes.Node] = [nodes.Assign(nodes.Name(_RESULT, "store"), expr, lineno=1)]
    return nodes.Template(body, lineno=1)


def _check_defined(value: Any) -> None:
    """A native result must not be (or hold) an Undefined: `{{ [x] }}` with x undefined."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, list | tuple):
        for item in value:
            _check_defined(item)
    elif isinstance(value, dict) and not isinstance(value, UnsafeDict):
        for item in value.values():
            _check_defined(item)


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined")
_NO_ATTRIBUTE = re.compile(r"^'[^']+' (?:object )?has no (?:attribute|element) '?([^']+?)'?$")


def _undefined_name(message: str, source: str) -> str | None:
    """The variable (or dotted path) jinja's message is about."""
    match = _UNDEFINED_NAME.match(message)
    if match:
        return match.group(1)
    match = _NO_ATTRIBUTE.match(message)
    if match:
        return _attribute_path(match.group(1), source) or match.group(1)
    match = re.match(r"^mandatory variable '([^']+)'", message)
    return match.group(1) if match else None


def _attribute_detail(message: str, variable: str | None) -> str:
    """` ('docker' has no key 'version')` when an attribute or item was missing."""
    match = _NO_ATTRIBUTE.match(message)
    if not match:
        return ""
    if variable and "." in variable:
        parent, _, key = variable.rpartition(".")
        return f" ('{parent}' has no key '{key}')"
    kind = "element" if "has no element" in message else "attribute"
    return f" (no {kind} '{match.group(1)}')"


def _attribute_path(attribute: str, source: str) -> str | None:
    """`a.b.x` for attribute `x`, found in the template's syntax tree (jinja does not say)."""
    try:
        tree = jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError:
        return None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        key: Any
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
        else:
            continue
        if str(key) == attribute:
            path = _dotted(node)
            if path:
                return path
    return None


def _dotted(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _dotted(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _dotted(node.node)
        key = node.arg.value
        if base is None:
            return None
        return f"{base}[{key!r}]" if not isinstance(key, str) else f"{base}.{key}"
    return None


def _template_place(exc: BaseException, path: str | None) -> tuple[str | None, int | None]:
    """The template file and the line inside it where an error happened: the innermost
    template on the traceback (an included one, a macro's file), else `path`.

    We call the compiled render function directly (no copy of the variables), so jinja does
    not rewrite the traceback for us; map the generated code's line back as jinja would.
    """
    if path is None:
        return None, None
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename or path, exc.lineno
    file, line = path, None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        # jinja's @internalcode helpers (an unknown test's stub) say nothing about the line
        internal = tb.tb_frame.f_code in internal_code
        if isinstance(template, jinja2.Template) and template.filename and not internal:
            file = template.filename
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return file, line


def _quote(text: str, limit: int = 200) -> str:
    """A template's text for a message: quoted, one line, cut when long."""
    one_line = text.replace("\n", "\\n")
    if len(one_line) > limit:
        one_line = one_line[: limit - 3] + "..."
    return f'"{one_line}"'
