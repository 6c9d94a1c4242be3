"""A shard: some hosts of one `serial` batch of a play, walked on one worker.

The controller sends a `ShardSpec` (the run's queues, the hosts, the sealed payload: the
play, the hosts' states, the inventory, the run's options and what connecting needs); the
worker's `walk_shard` claims the shard (a shard the scheduler runs again after its first
worker died is refused: its hosts were reported interrupted), checks that its copy of the
project is the controller's, opens its own connections, walks the hosts with the executor's
own HostWalker and ThreadRunner, streams events and audited commands back, and returns the
hosts' final states, sealed.

Nothing secret is written on the worker: key files arrive as text and are read in memory,
the vault key and passwords live in the payload; only host keys (public) go to a private
temporary folder, removed at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machineroom.cluster.coordination import RemoteCoordinator
from machineroom.cluster.wire import (
    Sealed,
    Sender,
    dumps,
    loads,
    seal,
    shard_queue_name,
    unseal,
    up_queue_name,
)
from machineroom.executor.hoststate import HostState, PlayShared, RunOptions
from machineroom.inventory.model import Inventory

CLAIM_WAIT = 120.0  # seconds a shard waits for the controller's go before giving up
# what a fingerprint leaves out: tools' folders (every hidden one: .git, .machineroom, ...)
# and files a run itself writes beside the playbook (state databases, logs)
PRINT_SKIP = frozenset({"__pycache__", "node_modules", "venv"})
PRINT_SKIP_ENDINGS = (".db", ".db-wal", ".db-shm", ".db-journal", ".sqlite", ".log", ".pyc")
PRINT_MAX_FILES = 20000


@dataclass(frozen=True)
class Connecting:
    """What a worker needs to reach hosts as the controller would (no callables)."""

    known_hosts: tuple[tuple[str, str], ...]  # (file, its text), the project's first
    accept_new_host_keys: bool
    connect_timeout: float
    command_timeout: float | None
    key_material: Mapping[str, str] = field(default_factory=dict, repr=False)
    # what an unknown host key's message advises (the dashboard's page; None: the CLI flag)
    unknown_key_advice: str | None = None


@dataclass
class Payload:
    """What a shard walks with (sealed: it holds secrets)."""

    play_state: PlayShared
    options: RunOptions
    inventory: Inventory
    playbook_dir: str
    server_res: Mapping[str, Mapping[str, Any]]
    vault_in_vars: bool
    added_hosts: set[str]
    connecting: Connecting
    vault_key: Any = None  # vault.VaultKey
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShardSpec:
    """A shard as submitted to a worker."""

    token: str
    number: int
    host_ids: tuple[str, ...]
    lock_step: bool
    at_once: int
    project: tuple[str, str]  # (playbook folder, fingerprint of its files)
    payload: Sealed
    key: bytes = field(repr=False)


@dataclass
class ShardResult:
    """What a worker returns: the hosts' states at the end, or why it did not walk them."""

    number: int
    refused: bool = False  # walked already by a worker that died: nothing was done
    error: str | None = None
    states: dict[str, HostState] = field(default_factory=dict)
    inventory: Inventory | None = None  # when add_host / group_by changed it
    added_hosts: set[str] = field(default_factory=set)
    new_host_keys: str = ""  # known_hosts lines accepted (--accept-new-host-keys)
    secrets: tuple[str, ...] = ()  # secrets learnt here (no_log output, decrypted values)


def project_print(folder: str) -> str:
    """A digest of the files under `folder` (names and contents; tools' folders left out):
    a worker walks only when its copy of the project is the controller's."""
    digest = hashlib.sha256()
    count = 0
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in PRINT_SKIP and not d.startswith("."))
        for name in sorted(names):
            if name.endswith(PRINT_SKIP_ENDINGS):
                continue
            path = os.path.join(top, name)
            count += 1
            if count > PRINT_MAX_FILES:
                return digest.hexdigest()
            try:
                with open(path, "rb") as f:
                    file_digest = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                file_digest = "-"
            digest.update(f"{os.path.relpath(path, folder)}\0{file_digest}\n".encode())
    return digest.hexdigest()


