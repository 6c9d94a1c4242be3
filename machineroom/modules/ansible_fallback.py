"""Every other module, run as Ansible runs it: ansible-core's own module code on the host.

A task whose module machineroom does not implement natively (a collection's module, an
ansible.builtin one we lack, a module in the playbook's or a role's `library/`) is resolved
with ansible-core's plugin loader when ansible-core is installed beside machineroom (`pip
install 'machineroom[ansible]'`). It then runs as a "fallback" task: the AnsiballZ payload is
built by ansible-core's `modify_module` with the task's arguments (and `_ansible_check_mode`,
`_ansible_diff`, `_ansible_no_log`, ...), sent on stdin to ONE remote command that starts the
host's Python (`ansible_python_interpreter`, else /usr/bin/python3 or python3) reading its
program from stdin, as Ansible's pipelining does; nothing is copied to the host first. The
module's JSON answer becomes the Outcome: changed, failed, msg, diff (as unified text), its
result keys, `ansible_facts` as facts. Results carry `engine: ansible-core`.

Modules whose action plugin is not Ansible's `normal` one need code on the controller
(`assemble`, `dnf`, ...): they are refused with a message saying so. ansible-core is imported
only when a playbook names a module machineroom lacks, never for native ones.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from machineroom.errors import did_you_mean
from machineroom.modules.base import (
    NO_LOG_VAR,
    VERBOSITY_VAR,
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

ENGINE = "ansible-core"
EXTRA = "pip install 'machineroom[ansible]'"
# Where the host's Python is looked for when the inventory names none (Ansible's discovery
# tries these among others; a host with none of them cannot run Ansible's modules).
PYTHONS = ("/usr/bin/python3", "python3", "/usr/libexec/platform-python")
NO_PYTHON = "machineroom-no-python:"

_lock = threading.Lock()  # ansible's loaders keep process-wide state
_ready = False
_added: set[str] = set()
_playbook_dirs: list[str] = []
_resolved: dict[str, type[FallbackModule]] = {}


@dataclass(frozen=True)
class Resolution:
    """What a module name means to ansible-core: a module to run, or why there is none.

    `problem` is a sentence for the load error; `found` says ansible-core has the module
    (but it cannot run here, e.g. it needs its action plugin) rather than not knowing it.
    """

    module: FallbackModule | None = None
    problem: str = ""
    found: bool = False


def ansible_installed() -> bool:
    """Whether ansible-core is importable in machineroom's own Python."""
    try:
        return importlib.util.find_spec("ansible.executor.module_common") is not None
    except (ImportError, ValueError):
        return False


def missing_extra(name: str) -> str:
    """The load error for a module machineroom lacks when ansible-core is not installed."""
    return (
        f"module '{name}' is not built into machineroom, and running Ansible's own code for it "
        f"needs ansible-core, which is not installed: {EXTRA}"
    )


def search_dirs(playbook_dir: Path | None, role_paths: Iterable[str] = ()) -> list[Path]:
    """The folders Ansible adds for a playbook: `library/` and `module_utils/` beside it and
    in each role (their `collections/` are added separately)."""
    bases = ([playbook_dir] if playbook_dir is not None else []) + [Path(p) for p in role_paths]
    return [base / sub for base in bases for sub in ("library", "module_utils")]


def resolve(
    name: str, playbook_dir: Path | None = None, role_paths: Sequence[str] = ()
) -> Resolution:
    """Resolve `name` with ansible-core's loader, searching the playbook's `collections/`,
    `library/` and `module_utils/`, those of `role_paths`, ANSIBLE_COLLECTIONS_PATH (or
    ~/.ansible/collections) and ansible-core's own modules."""
    if not ansible_installed():
        return Resolution(problem=missing_extra(name))
    if playbook_dir is not None:
        playbook_dir = playbook_dir.resolve()  # `site.yml` run from its own folder: ""
    with _lock:
        _configure(playbook_dir, search_dirs(playbook_dir, role_paths))
        return _resolve_locked(name)


def fallback_module(name: str) -> FallbackModule | None:
    """The fallback module for `name` (as resolved at load time, or now with the paths known
    so far), or None when ansible-core is missing or cannot run it."""
    cls = _resolved.get(name)
    if cls is not None:
        return cls()
    if not ansible_installed():
        return None
    return resolve(name).module


def is_fallback(name: str) -> bool:
    """Whether tasks named `name` run through ansible-core (for `plan`); never imports it."""
    return name in _resolved


