"""One-task runs: `run -m MODULE`, `run -- COMMAND`, `facts`, `scan-docker`, `collect` are each
a play of one task (no fact gathering), loaded and validated like any playbook, then run and
recorded as `apply` runs are: same events, task rows, check mode, status words and `--json`."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputError, InputErrors, UsageError
from machineroom.runs.request import RunResult
from machineroom.runs.session import RunRecord, Subscriber, run_prepared

if TYPE_CHECKING:
    from machineroom.playbook.model import Playbook
    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.prepare import Prepared
    from machineroom.runs.workspace import Workspace

TASK_NAME = "adhoc"  # the task's name in events and task rows


def module_args(text: str | None) -> Any:
    """`-a` as given: a JSON object, else the `k=v ...` (or free-form) string the playbook
    loader reads as a task's arguments."""
    if not text:
        return {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UsageError(f"-a: not valid JSON: {exc}") from None
    return text


def one_task_play(
    pattern: str, module: str, args: Any, *, become: bool = False, name: str = TASK_NAME
) -> str:
    """The one-task playbook (JSON, which YAML reads) running `module` with `args`."""
    play: dict[str, Any] = {
        "hosts": pattern,
        "gather_facts": False,
        "tasks": [{"name": name, module: args}],
    }
    if become:
        play["become"] = True
    return json.dumps([play], indent=2) + "\n"


def prepare_one_task(
    workspace: Workspace,
    pattern: str,
    module: str,
    args: Any,
    *,
    become: bool = False,
    become_user: str | None = None,
    extra_vars: Sequence[str] = (),
    name: str = TASK_NAME,
    literal: bool = False,
) -> Prepared:
    """The validated one-task play on the hosts matching `pattern`; errors name `-m MODULE`
    instead of a temporary file. `literal`: the arguments are used as given, never rendered
    as templates (`run -- COMMAND`: `${#x}` or `{{.State}}` are the shell's and docker's)."""
    from machineroom.runs.prepare import prepare

    with tempfile.TemporaryDirectory(prefix="machineroom-adhoc-") as folder:
        path = Path(folder) / "adhoc.yml"
        path.write_text(one_task_play(pattern, module, args, become=become, name=name))
        try:
            prepared = prepare(workspace, str(path), None, frozenset(), tuple(extra_vars))
        except InputErrors as exc:
            raise InputErrors([_reworded(e, str(path), module, name) for e in exc.errors]) from None
        except InputError as exc:
            raise _reworded(exc, str(path), module, name) from None
    if become and become_user:
        plays = tuple(
            dataclasses.replace(p, become_user=become_user) for p in prepared.playbook.plays
        )
        prepared.playbook = dataclasses.replace(prepared.playbook, plays=plays)
    if literal:
        prepared.playbook = _with_literal_args(prepared.playbook, args)
    prepared.playbook_dir = str(Path.cwd())  # `copy src=x`: relative to where it was typed
    return prepared


def _with_literal_args(playbook: Playbook, args: Mapping[str, Any]) -> Playbook:
    """The one-task playbook with its task's arguments marked unsafe (validated as loaded)."""
    from machineroom.playbook.model import Task
    from machineroom.templating import mark_unsafe

    play = playbook.plays[0]
    stage = play.stages[0]
    task = stage.items[0]
    assert isinstance(task, Task)
    task = dataclasses.replace(task, args=mark_unsafe(dict(args)))
    stage = dataclasses.replace(stage, items=(task, *stage.items[1:]))
    play = dataclasses.replace(play, stages=(stage, *play.stages[1:]))
    return dataclasses.replace(playbook, plays=(play, *playbook.plays[1:]))


def _reworded(error: InputError, path: str, module: str, name: str) -> InputError:
    message = str(error).replace(path, f"-m {module}")
    message = message.replace(f'task "{name}" ', "").replace(f"task '{name}' ", "")
    return InputError(message)


def run_one_task(
    workspace: Workspace,
    prepared: Prepared,
    record: RunRecord,
    connect: ConnectSettings,
    subscribers: Sequence[Subscriber] = (),
    *,
    check: bool = False,
    diff: bool = False,
    audit_label: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run a prepared play a command generated (a one-task play, the collector install),
    recorded as `apply` runs are but not resumable (the store is opened and closed here).
    `options`: more RunOptions fields."""
    from machineroom.executor.hoststate import RunOptions

    store = workspace.open_state()
    try:
        store.mark_interrupted_runs()
        run_options = RunOptions(
            check=check,
            diff=diff,
            forks=connect.forks,
            extra_vars=prepared.extra_vars,
            extra_var_sources=prepared.extra_sources,
            **dict(options or {}),
        )
        return run_prepared(
            workspace,
            store,
            prepared,
            record,
            run_options,
            connect,
            subscribers,
            audit_label=audit_label,
            resumable=False,  # a one-task run leaves what `apply --resume` continues alone
        )
    finally:
        store.close()