# (run token, project folder) pairs this worker process checked already: later shards of the
# run skip the check (a `fetch` into the project must not make the next batch refuse)
_checked: set[tuple[str, str]] = set()


def walk_shard(spec: ShardSpec) -> Sealed:
    """Run on a Dask worker: walk the shard's hosts; the sealed ShardResult. Never raises (a
    raised error would put the task's arguments in the worker's log)."""
    from distributed import Queue, get_client, get_worker

    worker = get_worker()
    name = str(worker.name)
    result = ShardResult(spec.number)
    queues: list[Any] = []
    try:
        client = get_client()
        up = Queue(up_queue_name(spec.token), client=client)
        inbox = Queue(shard_queue_name(spec.token, spec.number), client=client)
        queues += [up, inbox]
        sender = Sender(up.put)
        try:
            sender.send(("claim", spec.number, worker.address, name))
            answer = _first_answer(inbox)
            if answer[0] != "go":
                result.refused = True
            else:
                _walk(spec, name, sender, inbox, result, stopped=answer[1], aborted=answer[2])
        finally:
            sender.close()
        if sender.failure is not None:
            result.error = f"worker {name}: the controller could not be told: {sender.failure}"
    except Exception as exc:  # reported to the controller, never logged here
        result.error = f"worker {name}: {type(exc).__name__}: {exc}"
    finally:
        for queue in queues:
            with contextlib.suppress(Exception):
                queue.close()
    return seal(result, spec.key)


def _first_answer(inbox: Any) -> tuple[Any, ...]:
    """The controller's answer to the claim: ("go", stopped, aborted) or ("refuse",)."""
    while True:
        try:
            for message in loads(inbox.get(timeout=CLAIM_WAIT)):
                if message[0] in ("go", "refuse"):
                    return tuple(message)
        except TimeoutError:
            return ("refuse",)  # the controller is gone


