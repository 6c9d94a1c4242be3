"""Host keys a run refused, for the application's front ends: is such a key known now, and
trust exactly it (connection/hostkeys.py does the reading and the locked write).

A run records the keys it refused in `runs.summary.host_keys` (state/recorder.py); the
dashboard shows them and an admin may trust an unknown one (web/hostkeys.py).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from machineroom.connection.hostkeys import KnownHosts, fingerprint, trust_key
from machineroom.errors import InputError


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


def trust_host_key(path: str, name: str, key_type: str, key: str) -> bool:
    """Add `name key_type key` to the known_hosts file `path` (0600, its folder 0700); False
    when it already holds that key. HostKeyError when it holds another key for `name`."""
    return trust_key(path, name, key_type, key_blob(key))