def _ansible(module: str) -> Any:
    # imported by name: ansible-core is an optional extra, and untyped for mypy
    return importlib.import_module(module)


def _configure(playbook_dir: Path | None, dirs: Sequence[Path]) -> None:
    global _ready
    loader = _ansible("ansible.plugins.loader")
    if not _ready:
        finder = _ansible("ansible.utils.collection_loader").AnsibleCollectionConfig
        if finder.collection_finder is None:
            loader.init_plugin_loader()
        _ready = True
    if playbook_dir is not None and str(playbook_dir) not in _playbook_dirs:
        # `collections/` beside the playbook, searched first, as ansible-playbook does
        _playbook_dirs.insert(0, str(playbook_dir))
        config = _ansible("ansible.utils.collection_loader").AnsibleCollectionConfig
        config.playbook_paths = list(_playbook_dirs)
    for folder in dirs:
        key = str(folder)
        if key in _added or not folder.is_dir():
            continue
        _added.add(key)
        if folder.name == "module_utils":
            loader.module_utils_loader.add_directory(key)
        else:
            loader.module_loader.add_directory(key)


def _collection_present(name: str) -> bool:
    parts = name.split(".")
    if len(parts) < 3 or (parts[0] == "ansible" and parts[1] in ("builtin", "legacy")):
        return True
    try:
        return importlib.util.find_spec(f"ansible_collections.{parts[0]}.{parts[1]}") is not None
    except (ImportError, ValueError):
        return False


def _resolve_locked(name: str) -> Resolution:
    loader = _ansible("ansible.plugins.loader")
    # a collection that is not installed: say so without ansible's own warning on stderr
    if not _collection_present(name):
        collection = ".".join(name.split(".")[:2])
        return Resolution(
            problem=f"unknown module '{name}': collection {collection} is not installed "
            "(searched: the playbook's collections/, ANSIBLE_COLLECTIONS_PATH, "
            "~/.ansible/collections)"
        )
    found = loader.module_loader.find_plugin_with_context(name, mod_type=".py")
    if not found.resolved or not found.plugin_resolved_path:
        return Resolution()
    path = str(found.plugin_resolved_path)
    action = found.action_plugin or (name if loader.action_loader.has_plugin(name) else None)
    if action and action.rsplit(".", 1)[-1] != "normal":
        return Resolution(
            problem=f"module '{name}' runs through ansible-core's action plugin '{action}' "
            "on the controller, which machineroom does not run",
            found=True,
        )
    if not path.endswith(".py"):
        return Resolution(
            problem=f"module '{name}' ({path}) is not a Python module; machineroom runs "
            "ansible-core modules written in Python only",
            found=True,
        )
    cls = type(
        f"Fallback_{name.replace('.', '_')}", (FallbackModule,), {"name": name, "module_path": path}
    )
    _resolved[name] = cls
    return Resolution(module=cls(), found=True)


