"""What a task module is: an argument schema, a remote step, and how to read its result.

A module is pure: `build()` turns (already templated) arguments into one POSIX sh script that
reads the current state, changes it only when it differs and check mode is off, and prints
what it found; `interpret()` turns the command's output into an `Outcome`. The executor does
the rest (templating, when, loop, register, retries, become, handlers), and owns all I/O: a
module reaches local files only through `ModuleContext`.

Modules that never touch the host (debug, assert, set_fact, ...) implement `run_local()`
instead and return None from `build()`. The few whose next command depends on what the host
said (replace runs Python's `re` here on the file the host sent) implement `converse()`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

OutcomeStatus = Literal["ok", "changed", "failed"]


def quote(value: object) -> str:
    """Quote any value for a POSIX shell: the only way a user value may reach a script."""
    return shlex.quote(str(value))


@dataclass(frozen=True)
class RemoteStep:
    """One remote command: a sh script and what to send on its stdin: bytes, or the path of
    a local file, which the connection streams from disk (a big file is never held whole)."""

    script: str
    stdin: bytes | os.PathLike[str] | None = None
    # Seconds the script may run; None: the task's timeout or the connection's default.
    timeout: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What a module did on one host.

    `result` is what `register:` stores (besides `changed`, `failed`, `msg`, which the
    executor adds from the fields here): e.g. rc, stdout, stderr, stdout_lines for command.
    `facts` are set as host facts (like ansible_facts). `diff` is a unified diff, or "".
    """

    status: OutcomeStatus
    msg: str = ""
    diff: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    # Keys written into the host's `server_room.res` (the `record` module, stages).
    record: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when the module changed something (or would have, in check mode)."""
        return self.status == "changed"

    @property
    def failed(self) -> bool:
        """True when the module failed."""
        return self.status == "failed"


class LocalFiles(Protocol):
    """Files on the controller a module may read and write (fetch), through the executor.

    Relative paths are the playbook's folder's, as Ansible's `fetch` resolves `dest`.
    """

    def resolve(self, path: str) -> str:
        """The absolute local path `path` names."""
        ...

    def digest(self, path: str, algorithm: str = "sha1") -> str | None:
        """The hex digest of a local file (hashlib's algorithm names), None when there is no
        such file."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Write `data` to a local file atomically, making its folders; InputError when the
        path is a folder or cannot be written."""
        ...


# Keys the executor adds to `ModuleContext.vars` besides the host's variables (executor/task.py
# `_module_context`). The `__mr_` prefix and dunder form keep them out of any playbook's
# namespace: no variable a user writes can collide with them or read them by accident.
RES_VAR = "__mr_res__"  # the host's current server_room.res, for `record`
VERBOSITY_VAR = "__mr_verbosity__"  # the run's -v count, for `debug` and Ansible's modules
NO_LOG_VAR = "__mr_no_log__"  # the task's no_log, told to Ansible's modules (_ansible_no_log)


@dataclass(frozen=True)
class ModuleContext:
    """What a module may know besides its arguments. No connection: modules do no I/O.

    `read_file(src)` returns a local file, looked up as Ansible does (the role's `files/`, the
    playbook's folder, ...), as its path (streamed when sent; tests may give bytes);
    `render_template(src, **options)` renders a local Jinja2 template with the host's variables
    (options: the template module's trim_blocks, lstrip_blocks, newline_sequence); both raise
    InputError naming the task when missing.
    """

    host_id: str
    check: bool = False
    diff: bool = False
    vars: Mapping[str, Any] = field(default_factory=dict)
    remote_user: str = "root"
    become_user: str | None = None  # when the task runs through sudo
    read_file: Callable[[str], bytes | os.PathLike[str]] = field(
        default=lambda src: b"", repr=False
    )
    render_template: Callable[..., str] = field(default=lambda src, **options: "", repr=False)
    # The local folder `src` names, searched as read_file searches; None when it names none.
    local_folder: Callable[[str], str | None] = field(default=lambda src: None, repr=False)
    local_files: LocalFiles | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CommandOutput:
    """The remote command's result as a module sees it (decoupled from the connection)."""

    exit_code: int
    stdout: str
    stderr: str
    stdout_not_kept: int = 0  # bytes of stdout the connection dropped (head and tail kept)


# Several round trips: a generator that yields each step, is sent its output, returns the Outcome.
Conversation = Generator[RemoteStep, CommandOutput, Outcome]


class Module:
    """Base class of task modules. Subclasses set `name`, `schema` and implement the steps.

    `schema` is a JSON Schema (an object) for the arguments, checked before anything runs.
    `free_form` names the argument that takes a bare string (`command: ls -l` -> cmd).
    `aliases` are extra task names (`ansible.builtin.NAME` is accepted for every module).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    schema: ClassVar[dict[str, Any]] = {"type": "object"}
    free_form: ClassVar[str | None] = None
    # True for modules that never contact the host (debug, set_fact, assert, fail, meta).
    local: ClassVar[bool] = False
    # True when the executor may send the module's step inside a per-host program with other
    # tasks' (executor/program.py): build() gives the same script for the same arguments,
    # the step fails only with a non-zero exit code, and it sets no facts unless `sets_facts`.
    in_programs: ClassVar[bool] = False
    # True for a module whose outcome sets facts (fact gathering): in a program, no task
    # after it may read a fact.
    sets_facts: ClassVar[bool] = False

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """The remote step for these arguments; None for local modules."""
        return None

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Read the remote step's output into an Outcome."""
        raise NotImplementedError

    def converse(self, args: Mapping[str, Any], ctx: ModuleContext) -> Conversation | None:
        """For modules whose next command depends on the host's answer: the conversation
        (steps out, outputs in, an Outcome at the end); None (the default) for one step."""
        return None

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """For local modules: compute the Outcome without contacting the host."""
        raise NotImplementedError
