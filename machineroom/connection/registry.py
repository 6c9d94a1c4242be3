"""Connection types by name: what `connection:` (`ansible_connection`) in the inventory, a
play or a task selects, and the factory that makes such a connection.

`ssh` and `local` are registered here; Ansible's other names for SSH that inventories may
use (`paramiko`, `smart`) are aliases of `ssh`. A new type is a class with the transport part
(a ShellConnection subclass, see command.py) and one call:

    register("docker", lambda host, options, tunnels: DockerConnection(host, options))

Tests register a fake the same way (`register("fake", factory)`, then `unregister("fake")`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from machineroom.connection.base import Connection, ConnectOptions
from machineroom.errors import InputError
from machineroom.inventory.model import Host, TunnelProfile

__all__ = [
    "ConnectionFactory",
    "UnknownConnectionType",
    "connection_factory",
    "connection_types",
    "register",
    "resolve_type",
    "unregister",
]

# Makes an unopened connection to a host; the pool opens it.
ConnectionFactory = Callable[[Host, ConnectOptions, Mapping[str, TunnelProfile]], Connection]

_factories: dict[str, ConnectionFactory] = {}
_aliases: dict[str, str] = {}  # another name -> the registered type it means
_lock = threading.Lock()


class UnknownConnectionType(InputError):
    """A host's connection type is none the registry knows."""

    def __init__(self, host: Host, value: str, known: tuple[str, ...]) -> None:
        self.host_id = host.id
        self.value = value
        self.known = known
        where = host.field_locations.get("connection") or host.location
        super().__init__(
            f"host {host.id}: unknown connection type '{value}'",
            where,
            "one of " + ", ".join(known),
        )


def register(name: str, factory: ConnectionFactory, *, aliases: tuple[str, ...] = ()) -> None:
    """Make `connection: NAME` (and each alias) open connections made by `factory`.
    Registering a name again replaces its factory."""
    with _lock:
        _factories[name] = factory
        _aliases.pop(name, None)
        for alias in aliases:
            _aliases[alias] = name


def unregister(name: str) -> None:
    """Forget a type and its aliases (tests' fakes); the built-in ones may be removed too."""
    with _lock:
        _factories.pop(name, None)
        for alias in [a for a, target in _aliases.items() if target == name]:
            del _aliases[alias]


def connection_types() -> tuple[str, ...]:
    """Every accepted name, registered types first, then aliases, each sorted."""
    with _lock:
        return (*sorted(_factories), *sorted(_aliases))


def resolve_type(name: str) -> str | None:
    """The registered type `name` means (itself, or what it is an alias of); None if none."""
    with _lock:
        if name in _factories:
            return name
        return _aliases.get(name)


def connection_factory(host: Host) -> ConnectionFactory:
    """The factory for the host's `connection`; UnknownConnectionType (an InputError naming
    the host, the value and the known types) when no type of that name is registered."""
    with _lock:
        factory = _factories.get(_aliases.get(host.connection, host.connection))
    if factory is None:
        raise UnknownConnectionType(host, host.connection, connection_types())
    return factory


def _ssh(host: Host, options: ConnectOptions, tunnels: Mapping[str, TunnelProfile]) -> Connection:
    # Imported here: paramiko takes ~0.1 s to import, which a run that needs no
    # SSH (plan, validate, local) should not pay.
    from machineroom.connection.ssh import SSHConnection

    return SSHConnection(host, options, tunnels)


def _local(host: Host, options: ConnectOptions, tunnels: Mapping[str, TunnelProfile]) -> Connection:
    from machineroom.connection.local import LocalConnection

    return LocalConnection(host, options)


def _sim(host: Host, options: ConnectOptions, tunnels: Mapping[str, TunnelProfile]) -> Connection:
    from machineroom.connection.sim import SimConnection

    return SimConnection(host, options)


register("ssh", _ssh, aliases=("paramiko", "smart"))
register("local", _local)
register("sim", _sim)  # a simulated host, for capacity planning (connection/sim.py)
