"""Collecting metrics from many hosts at once and storing them (`machineroom collect`).

Each host gets one remote command: the collection script (collector.py), or, for a host
whose inventory names a `collect_key`, a login with that restricted key whose forced command
is the installed copy of the same script (so the key can collect and do nothing else).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from machineroom.connection.base import Become
from machineroom.connection.pool import ConnectionPool
from machineroom.errors import InputError
from machineroom.executor.adhoc import HostOutcome, run_everywhere
from machineroom.fleet.collector import (
    COLLECTOR_NAME,
    DEFAULT_COLLECTOR_TIMEOUT,
    Collector,
    build_script,
    parse_collection,
)
from machineroom.inventory.model import Host
from machineroom.state import StateStore
from machineroom.state.metrics import HostCollection

# Where `collect --install-restricted-key` puts the script the restricted key is forced to run.
INSTALLED_SCRIPT = "/usr/local/lib/machineroom/collect.sh"
# Sent over a restricted key: sshd ignores it and runs the forced command instead.
RESTRICTED_COMMAND = "machineroom-collect"
RESTRICTED_KEY_OPTIONS = (
    f'command="/bin/sh {INSTALLED_SCRIPT}",no-port-forwarding,no-X11-forwarding,'
    "no-agent-forwarding,no-pty,no-user-rc"
)


@dataclass(frozen=True)
class HostReport:
    """One host's collection as the command reports it."""

    host_id: str
    reachable: bool
    metrics: Mapping[str, float]
    containers: Sequence[Mapping[str, str]]
    problems: Sequence[str]
    error: str = ""
    duration: float = 0.0


