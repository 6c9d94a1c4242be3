"""Host keys a run refused, for the application's front ends: is such a key known now, and
trust exactly it (connection/hostkeys.py does the reading and the locked write).

A run records the keys it refused in `runs.summary.host_keys` (state/recorder.py); the
dashboard shows them and an admin may trust an unknown one (web/hostkeys.py).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from machineroom.connection.hostkeys import (
    DEFAULT_USER_FILE,
    SYSTEM_FILE,
    KnownHosts,
    fingerprint,
    host_key_name,
    remove_command,
    trust_key,
)
from machineroom.errors import InputError
from machineroom.inventory.model import Inventory, TunnelType

__all__ = [
    "expected_key_names",
    "key_blob",
    "key_fingerprint",
    "key_is_known",
    "remove_command",
    "run_known_hosts",
    "trust_host_key",
]


def run_known_hosts(files: Sequence[str]) -> tuple[str, ...]:
    """Every known_hosts file a run given `files` reads: those, the user's and the
    system's (connection/ssh.py reads the same list)."""
    return tuple(dict.fromkeys((*files, DEFAULT_USER_FILE, SYSTEM_FILE)))


def expected_key_names(inventory: Inventory, host_id: str) -> list[str]:
    """The known_hosts names a run connecting to `host_id` checks keys under, as the
    inventory says now: the host's address and port, and its SSH jump host's."""
    from machineroom.connection.ssh import _split_server

    host = inventory.hosts.get(host_id)
    if host is None:
        return []
    names = [host_key_name(host.host, host.port)]
    profile = inventory.tunnels.get(host.tunnel) if host.tunnel else None
    if profile is not None and profile.type is TunnelType.SSH:
        names.append(host_key_name(*_split_server(profile.server, profile.port)))
    return names


def key_blob(key: str) -> bytes:
    """The key's bytes from its base64 text; InputError when it is not base64."""
    try:
        return base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("a host key that is not base64") from None


def key_fingerprint(key: str) -> str:
    """The key's SHA256 fingerprint as `ssh-keygen -lf` prints it."""
    return fingerprint(key_blob(key))


def key_is_known(files: Sequence[str], name: str, key: str) -> bool:
    """Whether one of `files` holds this key for the known_hosts name `name` (not revoked)."""
    blob = key_blob(key)
    return any(e.marker is None and e.blob == blob for e in KnownHosts(files).entries_for(name))


def trust_host_key(path: str, name: str, key_type: str, key: str, also: Sequence[str] = ()) -> bool:
    """Add `name key_type key` to the known_hosts file `path` (0600, its folder 0700); False
    when it or one of `also` (the other files a run reads) already holds that key.
    HostKeyError when one holds another key for `name`; InputError for a name that is not a
    plain host name or `[host]:port`, or a key not of a host key type."""
    return trust_key(path, name, key_type, key_blob(key), also)
