"""A RunRequest carried out: the scheduler and the dashboard hand a request to a child process
(`machineroom run-request -`, the request on its stdin), which runs it here.

`execute_request` picks the runs function of the request's kind; `request_file` and
`CHILD_ARGS` are how a parent hands a request to such a child: a private temporary file
(mode 600, already unlinked) given as the child's stdin, so no value travels in argv (seen
by every user in `ps`) or in the environment. The request's `trigger` (`schedule:NAME`,
`web:TOKEN:NONCE`) reaches the run's row through `RunRecord.trigger`; the parent finds its
run by it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

from machineroom.errors import UsageError
from machineroom.runs.connect import ConnectSettings
from machineroom.runs.request import RunRequest, RunResult
from machineroom.runs.session import Subscriber

if TYPE_CHECKING:
    from machineroom.runs.workspace import Workspace

# the CLI words, after `python -m machineroom`, of a child reading a request on its stdin
CHILD_ARGS = ("run-request", "-")

Execute = Callable[[RunRequest, "Workspace", Sequence[Subscriber]], RunResult]


def _apply(
    request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber]
) -> RunResult:
    from machineroom.runs.apply import apply_playbook

    return apply_playbook(request, workspace, subscribers)


def _run(request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber]) -> RunResult:
    from machineroom.runs.adhoc import run_command, run_module

    if request.module:
        result = run_module(request, workspace, subscribers)
        return RunResult(None, "ok", notes=("no hosts matched",)) if result is None else result
    if not request.command:
        raise UsageError("run request: kind 'run' takes a command or a module")
    return run_command(request, workspace, subscribers)


def _facts(
    request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber]
) -> RunResult:
    from machineroom.runs.adhoc import gather_facts

    return gather_facts(request, workspace, subscribers)


def _scan_docker(
    request: RunRequest, workspace: Workspace, subscribers: Sequence[Subscriber]
) -> RunResult:
    from machineroom.runs.docker import scan_docker

    return scan_docker(request, workspace, subscribers)


# kind -> the runs function that carries it out. `collect` is not here: its alert rules and
# pruning live in fleet/, above this layer (cli/run_request.py calls fleet/collect.py)
EXECUTORS: dict[str, Execute] = {
    "apply": _apply,
    "run": _run,
    "facts": _facts,
    "scan-docker": _scan_docker,
}


def execute_request(request: RunRequest, subscribers: Sequence[Subscriber] = ()) -> RunResult:
    """Run `request` in this process, recorded (with its trigger) like a run typed at the
    CLI; `subscribers` get its events (a reporter). No terminal is assumed: nothing prompts.
    A kind without a runs function is a UsageError."""
    execute = EXECUTORS.get(request.kind)
    if execute is None:
        raise UsageError(f"run request: kind '{request.kind}' cannot be run from a request yet")
    request = settled(request)
    return execute(request, prepared_workspace(request), subscribers)


def settled(request: RunRequest) -> RunRequest:
    """The request with its connection settings read from the project's configuration here,
    where it runs, when it asks for that (`connect_from_settings`): the scheduler and the
    dashboard leave them to the child, which runs in the repository and reads its
    machineroom.yml and ansible.cfg as they are now, as a command typed there would.

    What the requester's own `connect` names is kept, as a flag beside the settings would
    be: extra known_hosts files (first), a vault password file (`serve
    --vault-password-file`), and the advice an unknown host key's message gives."""
    import dataclasses

    if not request.connect_from_settings:
        return request
    given = request.connect
    connect = connect_defaults(request.inventory_paths)
    connect = dataclasses.replace(
        connect,
        known_hosts=tuple(dict.fromkeys((*given.known_hosts, *connect.known_hosts))),
        vault_password_file=given.vault_password_file or connect.vault_password_file,
        unknown_key_advice=given.unknown_key_advice or connect.unknown_key_advice,
    )
    return dataclasses.replace(request, connect=connect, connect_from_settings=False)


def prepared_workspace(request: RunRequest) -> Workspace:
    """The request's workspace, after what the CLI does while it parses its options: the
    settings beside the inventory, and the vault password's source, are known before
    anything loads."""
    from machineroom.runs.settings import use_inventory_paths
    from machineroom.runs.workspace import make_workspace

    use_inventory_paths(request.inventory_paths)
    request.connect.use_vault_source()
    return make_workspace(request.inventory_paths, request.state_path)


def connect_defaults(inventory_paths: Sequence[str]) -> ConnectSettings:
    """The connection settings a command typed without connection options gets: forks,
    timeouts and the vault password's source from machineroom.yml, ansible.cfg and the
    environment (as the CLI's option defaults read them)."""
    from machineroom.runs.settings import current_settings, use_inventory_paths
    from machineroom.vault import PASSWORD_ENV

    use_inventory_paths(tuple(inventory_paths))
    settings = current_settings(tuple(inventory_paths))
    vault_file = None
    if not os.environ.get(PASSWORD_ENV):  # the variable wins, as on the command line
        value = settings.get("vault_password_file")
        vault_file = None if value is None else str(value)
    timeout = settings.get("command_timeout")
    cluster = os.environ.get("MACHINEROOM_CLUSTER") or settings.get("cluster")
    return ConnectSettings(
        cluster=None if not cluster else str(cluster),
        cluster_tls=(
            settings.get("cluster_tls_ca"),
            settings.get("cluster_tls_cert"),
            settings.get("cluster_tls_key"),
        ),
        forks=int(settings.get("forks", 50)),
        connect_timeout=float(settings.get("connect_timeout", 10.0)),
        command_timeout=None if timeout is None else float(timeout),
        vault_password_file=vault_file,
        ask_vault_password=bool(settings.get("ask_vault_pass", False)),
        vault_ids=tuple(settings.get("vault_identity_list", ())),
    )


def request_file(request: RunRequest) -> IO[bytes]:
    """The request as JSON in a private temporary file (mode 600, its name already removed),
    positioned at its start: give it to a child as stdin. The caller closes it."""
    handle = tempfile.TemporaryFile()  # noqa: SIM115 -- the caller owns it
    handle.write(request.to_json().encode())
    handle.flush()
    handle.seek(0)
    return handle