def collectors_of(host: Host) -> tuple[Collector, ...]:
    """The custom collectors the inventory declares for a host (var `collectors`: a mapping
    of name to a command line, or to {command, timeout})."""
    declared = host.vars.get("collectors")
    if declared is None:
        return ()
    where = host.var_sources.get("collectors", f"host {host.id}")
    if not isinstance(declared, Mapping):
        raise InputError(
            f"{where}: host {host.id}: collectors must be a mapping of name to command, "
            f"not {type(declared).__name__}"
        )
    result = []
    for name, spec in declared.items():
        name = str(name)
        if not COLLECTOR_NAME.fullmatch(name):
            raise InputError(
                f"{where}: host {host.id}: collector name {name!r} must start with a letter "
                "and hold only letters, digits, '_' and '-'"
            )
        timeout: Any = DEFAULT_COLLECTOR_TIMEOUT
        command: Any = spec
        if isinstance(spec, Mapping):
            command, timeout = spec.get("command"), spec.get("timeout", timeout)
            unknown = set(spec) - {"command", "timeout"}
            if unknown:
                raise InputError(
                    f"{where}: host {host.id}: collector {name}: unknown key "
                    f"{sorted(unknown)[0]!r}; expected command and timeout"
                )
        if not isinstance(command, str) or not command.strip():
            raise InputError(
                f"{where}: host {host.id}: collector {name}: expected a command line that "
                "prints JSON"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise InputError(
                f"{where}: host {host.id}: collector {name}: timeout must be a whole number "
                "of seconds"
            )
        result.append(Collector(name, str(command), int(timeout)))
    return tuple(result)


def restricted_login(host: Host) -> Host | None:
    """The host as the restricted collection key logs in (vars `collect_key`, `collect_user`),
    or None when the inventory names no such key: no password, no other key."""
    key = host.vars.get("collect_key")
    if not key:
        return None
    user = host.vars.get("collect_user") or host.user
    return dataclasses.replace(
        host,
        ssh_key=os.path.expanduser(str(key)),  # `~/.ssh/...` as the docs write it
        user=str(user) if user else None,
        password=None,
        become_password=None,
    )


def collect_fleet(
    hosts: Sequence[Host],
    pool: ConnectionPool,
    store: StateStore,
    *,
    run_id: int | None,
    now: Callable[[], int],
    forks: int = 50,
    timeout: float | None = None,
    on_host: Callable[[HostReport], None] | None = None,
    stop: threading.Event | None = None,
) -> list[HostReport]:
    """Collect from every host (at most `forks` at once), store all samples in one
    transaction, and return each host's report in `hosts` order."""
    scripts = {host.id: build_script(collectors_of(host)) for host in hosts}
    restricted_logins = {host.id: restricted_login(host) for host in hosts}
    logins = [restricted_logins[host.id] or host for host in hosts]
    restricted = {host_id for host_id, login in restricted_logins.items() if login is not None}
    previous = store.metrics.host_statuses([host.id for host in hosts])

    def command(host: Host) -> str:
        return RESTRICTED_COMMAND if host.id in restricted else scripts[host.id]

    reports: dict[str, HostReport] = {}
    collections: list[HostCollection] = []
    lock = threading.Lock()

    def finished(outcome: HostOutcome) -> None:
        at = now()
        host_id = outcome.host.id
        result = outcome.result
        if result is None or (result.exit_code != 0 and not result.stdout.startswith("v\t")):
            error = outcome.error or _failure(result)
            item = HostCollection(host_id, at, reachable=False, error=error)
            report = HostReport(host_id, False, {}, [], [], error, outcome.duration)
        else:
            counters = previous.get(host_id, {}).get("counters") or {}
            parsed = parse_collection(result.stdout, counters, at)
            item = HostCollection(
                host_id, at, True, "", parsed.metrics, list(parsed.containers), parsed.counters
            )
            report = HostReport(
                host_id,
                True,
                parsed.metrics,
                parsed.containers,
                parsed.problems,
                duration=outcome.duration,
            )
        with lock:
            collections.append(item)
            reports[host_id] = report
        if on_host is not None:
            on_host(report)

    run_everywhere(
        logins, command, pool, forks=forks, timeout=timeout, on_result=finished, stop=stop
    )
    store.metrics.record_collections(collections, run_id)
    return [reports[host.id] for host in hosts if host.id in reports]


def _failure(result: Any) -> str:
    if result is None:
        return "no result"
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    tail = lines[-1] if lines else ""
    return f"the collection script exited {result.exit_code}" + (f": {tail}" if tail else "")


def install_restricted_collector(
    host: Host,
    public_key: str,
    pool: ConnectionPool,
    *,
    become: Become | None = None,
) -> tuple[bool, str]:
    """Install the host's collection script at INSTALLED_SCRIPT (root-owned, 755) and the
    public key, restricted to running it, in `collect_user`'s authorized_keys.

    Returns (changed, message). Runs over the host's normal (administrative) login.
    """
    from machineroom.modules.authorized_key import AuthorizedKeyModule
    from machineroom.modules.base import ModuleContext
    from machineroom.modules.copy import CopyModule
    from machineroom.modules.file import FileModule
    from machineroom.modules.runner import run_module

    user = str(host.vars.get("collect_user") or host.user or "root")
    ctx = ModuleContext(host_id=host.id, remote_user=host.user or "root")
    connection = pool.get(host)
    steps: list[tuple[Any, dict[str, Any]]] = [
        (
            FileModule(),
            {
                "path": INSTALLED_SCRIPT.rsplit("/", 1)[0],
                "state": "directory",
                "mode": "0755",
                "owner": "root",
                "group": "root",
            },
        ),
        (
            CopyModule(),
            {
                "dest": INSTALLED_SCRIPT,
                "content": build_script(collectors_of(host)),
                "mode": "0755",
                "owner": "root",
                "group": "root",
            },
        ),
        (
            AuthorizedKeyModule(),
            {"user": user, "key": public_key.strip(), "key_options": RESTRICTED_KEY_OPTIONS},
        ),
    ]
    changed = False
    messages = []
    for module, args in steps:
        outcome = run_module(module, args, ctx, connection, become=become)
        if outcome.status == "failed":
            raise InputError(f"{host.id}: installing the restricted collector: {outcome.msg}")
        changed = changed or outcome.status == "changed"
        if outcome.status == "changed":
            messages.append(outcome.msg or module.name)
    return changed, "; ".join(messages) or "already installed"