def _walk(
    spec: ShardSpec,
    name: str,
    sender: Sender,
    inbox: Any,
    result: ShardResult,
    *,
    stopped: bool,
    aborted: bool,
) -> None:
    from machineroom.connection.base import ConnectOptions
    from machineroom.connection.pool import ConnectionPool
    from machineroom.events import EventBus
    from machineroom.executor.hoststate import RunShared
    from machineroom.executor.runner import ThreadRunner
    from machineroom.executor.walker import HostWalker
    from machineroom.masking import SECRETS, mask
    from machineroom.templating import Templar
    from machineroom.vault import use_key

    folder, fingerprint = spec.project
    if (spec.token, folder) not in _checked:
        if not os.path.isdir(folder) or project_print(folder) != fingerprint:
            result.error = (
                f"worker {name}: its copy of the project at {folder} is not the controller's "
                "(workers read templates, files and roles at the controller's paths: check "
                "the same commit out there, or share the folder)"
            )
            return
        _checked.add((spec.token, folder))
    payload: Payload = unseal(spec.payload, spec.key)
    for secret in payload.secrets:
        SECRETS.add(secret)
    given = set(payload.secrets)
    if payload.vault_key is not None:
        use_key(payload.vault_key)
    decrypt = payload.vault_key.decrypt if payload.vault_key is not None else _no_key
    coordinator = RemoteCoordinator(spec.number, spec.lock_step, sender.send)
    if aborted:
        coordinator.aborted()

    def learnt(value: str) -> None:  # a secret met here: the controller masks it too
        if value not in given:
            sender.send(("secret", spec.number, value))

    SECRETS.listen(learnt)
    private = tempfile.mkdtemp(prefix="mr-shard-")  # 0700: host keys only
    try:
        files = []
        shown_as = {}  # each copy named by the controller's path in messages and refusals
        for index, (theirs, text) in enumerate(payload.connecting.known_hosts):
            path = os.path.join(private, f"known_hosts.{index}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            files.append(path)
            shown_as[path] = theirs
        project_file = files[0] if files else os.path.join(private, "known_hosts.0")
        first_text = payload.connecting.known_hosts[0][1] if files else ""

        def audit(host: Any, command: Any) -> None:
            masked = dataclasses.replace(
                command,
                command=mask(command.command),
                stdout=mask(command.stdout),
                stderr=mask(command.stderr),
            )
            if getattr(masked, "action", ""):
                masked = dataclasses.replace(masked, action=mask(masked.action))
            sender.send(("command", spec.number, host.id, masked))

        connecting = payload.connecting
        options = ConnectOptions(
            known_hosts_files=tuple(files),
            project_known_hosts=project_file,
            accept_new_host_keys=connecting.accept_new_host_keys,
            unknown_key_advice=connecting.unknown_key_advice,
            known_hosts_shown_as=shown_as,
            connect_timeout=connecting.connect_timeout,
            command_timeout=connecting.command_timeout,
            decrypt=decrypt,
            on_command=audit,
            key_material=connecting.key_material,
        )
        pool = ConnectionPool(options, payload.inventory.tunnels)
        run = RunShared(
            options=payload.options,
            inventory=payload.inventory,
            pool=pool,
            bus=EventBus([lambda event: sender.send(("event", spec.number, event))]),
            templar=Templar(),
            decrypt=decrypt,
            playbook_dir=payload.playbook_dir,
            server_res=payload.server_res,
            vault_in_vars=payload.vault_in_vars,
            added_hosts=set(payload.added_hosts),
            coordinator=coordinator,
        )
        original = run.inventory
        if stopped:  # the run stopped before this shard began: walk nothing
            run.stop_run()

        def cut_off() -> None:  # the controller cannot hear us: stop, nobody would answer
            coordinator.gone.set()
            run.stop_run()

        sender.on_failure = cut_off
        done = threading.Event()
        dispatcher = threading.Thread(
            target=_dispatch, args=(inbox, coordinator, run, done), name="mr-inbox", daemon=True
        )
        dispatcher.start()
        try:
            play_state = payload.play_state
            states = {state.host.id: state for state in play_state.hosts}
            walkers = [HostWalker(states[h], play_state, run) for h in spec.host_ids]
            ThreadRunner().run_walks(walkers, at_once=spec.at_once, interrupt=run.stop_run)
        finally:
            done.set()
            pool.close_all()
            with contextlib.suppress(Exception):
                inbox.put(dumps([("done",)]))  # wakes the dispatcher
        for host_id in spec.host_ids:
            state = states[host_id]
            state.program = None
            result.states[host_id] = state
        if run.inventory is not original:
            result.inventory = run.inventory
        result.added_hosts = set(run.added_hosts)
        now = Path(project_file).read_text(encoding="utf-8") if os.path.exists(project_file) else ""
        if now.startswith(first_text):
            result.new_host_keys = now[len(first_text) :]
        result.secrets = tuple(v for v in SECRETS.values() if v not in given)
    finally:
        SECRETS.unlisten(learnt)
        shutil.rmtree(private, ignore_errors=True)


def _no_key(ciphertext: str) -> str:
    """The decrypt of a run that sent no vault key: vault data met on a worker is an error
    saying so, never ciphertext used as a value."""
    from machineroom.errors import VaultError

    raise VaultError(
        "vault-encrypted data met on a cluster worker, and the run sent no vault key: give "
        "the vault password (--vault-password-file, $MACHINEROOM_VAULT_PASSWORD, --vault-id)"
    )


def _dispatch(inbox: Any, coordinator: RemoteCoordinator, run: Any, done: threading.Event) -> None:
    """The shard's inbox: replies to its calls, and the controller's stop and abort."""
    while not done.is_set():
        try:
            messages = loads(inbox.get())  # no timeout: Dask logs each as an error
        except Exception:
            coordinator.gone.set()
            run.stop_run()
            return
        for message in messages:
            kind = message[0]
            if kind == "reply":
                if message[3]:
                    coordinator.aborted()
                coordinator.replied(message[1], message[2])
            elif kind == "stop":
                run.stop_run()
            elif kind == "abort":
                coordinator.aborted()
            elif kind == "done":
                return
            elif kind == "gone":
                coordinator.gone.set()
                run.stop_run()


__all__ = ["Payload", "ShardResult", "ShardSpec", "project_print", "walk_shard"]
