"""The server list in the state database, as the commands that read and change it without a
playbook see it: ls, import, retire, connect, scanports. Each opens the workspace's store,
does its one thing, and closes it (the run history: runs/history.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from machineroom.errors import InputError, UsageError
from machineroom.runs.workspace import Workspace, sync_servers

if TYPE_CHECKING:
    from machineroom.inventory.model import Host, Inventory
    from machineroom.state import ServerRow, StateStore
    from machineroom.state.forget import Forgotten


def now_iso() -> str:
    """Now, in UTC, to the second (what `res` timestamps hold)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def typed_command_line() -> str:
    """This process's command line as recorded in a run row."""
    return " ".join(["machineroom", *sys.argv[1:]])


@contextmanager
def opened(workspace: Workspace, sync: bool = False) -> Iterator[StateStore]:
    """The workspace's store, closed afterwards; `sync`: the inventory's hosts written into
    `server_room` first (when the workspace has an inventory)."""
    store = workspace.open_state()
    try:
        if sync and workspace.inventory_paths:
            sync_servers(store, workspace.inventory.hosts.values())
        yield store
    finally:
        store.close()


def server_rows(workspace: Workspace, active_only: bool = False) -> list[ServerRow]:
    """Every server (the inventory's hosts added first), without retired ones if asked."""
    with opened(workspace, sync=True) as store:
        return [r for r in store.servers() if not (active_only and r.res.get("retired"))]


# Called with the store and the ids about to be forgotten, before anything is deleted: the
# CLI resolves their open alerts there (fleet/forget_alerts.py), notifiers told as for any
# resolution.
BeforeForget = Callable[["StateStore", list[str]], None]


def import_servers(
    workspace: Workspace,
    file: str,
    prune: bool = False,
    *,
    dry_run: bool = False,
    before_forget: BeforeForget | None = None,
) -> tuple[Inventory, list[Forgotten]]:
    """Load `file` (server list, YAML or INI) into `server_room`, recorded as an `import` run;
    the inventory it held, and with `prune` the hosts forgotten because `file` does not list
    them (see `forget_servers`), all in one transaction. Passwords become references, never
    plaintext. `prune` refuses a `file` listing no host (it would forget them all) and a host
    the project's inventory (found as without `-i`) still lists, as `forget` does; then
    nothing is changed. `dry_run`: what `prune` would forget, nothing changed or recorded."""
    from machineroom.inventory import load_inventory

    inventory = load_inventory(file, check_key_files=False)  # keys may live on another machine
    inventory.register_secrets()
    if prune and not inventory.hosts:
        raise InputError(
            f"{file}: lists no host, so --prune would forget every host of the database; "
            "nothing was changed"
        )
    forgotten: list[Forgotten] = []
    if prune:
        with opened(workspace) as store:
            gone = sorted(store.known_host_ids() - set(inventory.hosts))
            _refuse_listed(gone, *_project_inventory(file))
            forgotten = store.forget_servers(gone, dry_run=True)
            if dry_run:
                return inventory, forgotten
            if before_forget is not None and gone:
                before_forget(store, gone)
    with opened(workspace) as store, store.transaction():
        run_id = store.start_run("import", typed_command_line(), inventory=file)
        sync_servers(store, inventory.hosts.values())
        summary: dict[str, Any] = {"servers": len(inventory.hosts)}
        if prune:
            gone = sorted(store.known_host_ids() - set(inventory.hosts))
            forgotten = store.forget_servers(gone)
            summary["forgotten"] = gone
        store.finish_run(run_id, "ok", summary)
    return inventory, forgotten


def _project_inventory(file: str) -> tuple[tuple[str, ...], set[str]]:
    """The inventory paths a command without `-i` would read here, and their host ids; none
    when there is no such inventory or it is `file` itself."""
    from machineroom.inventory import load_inventories
    from machineroom.runs.workspace import find_inventory_paths

    try:
        paths = find_inventory_paths(())
    except UsageError:
        return (), set()
    if [os.path.realpath(p) for p in paths] == [os.path.realpath(file)]:
        return (), set()
    return paths, set(load_inventories(list(paths), check_key_files=False).hosts)


def _refuse_listed(ids: Sequence[str], paths: Sequence[str], listed_ids: Collection[str]) -> None:
    """An InputError when the inventory at `paths` lists any of `ids`: the next command
    would add them back, with nothing recorded about them."""
    listed = [i for i in ids if i in listed_ids]
    if listed:
        where = ", ".join(paths)
        it = "it" if len(listed) == 1 else "them"
        raise InputError(
            f"{', '.join(listed)}: in the inventory ({where}), so the next command would add "
            f"{it} back with nothing recorded; remove {it} from the inventory first, or keep "
            f"{it} out of runs with `machineroom retire {' '.join(listed)}`"
        )


