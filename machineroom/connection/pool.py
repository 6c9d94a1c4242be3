"""One persistent connection per host for a whole run, shared by worker threads.

`get(host)` opens a host's connection the first time, then hands out the same one after a cheap
health check (no round trip); a connection found dead is reopened once, and if that fails the
error (Unreachable, AuthFailed, ...) goes to the caller. `run()` also survives a session that
died between two commands: when the channel could not even be opened, the command never
started, so it reconnects and runs it once more. A command that was cut off after it started is
never repeated: that is the caller's decision.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType

from machineroom.connection.base import (
    Become,
    CommandResult,
    Connection,
    ConnectOptions,
    SessionDropped,
)
from machineroom.connection.command import hidden_output, hide_output, show_output
from machineroom.connection.output import Stdin
from machineroom.connection.registry import connection_factory
from machineroom.errors import Interrupted
from machineroom.inventory.model import Host, TunnelProfile

__all__ = ["ConnectionPool", "open_connection"]

_NO_TUNNELS: Mapping[str, TunnelProfile] = MappingProxyType({})

Opener = Callable[[Host, ConnectOptions, Mapping[str, TunnelProfile]], Connection]


def open_connection(
    host: Host,
    options: ConnectOptions | None = None,
    tunnels: Mapping[str, TunnelProfile] = _NO_TUNNELS,
) -> Connection:
    """An opened connection to `host`, of the type its `connection` names (registry.py).

    Raises UnknownConnectionType for a type nobody registered, and Unreachable, AuthFailed
    or HostKeyError when it cannot be opened.
    """
    conn = connection_factory(host)(host, options or ConnectOptions(), tunnels)
    conn.open()
    return conn


class ConnectionPool:
    """Connections by host id, opened on first use, reused, health-checked; thread-safe.

    Use as a context manager (or call `close_all()`) so every session is closed at the end.
    Each host's connection is made by the factory its `connection` type has in registry.py;
    `opener` replaces that lookup (register a type instead to add one for good).
    """

    def __init__(
        self,
        options: ConnectOptions | None = None,
        tunnels: Mapping[str, TunnelProfile] = _NO_TUNNELS,
        *,
        opener: Opener | None = None,
    ) -> None:
        self.options = options or ConnectOptions()
        self.tunnels = tunnels
        self._opener: Opener = opener or open_connection
        self._connections: dict[str, Connection] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts, never held while connecting
        self.opened = 0  # connections opened, reopens included (for reports and tests)
        self.stopping = False  # set by stop_commands(): no command starts any more

    def _host_lock(self, host_id: str) -> threading.Lock:
        with self._lock:
            return self._host_locks.setdefault(host_id, threading.Lock())

    def get(self, host: Host) -> Connection:
        """The host's open connection: reused when alive, (re)opened otherwise. Raises
        Interrupted once the run is stopping (`stop_commands`)."""
        if self.stopping:
            raise Interrupted(f"{host.id}: the run is stopping: nothing more is started")
        with self._host_lock(_key(host)):
            with self._lock:
                conn = self._connections.get(_key(host))
            if conn is not None and conn.is_alive():
                return conn
            return self._open(host, conn)

    def _open(self, host: Host, dead: Connection | None) -> Connection:
        """Open (or reopen once) under the host's lock; errors go to the caller."""
        if dead is not None:
            dead.close()
            with self._lock:
                self._connections.pop(_key(host), None)
        conn = self._opener(host, self.options, self.tunnels)
        with self._lock:
            # stop_commands() may have come while this one connected: it would not have seen
            # this connection, so nothing may start on it (checked under the lock it reads by)
            stopping = self.stopping
            if not stopping:
                self._connections[_key(host)] = conn
                self.opened += 1
        if stopping:
            conn.close()
            raise Interrupted(f"{host.id}: the run is stopping: nothing more is started")
        return conn

    def run(
        self,
        host: Host,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        become: Become | None = None,
        no_log: bool = False,
    ) -> CommandResult:
        """Run a command on the host's pooled connection, reconnecting once if the session
        had died before the command could start. `no_log`: the audit hook sees
        "(hidden: no_log)" instead of the command and its output."""
        with hidden_output(no_log):
            return self._run(host, command, stdin, timeout, become)

    def _run(
        self,
        host: Host,
        command: str,
        stdin: Stdin,
        timeout: float | None,
        become: Become | None,
    ) -> CommandResult:
        conn = self.get(host)
        try:
            return conn.run(command, stdin=stdin, timeout=timeout, become=become)
        except SessionDropped as e:
            if e.started:
                raise
        with self._host_lock(_key(host)):
            with self._lock:
                current = self._connections.get(_key(host))
            # Another thread may have reopened it already; otherwise reopen it now. A session
            # still alive (a channel the host was too slow to open) is never replaced: other
            # threads' commands run on it, and a second connection would not be faster.
            if current is None or not current.is_alive():
                current = self._open(host, current)
        if self.stopping:
            raise Interrupted(f"{host.id}: the run is stopping: nothing more is started")
        return current.run(command, stdin=stdin, timeout=timeout, become=become)

    def hide_output(self, host_id: str) -> None:
        """A no_log task of `host_id` starts in this thread: until `show_output`, the
        commands this thread runs (on any host: delegation) are audited as
        "(hidden: no_log)". Pair with `show_output` in a `finally`."""
        hide_output(host_id)

    def show_output(self, host_id: str) -> None:
        """The no_log task of `host_id` ended: its thread's commands are audited in full
        again. Safe to call when `hide_output` was not."""
        show_output(host_id)

    def stop_commands(self) -> None:
        """The run is stopping: no command starts from now on, and every command running
        now is killed on its host (by its tag, see ShellConnection.stop_commands), all hosts at
        once; their `run()` raises Interrupted. Returns when every host was asked."""
        self.stopping = True
        with self._lock:
            conns = list(self._connections.values())
        stoppers = [getattr(c, "stop_commands", None) for c in conns]
        threads = [threading.Thread(target=stop, daemon=True) for stop in stoppers if stop]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def close(self, host: Host) -> None:
        """Close one host's connection, if open."""
        with self._host_lock(_key(host)):
            with self._lock:
                conn = self._connections.pop(_key(host), None)
            if conn is not None:
                conn.close()

    def close_all(self) -> None:
        """Close every connection; the pool can be used again afterwards."""
        with self._lock:
            conns = list(self._connections.values())
            self._connections.clear()
        for conn in conns:
            conn.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._connections)

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()


def _key(host: Host) -> str:
    """One connection per host and way of reaching it (a play may run a host locally, a
    task may log in as another user: `remote_user`)."""
    return f"{host.id}@{host.connection}:{host.user or ''}:{host.port}"
