"""Connections to hosts: the protocol, the registry of connection types (registry.py), the
wrapper every type shares for become, timeouts and auditing (command.py), SSH
(paramiko), local, and the per-run pool.

Only this package imports paramiko, and only when an SSH connection is made:
`SSHConnection` and the host-key helpers load on first access, so `machineroom plan` or a
local run never pays paramiko's import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from machineroom.connection.base import (
    Become,
    BecomeFailed,
    CommandHook,
    CommandResult,
    Connection,
    ConnectOptions,
    SessionDropped,
)
from machineroom.connection.command import (
    DeadlinePassed,
    Exited,
    ShellConnection,
    hidden_output,
)
from machineroom.connection.local import LocalConnection
from machineroom.connection.pool import ConnectionPool, open_connection
from machineroom.connection.registry import (
    ConnectionFactory,
    UnknownConnectionType,
    connection_types,
    register,
    unregister,
)

if TYPE_CHECKING:
    from machineroom.connection.hostkeys import KnownHosts, fingerprint
    from machineroom.connection.ssh import SSHConnection

__all__ = [
    "Become",
    "BecomeFailed",
    "CommandHook",
    "CommandResult",
    "ConnectOptions",
    "Connection",
    "ConnectionFactory",
    "ConnectionPool",
    "DeadlinePassed",
    "Exited",
    "KnownHosts",
    "LocalConnection",
    "SSHConnection",
    "SessionDropped",
    "ShellConnection",
    "UnknownConnectionType",
    "connection_types",
    "fingerprint",
    "hidden_output",
    "open_connection",
    "register",
    "unregister",
]

_LAZY = {
    "SSHConnection": "machineroom.connection.ssh",
    "KnownHosts": "machineroom.connection.hostkeys",
    "fingerprint": "machineroom.connection.hostkeys",
}


def __getattr__(name: str) -> Any:
    """Load `SSHConnection` (and paramiko with it) only when it is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'machineroom.connection' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(module), name)
