"""What a cluster run sends its workers, made portable: the inventory without references to
this machine (passwords in our environment variables, `~` in key paths), the known_hosts and
key files as text, and what comes back merged (add_host / group_by's inventory changes, host
keys accepted on a worker). Also which secrets a run carries: a tcp:// cluster refuses them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from machineroom.cluster.shard import Connecting
from machineroom.errors import InputError, UsageError
from machineroom.inventory.model import Host, Inventory, Secret


def portable_host(host: Host) -> Host:
    """`host` as a worker can use it: passwords kept in this machine's environment variables
    made plain (they travel sealed), its key path with `~` expanded here."""
    changes: dict[str, Any] = {}
    for name in ("password", "become_password"):
        secret: Secret | None = getattr(host, name)
        if secret is not None and secret.kind == "env":
            # unset: left as it is; the worker reports it for this host, as a local run would
            with contextlib.suppress(InputError):
                changes[name] = Secret("plain", secret.reveal(), secret.location)
    if host.ssh_key and host.ssh_key.startswith("~"):
        changes["ssh_key"] = os.path.expanduser(host.ssh_key)
    return replace(host, **changes) if changes else host


def portable_inventory(inventory: Inventory) -> Inventory:
    """The inventory with every host made portable."""
    hosts = {host_id: portable_host(host) for host_id, host in inventory.hosts.items()}
    return replace(inventory, hosts=MappingProxyType(hosts))


def connecting_for(options: Any, hosts: Iterable[Host]) -> Connecting:
    """What workers need to connect as this controller's ConnectOptions say: the known_hosts
    files' text (the project's first) and the key files the run's hosts name."""
    files: list[tuple[str, str]] = []
    for path in dict.fromkeys(options.known_hosts_files):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        if text or path == options.project_known_hosts:
            files.append((path, text))
    keys: dict[str, str] = {}
    for host in hosts:
        if host.ssh_key:
            path = os.path.expanduser(host.ssh_key)
            if path not in keys and os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    keys[path] = f.read()
    return Connecting(
        known_hosts=tuple(files),
        accept_new_host_keys=options.accept_new_host_keys,
        connect_timeout=options.connect_timeout,
        command_timeout=options.command_timeout,
        key_material=keys,
        unknown_key_advice=options.unknown_key_advice,
    )


def with_host_keys(connecting: Connecting, lines: str) -> Connecting:
    """`connecting` with host keys a worker accepted added to the project's file (the next
    shards trust them, as a local run's next connection would)."""
    if not connecting.known_hosts:
        return connecting
    (path, text), *rest = connecting.known_hosts
    return replace(connecting, known_hosts=((path, text + lines), *rest))


def append_host_keys(path: str, lines: str) -> None:
    """Host keys a worker accepted (--accept-new-host-keys), added to the project's file."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a+", encoding="utf-8") as f:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            lines = "\n" + lines  # the file's last line kept whole
        f.write(lines)


def merged_inventory(base: Inventory, sent: Inventory, changed: Inventory) -> Inventory:
    """`base` with what add_host / group_by made in `changed` (a shard's, from `sent`, the
    portable inventory the shard was given): hosts it added or changed (groups joined when
    several shards changed a host; our passwords kept), groups' members and children joined."""
    hosts = dict(base.hosts)
    for host_id, host in changed.hosts.items():
        mine = hosts.get(host_id)
        if mine is None:
            hosts[host_id] = host
        elif host != sent.hosts.get(host_id):
            joined = tuple(dict.fromkeys((*mine.groups, *host.groups)))
            hosts[host_id] = replace(
                host,
                groups=joined,
                password=mine.password,
                become_password=mine.become_password,
                ssh_key=mine.ssh_key,
            )
    groups = dict(base.groups)
    for name, group in changed.groups.items():
        mine_group = groups.get(name)
        if mine_group is None:
            groups[name] = group
        else:
            groups[name] = replace(
                mine_group,
                hosts=tuple(dict.fromkeys((*mine_group.hosts, *group.hosts))),
                children=tuple(dict.fromkeys((*mine_group.children, *group.children))),
            )
    return replace(base, hosts=MappingProxyType(hosts), groups=MappingProxyType(groups))


def secrets_carried(
    connecting: Connecting, hosts: Iterable[Host], vault_key: Any, known: Sequence[str]
) -> list[str]:
    """What secret a run would send to workers, in words (empty: none)."""
    found = []
    if vault_key is not None:
        found.append("the vault key")
    with_password = [h.id for h in hosts if h.password is not None or h.become_password is not None]
    if with_password:
        more = ", ..." if len(with_password) > 3 else ""
        found.append(f"passwords of {', '.join(with_password[:3])}{more}")
    if connecting.key_material:
        found.append(f"key file {next(iter(connecting.key_material))}")
    if known and not found:
        found.append("values decrypted while loading")
    return found


def refuse_plain(address: str, carried: Sequence[str], setting_source: str | None) -> None:
    """A tcp:// cluster would send `carried` in clear: a UsageError naming the setting."""
    where = f" (set in {setting_source})" if setting_source else ""
    raise UsageError(
        f"--cluster {address}{where}: this run carries secrets ({'; '.join(carried)}), which "
        "a tcp:// cluster would send in clear; use a tls:// address, with cluster_tls_ca, "
        "cluster_tls_cert and cluster_tls_key in machineroom.yml"
    )