def forget_servers(
    workspace: Workspace,
    server_ids: Sequence[str],
    *,
    dry_run: bool = False,
    before_forget: BeforeForget | None = None,
) -> list[Forgotten]:
    """Remove servers from the database (StateStore.forget_servers), recorded as a `forget`
    run. A host of the workspace's inventory is refused: the next command would add it back,
    with nothing recorded about it. `dry_run`: what would go, nothing changed or recorded."""
    if workspace.inventory_paths:
        _refuse_listed(server_ids, workspace.inventory_paths, workspace.inventory.hosts)
    with opened(workspace) as store:
        preview = store.forget_servers(server_ids, dry_run=True)  # unknown ids: refused here
        if dry_run:
            return preview
        if before_forget is not None:
            before_forget(store, [item.id for item in preview])
        with store.transaction():
            run_id = store.start_run("forget", typed_command_line(), args={"ids": list(server_ids)})
            forgotten = store.forget_servers(server_ids)
            store.finish_run(run_id, "ok", {"forgotten": [item.id for item in forgotten]})
    return forgotten


def forgotten_line(item: Forgotten, dry_run: bool = False) -> str:
    """`h9: forgotten (server row, pending apply, 3 facts, ...); 16 history rows stay`
    (`dry_run`: `h9: would be forgotten (...); ... would stay`)."""
    parts = ["server row"] if item.server else []
    if item.pending:
        parts.append("pending apply")
    for count, one, many in (
        (item.facts, "facts snapshot", "facts snapshots"),
        (item.series, "metric series", "metric series"),
        (item.alerts, "alert", "alerts"),
    ):
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    verb = "would be forgotten" if dry_run else "forgotten"
    line = f"{item.id}: {verb} ({', '.join(parts) or 'nothing but its id'})"
    if item.history:
        line += f"; its {item.history} run-history row(s) {'would stay' if dry_run else 'stay'}"
    return line


def render_inventory(inventory: Inventory, layout: Literal["yaml", "serverlist"]) -> str:
    """The inventory as text that loads back to the same servers: `yaml` (a YAML inventory)
    or `serverlist` (the server-list format, which holds no groups or vars)."""
    from machineroom.inventory import render_server_list, render_yaml_inventory

    if layout == "yaml":
        return render_yaml_inventory(inventory)
    return render_server_list(inventory)


def retire_servers(workspace: Workspace, server_ids: Sequence[str], undo: bool) -> list[str]:
    """Take servers out of service (or back in, with `undo`); a line of news per server."""
    news = []
    with opened(workspace, sync=True) as store:
        for server_id in server_ids:
            if undo:
                if store.server(server_id) is None:
                    raise InputError(f"no server '{server_id}' in {workspace.state_path}")
                store.update_res(server_id, {"retired": False, "retired_at": None})
                news.append(f"{server_id}: back in service")
            else:
                store.retire(server_id)
                news.append(f"{server_id}: retired")
    return news


def connectable_host(workspace: Workspace, server_id: str, remote_command: Sequence[str]) -> Host:
    """The host `connect` opens a session to, its session noted in the audit log; a retired
    server is refused."""
    host = workspace.inventory.host(server_id)
    with opened(workspace) as store:
        sync_servers(store, [host])
        row = store.server(server_id)
        if row is not None and row.res.get("retired"):
            raise UsageError(f"{server_id} is retired (`machineroom retire --undo {server_id}`)")
        store.record_command(
            None, host.id, "connect " + " ".join(remote_command) or "(shell)", -1, 0.0
        )
    return host


def scan_open_ports(
    workspace: Workspace, pattern: str, ports_text: str | None, timeout: float
) -> tuple[list[Host], dict[str, list[int]]]:
    """TCP connect scan of the hosts matching `pattern` from this workstation (`ports_text`
    as `-p` takes it, e.g. `22,80,8000-8100`; None: common service ports), recorded as a
    `scanports` run; open ports go into each server's `res.ports`."""
    from machineroom.scan import DEFAULT_PORTS, parse_ports, scan_ports

    ports = parse_ports(ports_text) if ports_text else list(DEFAULT_PORTS)

    hosts = [h for h in workspace.select(pattern) if h.connection != "local"]
    with opened(workspace, sync=True) as store:
        run_id = store.start_run(
            "scanports", typed_command_line(), args={"pattern": pattern, "ports": list(ports)}
        )
        found = scan_ports([(h.id, h.host) for h in hosts], list(ports), timeout=timeout)
        for host in hosts:
            store.update_res(
                host.id, {"ports": found.get(host.id, []), "ports_scanned_at": now_iso()}
            )
        store.finish_run(run_id, "ok", {"hosts": len(hosts)})
    return hosts, found


def installed_stages(res: dict[str, Any]) -> list[str]:
    """Stage names recorded as installed in `res` (`docker_compose_installed` -> docker_compose)."""
    return sorted(
        key.removesuffix("_installed")
        for key, value in res.items()
        if key.endswith("_installed") and value is True
    )
