"""Finding a task's local files (`src:` of copy and template) the way Ansible users expect.

A relative `src` is looked up in the role's `files/` (copy) or `templates/` (template), then
the role's folder, then the playbook's `files/` / `templates/`, then the playbook's folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputError
from machineroom.playbook.model import RoleRef, Task
from machineroom.templating import Where, template_variables
from machineroom.yamlio import file_present, read_text

if TYPE_CHECKING:
    from machineroom.executor.hoststate import RunShared


def search_paths(kind: str, role: RoleRef | None, playbook_dir: str) -> list[Path]:
    """Folders searched for a relative `src`, in order; `kind` is "files" or "templates"."""
    paths: list[Path] = []
    if role is not None:
        paths += [Path(role.path) / kind, Path(role.path)]
    paths += [Path(playbook_dir) / kind, Path(playbook_dir)]
    return paths


def find_local(src: str, kind: str, task: Task, role: RoleRef | None, playbook_dir: str) -> Path:
    """The local file `src` names; an InputError naming the task and the folders searched."""
    path = Path(src).expanduser()
    # file_present: a folder, a symlink loop, no permission are errors that say so, not
    # "not found"
    if path.is_absolute():
        if file_present(path):
            return path
        searched = [path]
    else:
        searched = [folder / path for folder in search_paths(kind, role, playbook_dir)]
        for candidate in searched:
            if file_present(candidate):
                return candidate
    raise InputError(
        f"task \"{task.display_name}\": {kind[:-1]} '{src}' not found (looked in "
        + ", ".join(str(p) for p in searched)
        + ")",
        task.location,
    )


def file_reader(task: Task, role: RoleRef | None, playbook_dir: str) -> Callable[[str], Path]:
    """`ModuleContext.read_file` for this task: the file's path; the connection streams it
    from disk in pieces, so a big file costs no memory (and is not read once per host)."""

    def read(src: str) -> Path:
        return find_local(src, "files", task, role, playbook_dir)

    return read


def folder_finder(role: RoleRef | None, playbook_dir: str) -> Callable[[str], str | None]:
    """`ModuleContext.local_folder` for this task: the first of the searched paths that
    exists, when it is a folder (copy's `src: files/conf.d/`); None when it is a file or
    nothing is there (read_file then says so)."""

    def find(src: str) -> str | None:
        path = Path(src).expanduser()
        candidates = (
            [path]
            if path.is_absolute()
            else [folder / path for folder in search_paths("files", role, playbook_dir)]
        )
        for candidate in candidates:
            if candidate.is_dir():
                return str(candidate)
            if candidate.exists():
                return None
        return None

    return find


def template_renderer(
    task: Task,
    role: RoleRef | None,
    run: RunShared,
    variables: Mapping[str, Any],
    where: Where,
) -> Callable[..., str]:
    """`ModuleContext.render_template` for this task: the host's variables, StrictUndefined."""

    def render(src: str, **options: Any) -> str:
        # options: the template module's trim_blocks, lstrip_blocks, newline_sequence; dest
        dest = options.pop("dest", None)
        path = find_local(src, "templates", task, role, run.playbook_dir)
        # unreadable, too big, not UTF-8: an error naming the template (line:col of a bad byte)
        text = read_text(path)
        variables_here = template_variables(variables, src, path, dest)
        # errors name the template file:line (the included one's, when it is there)
        search = [str(p) for p in search_paths("templates", role, run.playbook_dir)]
        return run.templar.render_file(
            text, variables_here, where, path=str(path), search=search, **options
        )

    return render