class FallbackModule(Module):
    """A module run by ansible-core's own code on the host; one class per module name."""

    engine: ClassVar[str] = ENGINE
    module_path: ClassVar[str] = ""
    # ansible-core checks its own arguments on the host: any mapping is passed on
    schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def typos(self, args: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(argument, problem) for each argument that is not one the module documents but
        is close to one: certainly a typo, worth saying before anything runs. Arguments
        close to none are left to the module (documentation may not list every one)."""
        names = documented_arguments(self.module_path)
        if not names:
            return []
        found = []
        for key in args:
            if key in names or str(key).startswith("_"):
                continue
            hint = did_you_mean(str(key), names)
            if hint:
                found.append((str(key), f"unknown argument '{key}'{hint}"))
        return found

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Start the host's Python with the module's AnsiballZ payload on stdin."""
        payload = build_payload(self.name, self.module_path, args, ctx)
        interpreter = ctx.vars.get("ansible_python_interpreter")
        return RemoteStep(script=launcher(interpreter), stdin=payload)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """The module's JSON answer as an Outcome."""
        return parse_result(self.name, output, ctx)


@functools.cache
def documented_arguments(path: str) -> frozenset[str]:
    """The arguments and aliases a module's DOCUMENTATION lists (with its doc fragments),
    read by ansible-core; empty when it has none (a library module may not)."""
    try:
        with _lock:
            docs = _ansible("ansible.utils.plugin_docs")
            fragments = _ansible("ansible.plugins.loader").fragment_loader
            doc = docs.get_docstring(path, fragments, is_module=True)[0]
    except Exception:  # documentation that does not parse: the module still runs
        return frozenset()
    options = doc.get("options") if isinstance(doc, Mapping) else None
    if not isinstance(options, Mapping):
        return frozenset()
    names = {str(name) for name in options}
    for spec in options.values():
        aliases = spec.get("aliases") if isinstance(spec, Mapping) else None
        names.update(str(a) for a in aliases or ())
    return frozenset(names)


def internal_args(name: str, ctx: ModuleContext) -> dict[str, Any]:
    """The `_ansible_*` arguments ansible-core's action base adds for every module."""
    constants = _ansible("ansible.constants")
    release = _ansible("ansible.release")
    return {
        "_ansible_check_mode": bool(ctx.check),
        "_ansible_no_log": bool(ctx.vars.get(NO_LOG_VAR, False)),
        "_ansible_debug": False,
        "_ansible_diff": bool(ctx.diff),
        "_ansible_verbosity": int(ctx.vars.get(VERBOSITY_VAR, 0) or 0),
        "_ansible_version": release.__version__,
        "_ansible_module_name": name,
        "_ansible_syslog_facility": str(
            ctx.vars.get("ansible_syslog_facility", constants.DEFAULT_SYSLOG_FACILITY)
        ),
        "_ansible_selinux_special_fs": list(constants.DEFAULT_SELINUX_SPECIAL_FS),
        "_ansible_shell_executable": "/bin/sh",
        "_ansible_keep_remote_files": False,
        # no temporary folder made beforehand (pipelining): a module wanting one makes it
        "_ansible_tmpdir": None,
        "_ansible_remote_tmp": "~/.ansible/tmp",
        "_ansible_ignore_unknown_opts": False,
    }


def build_payload(name: str, path: str, args: Mapping[str, Any], ctx: ModuleContext) -> bytes:
    """The AnsiballZ program for module `name` at `path` with `args`, by ansible-core."""
    plain = json.loads(json.dumps(dict(args), default=str))  # our string types, as JSON
    module_args = {**plain, **internal_args(name, ctx)}
    common = _ansible("ansible.executor.module_common")
    templar = _ansible("ansible.template").Templar(
        loader=_ansible("ansible.parsing.dataloader").DataLoader()
    )
    with _lock:
        built = common.modify_module(
            module_name=name,
            module_path=path,
            module_args=module_args,
            templar=templar,
            # the interpreter only fills the shebang, unused: Python is started by us
            task_vars={"ansible_python_interpreter": "/usr/bin/python3"},
            module_compression="ZIP_DEFLATED",
        )
    if isinstance(built, tuple):  # ansible-core 2.17 and 2.18: (data, style, shebang)
        data, style = built[0], built[1]
    else:
        data, style = built.b_module_data, built.module_style
    if style != "new":
        raise_unsupported(name, str(style))
    return bytes(data)


def raise_unsupported(name: str, style: str) -> None:
    """A module ansible-core cannot hand us as one self-contained Python program."""
    from machineroom.errors import MachineroomError

    raise MachineroomError(
        f"module '{name}' is an old-style ({style}) module; machineroom runs ansible-core "
        "modules that use AnsibleModule"
    )


def launcher(interpreter: object) -> str:
    """The remote command: the host's Python reading the payload from stdin."""
    wanted = str(interpreter).strip() if interpreter else ""
    if wanted.startswith("auto"):  # auto, auto_silent, auto_legacy...: discover
        wanted = ""
    if wanted:
        return (
            f"mr_py={quote(wanted)}\n"
            'if ! command -v "$mr_py" >/dev/null 2>&1; then\n'
            f'  echo "{NO_PYTHON}$mr_py" >&2\n'
            "  exit 127\n"
            "fi\n"
            'exec "$mr_py" -\n'
        )
    candidates = " ".join(quote(p) for p in PYTHONS)
    return (
        f"for mr_py in {candidates}; do\n"
        '  if command -v "$mr_py" >/dev/null 2>&1; then exec "$mr_py" -; fi\n'
        "done\n"
        f'echo "{NO_PYTHON}" >&2\n'
        "exit 127\n"
    )


def json_part(text: str) -> str | None:
    """The module's JSON object in its output, without lines printed around it (a login
    banner, a module's stray print), as ansible-core's `_filter_non_json_lines` does."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("{")), None)
    if start is None:
        return None
    end = max((i for i, line in enumerate(lines) if line.rstrip().endswith("}")), default=-1)
    if end < start:
        return None
    return "\n".join(lines[start : end + 1])


def parse_result(name: str, output: CommandOutput, ctx: ModuleContext) -> Outcome:
    """The Outcome of one module run from the remote command's output."""
    if output.exit_code == 127 and NO_PYTHON in output.stderr:
        wanted = output.stderr.split(NO_PYTHON, 1)[1].splitlines()[0].strip()
        where = f"'{wanted}' (ansible_python_interpreter)" if wanted else ", ".join(PYTHONS)
        msg = (
            f"{name}: this module runs through ansible-core and needs Python on the host; "
            f"none found at {where}"
        )
        return Outcome("failed", msg=msg, result={"engine": ENGINE, "rc": 127})
    data = _decode(json_part(output.stdout))
    if data is None:
        tail = "\n".join(output.stderr.strip().splitlines()[-10:]) or output.stdout.strip()[-2000:]
        cut = " (output cut: too long)" if output.stdout_not_kept else ""
        return Outcome(
            "failed",
            msg=f"MODULE FAILURE{cut}: {tail}"
            if tail
            else f"MODULE FAILURE (exit {output.exit_code})",
            result={
                "engine": ENGINE,
                "rc": output.exit_code,
                "module_stdout": output.stdout,
                "module_stderr": output.stderr,
            },
        )
    return outcome_of(data, ctx)


def _decode(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def outcome_of(data: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
    """A module's result dict as an Outcome (internal `_ansible_*` keys dropped)."""
    result = {k: v for k, v in data.items() if not k.startswith("_ansible_")}
    facts = result.pop("ansible_facts", None) or {}
    if isinstance(facts, Mapping):
        facts = {k: v for k, v in facts.items() if not k.startswith("discovered_interpreter_")}
    diff = result.pop("diff", None)
    changed = bool(result.pop("changed", False))
    failed = bool(result.pop("failed", False))
    msg = result.pop("msg", "")
    exception = result.pop("exception", None)
    if isinstance(exception, Mapping):  # ansible-core 2.19: an error summary, not text
        msg = msg or summary_text(exception)
        traceback = exception.get("event", {}).get("formatted_traceback")
        if traceback:
            result["exception"] = traceback
    elif exception:
        result["exception"] = exception
    if failed and not msg:
        msg = "module failed"
    result["engine"] = ENGINE
    for key in ("warnings", "deprecations"):
        if key in result and not result[key]:
            del result[key]
        elif isinstance(result.get(key), list):
            result[key] = [summary_text(w) if isinstance(w, Mapping) else w for w in result[key]]
    status = "failed" if failed else "changed" if changed else "ok"
    text = diff_text(diff) if ctx.diff and diff else ""
    return Outcome(
        status,  # type: ignore[arg-type]
        msg=msg if isinstance(msg, str) else json.dumps(msg),
        diff=text,
        result=result,
        facts=facts if isinstance(facts, Mapping) else {},
    )


def summary_text(summary: Mapping[str, Any]) -> str:
    """The one-line message of an ansible-core 2.19 error or warning summary: the event's
    message and those of its causes, as ansible-core words it ("A: B")."""
    parts: list[str] = []
    event = summary.get("event", summary)
    while isinstance(event, Mapping):
        parts.append(str(event.get("msg", "")))
        chain = event.get("chain")
        if not isinstance(chain, Mapping) or not chain.get("follow", True):
            break
        event = chain.get("event")
    message = parts.pop() if parts else ""
    for part in reversed(parts):
        # a cause already in its effect's message is not said twice
        message = part if part.endswith(message) else f"{part.rstrip('. ')}: {message}"
    return message


def diff_text(diff: Any) -> str:
    """Ansible's diff (a dict or a list of them: before/after with headers, or `prepared`
    text) as one unified diff, as ansible-core's callbacks print it."""
    parts = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("prepared"), str):
            out.append(part["prepared"].rstrip("\n") + "\n")
        if "before" in part or "after" in part:
            before, after = _side(part.get("before")), _side(part.get("after"))
            head_before = part.get("before_header")
            head_after = part.get("after_header")
            out.append(
                "".join(
                    difflib.unified_diff(
                        before.splitlines(keepends=True),
                        after.splitlines(keepends=True),
                        f"before: {head_before}" if head_before else "before",
                        f"after: {head_after}" if head_after else "after",
                    )
                )
            )
    return "".join(out)


def _side(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value if value.endswith("\n") or not value else value + "\n"
    return json.dumps(value, indent=4, sort_keys=True) + "\n"
