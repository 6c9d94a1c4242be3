"""SSH connections over paramiko: connecting (ssh config, auth, jump hosts) and commands.

`ssh_target.SSHTarget` resolves `~/.ssh/config` (HostName, User, Port, IdentityFile,
ProxyJump) and holds the paramiko client; we give it `hostkeys.KnownHosts` as host key
policy, set TCP_NODELAY on the socket and prefer curve25519 key exchange. Each command execs
on a fresh session channel of the same transport, sends stdin, and reads stdout and stderr as
they come.

paramiko and socket exceptions are translated where they enter, in `_translating()`, into
Unreachable, AuthFailed and HostKeyError with one-line messages that never hold a secret.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

# first: it imports paramiko without invoke (see its docstring)
from machineroom.connection.ssh_target import SSHTarget, allow_match_exec

# isort: split
import paramiko
from paramiko.config import SSHConfig
from paramiko.ssh_exception import NoValidConnectionsError

from machineroom.connection.base import ConnectOptions, SessionDropped
from machineroom.connection.channel import (
    TimedOut,
    collect,
    guard_closes,
    own,
    release,
    send_stdin,
    wait_readable,
)
from machineroom.connection.command import DeadlinePassed, Exited, ShellConnection, Sinks
from machineroom.connection.hostkeys import (
    DEFAULT_USER_FILE,
    SYSTEM_FILE,
    KnownHosts,
    host_key_name,
)
from machineroom.connection.output import CappedOutput, Stdin
from machineroom.errors import AuthFailed, HostKeyError, InputError, MachineroomError, Unreachable
from machineroom.inventory.model import Host, TunnelProfile, TunnelType

__all__ = ["SSHConnection"]

_NO_TUNNELS: Mapping[str, TunnelProfile] = MappingProxyType({})
# paramiko's transport thread logs a traceback for a failed handshake; with no handler
# anywhere Python would print it on stderr. Our one-line errors say what happened.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
# curve25519 first: as secure as the post-quantum hybrid paramiko now prefers, cheaper on the
# controller's CPU, which bounds how fast many hosts connect (see issue 5).
KEEPALIVE_SECONDS = 30  # as ServerAliveInterval; NATs drop idle flows after minutes
_KEX_FIRST = ("curve25519-sha256", "curve25519-sha256@libssh.org")
# AES-GCM needs no separate MAC pass: the cheapest ciphers paramiko has.
_CIPHERS_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


# ---------------------------------------------------------------------------- ssh config

_ssh_configs: dict[str, tuple[tuple[int, int], SSHConfig]] = {}
_ssh_configs_lock = threading.Lock()


def _load_ssh_config(path: str | None) -> SSHConfig:
    """The parsed ssh config (the user's `~/.ssh/config` unless `path`), cached by mtime."""
    full = os.path.expanduser(path or "~/.ssh/config")
    try:
        st = os.stat(full)
    except OSError:
        if path:
            raise InputError(f"ssh config file {path} does not exist") from None
        return SSHConfig()
    stamp = (st.st_mtime_ns, st.st_size)
    with _ssh_configs_lock:
        hit = _ssh_configs.get(full)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    try:
        with open(full, encoding="utf-8", errors="replace") as f:
            text = f.read()
        allow_match_exec(text)
        parsed = SSHConfig.from_text(text)
    except (OSError, paramiko.ConfigParseError) as e:
        raise InputError(f"cannot read ssh config {full}: {e}") from None
    with _ssh_configs_lock:
        _ssh_configs[full] = (stamp, parsed)
    return parsed


def _split_server(server: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port` of a tunnel profile."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if server.count(":") == 1:
        host, port = server.split(":")
        if port.isdigit():
            return host, int(port)
    return server, default_port


# ---------------------------------------------------------------------------- host keys


class _VerifyingPolicy(paramiko.MissingHostKeyPolicy):
    """paramiko asks this about every key (the client holds none itself): check known_hosts."""

    def __init__(self, known: KnownHosts, host_id: str, what: str) -> None:
        self.known = known
        self.host_id = host_id
        self.what = what

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        """Raise HostKeyError unless the key is known (or recorded, when accepting new)."""
        self.known.check(self.host_id, hostname, key.get_name(), key.asbytes(), self.what)


def _known_hosts_for(options: ConnectOptions, ssh_config: Mapping[str, Any]) -> KnownHosts:
    user_files = ssh_config.get("userknownhostsfile")
    users = user_files.split() if isinstance(user_files, str) else [DEFAULT_USER_FILE]
    record_to = options.project_known_hosts or (
        options.known_hosts_files[0] if options.known_hosts_files else users[0]
    )
    files = [*options.known_hosts_files, *users, SYSTEM_FILE]
    return KnownHosts(
        files,
        record_to=record_to,
        accept_new=options.accept_new_host_keys,
        advice=options.unknown_key_advice,
        shown_as=options.known_hosts_shown_as,
    )


# ---------------------------------------------------------------------------- connection


class SSHConnection(ShellConnection):
    """One persistent SSH session to one host (optionally through a jump host).

    `open()` connects and authenticates, each command runs on a new channel of the same
    transport (`exec_command`), `close()` ends it. Become, timeouts, killing and auditing are
    ShellConnection's (command.py). Safe to share between threads: paramiko multiplexes
    channels.
    """

    def __init__(
        self,
        host: Host,
        options: ConnectOptions | None = None,
        tunnels: Mapping[str, TunnelProfile] = _NO_TUNNELS,
        *,
        role: str = "",
    ) -> None:
        super().__init__(host, options)
        self.tunnels = tunnels
        self.role = role  # "" for the host itself, "jump host 'x'" for a gateway
        # the SSHTarget once open (the name is older than the class: exec_command reads it)
        self._fabric: SSHTarget | None = None
        self._jump: SSHConnection | None = None
        self._open_lock = threading.Lock()
        self._target = f"{host.host}:{host.port}"
        self._tunnel_hint = ""
        self._tried: list[str] = []
        self._user = host.user or "?"

    # ------------------------------------------------------------------ open / close

    def open(self) -> None:
        """Connect and authenticate; raises Unreachable, AuthFailed or HostKeyError."""
        with self._open_lock:
            if self.is_alive():
                return
            self._close_quietly()
            gateway = self._open_jump()
            try:
                conn = self._make_target(gateway)
                self._fabric = conn
                with self._translating():
                    conn.open()
            except BaseException:
                self._close_quietly()
                raise

    def _open_jump(self) -> SSHTarget | None:
        """The opened gateway target for the host's SSH tunnel profile, if any."""
        name = self.host.tunnel
        if not name:
            return None
        profile = self.tunnels.get(name)
        if profile is None:
            raise InputError(
                f"host {self.host.id}: tunnel profile '{name}' is not defined",
                self.host.location,
                "a `#name--SSH--server--user--password` line or a `tunnels:` entry",
            )
        if profile.type is not TunnelType.SSH:
            # A VPN (L2TP/IPsec, WireGuard, ...) is the workstation's business: when it is up,
            # the host is routable and we connect directly; when not, say what to do.
            self._tunnel_hint = (
                f" (the host sits behind tunnel '{name}' of type {profile.type.value}, which "
                f"machineroom does not bring up: connect it first)"
            )
            return None
        server, port = _split_server(profile.server, profile.port)
        jump_host = Host(
            id=self.host.id,
            host=server,
            port=port,
            user=profile.user,
            password=profile.password,
            ssh_key=profile.ssh_key,
            vars=self.host.vars,
            location=profile.location,
        )
        jump = SSHConnection(jump_host, self.options, _NO_TUNNELS, role=f"jump host '{name}'")
        jump.open()
        self._jump = jump
        return jump._fabric

    def _make_target(self, gateway: SSHTarget | None) -> SSHTarget:
        host = self.host
        conn = SSHTarget(
            host.host,
            _load_ssh_config(self.options.ssh_config_file),
            user=host.user or None,
            # Port 22 is the inventory's default: let a `Port` in ~/.ssh/config apply then.
            port=host.port if host.port != 22 else None,
            gateway=gateway,
        )
        if gateway is None and conn.gateway:
            if isinstance(conn.gateway, str):
                raise InputError(
                    f"host {host.id}: ~/.ssh/config gives it a ProxyCommand, which machineroom "
                    f"does not run; use a ProxyJump or an SSH tunnel profile"
                )
            # A ProxyJump from ~/.ssh/config: SSHTarget built the hops, we make them verify keys.
            hop: SSHTarget | str | None = conn.gateway
            while isinstance(hop, SSHTarget):
                self._secure(hop, f"jump host '{hop.original_host}'", own=False)
                hop = hop.gateway
        self._secure(conn, self.role, own=True)
        self._target = f"{conn.host}:{conn.port}"
        if gateway is not None and self._jump is not None:
            self._target += f" through {self._jump.role}"
        return conn

    def _secure(self, conn: SSHTarget, role: str, *, own: bool) -> None:
        """Give a target our host key policy, timeouts, credentials and socket.

        `own` is False for ProxyJump hops from ~/.ssh/config: the host's password and key are
        not theirs (they authenticate with their own IdentityFile, the agent or default keys).
        """
        host, options = self.host, self.options
        ssh_config = conn.ssh_config
        known = _known_hosts_for(options, ssh_config)
        conn.client.set_missing_host_key_policy(_VerifyingPolicy(known, host.id, role))
        key_types = known.key_types_for(host_key_name(conn.host, conn.port))
        only_identities = str(ssh_config.get("identitiesonly", "no")).lower() == "yes"
        kwargs: dict[str, Any] = dict(conn.connect_kwargs)
        keys: list[str] = []
        if host.ssh_key and own and os.path.expanduser(host.ssh_key) in options.key_material:
            text = options.key_material[os.path.expanduser(host.ssh_key)]
            kwargs["pkey"] = _key_from_text(text, host.id)
        elif host.ssh_key and own:
            path = os.path.expanduser(host.ssh_key)
            if not os.path.isfile(path):
                raise AuthFailed(host.id, f"{role + ': ' if role else ''}key file {path} not found")
            keys.append(path)
        for k in kwargs.get("key_filename", []):
            path = os.path.expanduser(k)
            # OpenSSH skips IdentityFile entries that do not exist; paramiko would crash on them.
            if os.path.isfile(path) and path not in keys:
                keys.append(path)
        kwargs["key_filename"] = keys
        kwargs["allow_agent"] = options.use_agent and not only_identities
        kwargs["look_for_keys"] = not only_identities
        if host.password is not None and own:
            kwargs["password"] = host.password.reveal(options.decrypt)
        timeout = self.connect_timeout
        kwargs.update(
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            transport_factory=self._transport_factory(key_types),
        )
        conn.connect_kwargs = kwargs
        if own:
            self._tried = [*keys]
            if kwargs["allow_agent"] and os.environ.get("SSH_AUTH_SOCK"):
                self._tried.append("agent")
            if kwargs["look_for_keys"]:
                for name in ("id_rsa", "id_ecdsa", "id_ed25519"):
                    path = os.path.expanduser(f"~/.ssh/{name}")
                    if os.path.isfile(path) and path not in keys:
                        self._tried.append(path)
            if host.password is not None:
                self._tried.append("password")
            self._user = conn.user or "?"

    def _transport_factory(self, known_key_types: list[str]) -> Any:
        nodelay = self.options.tcp_nodelay

        def make(sock: Any, **kwargs: Any) -> Any:
            if isinstance(sock, socket.socket):
                self._expect_banner(sock)
            if nodelay and isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = paramiko.Transport(sock, **kwargs)
            guard_closes(transport)
            # A session idle while other hosts work must not be dropped by a NAT or firewall
            # on the way: the pool keeps a live session rather than opening a second one.
            transport.set_keepalive(KEEPALIVE_SECONDS)
            opts = transport.get_security_options()
            opts.kex = _reorder(opts.kex, _KEX_FIRST)
            opts.ciphers = _reorder(opts.ciphers, _CIPHERS_FIRST)
            if known_key_types:
                # Ask for the key type we already know, as OpenSSH does, so that a host known by
                # its ECDSA key is not mistaken for a changed one when it offers ED25519 first.
                wanted = [t for t in known_key_types if t in opts.key_types]
                if "ssh-rsa" in known_key_types:
                    wanted += [t for t in ("rsa-sha2-512", "rsa-sha2-256") if t in opts.key_types]
                opts.key_types = _reorder(opts.key_types, tuple(wanted))
            return transport

        return make

    def _expect_banner(self, sock: socket.socket) -> None:
        """Unreachable, in one line, unless the server sends its SSH banner in time.

        paramiko's own wait races the connect timeout and ends in "No existing session"
        (and a traceback from its thread), so the banner is awaited here first.
        """
        timeout = self.connect_timeout
        found, said = _await_banner(sock, timeout)
        if found:
            return
        peer = None
        with contextlib.suppress(OSError):
            peer = sock.getpeername()
        sock.close()
        where = f"{peer[0]}:{peer[1]}" if peer else self._target
        prefix = f"{self.role}: " if self.role else ""
        first = said.split(b"\n", 1)[0].strip().decode("utf-8", errors="replace")[:60]
        sent = f" (it sent {first!r})" if first else ""
        raise Unreachable(
            self.host.id,
            f"{prefix}{where} did not answer with an SSH banner within {timeout:g} s{sent}",
        )

    def is_alive(self) -> bool:
        """True while the transport is up (no round trip: paramiko's reader notices EOF)."""
        conn = self._fabric
        if conn is None:
            return False
        transport = conn.client.get_transport()
        return transport is not None and bool(transport.is_active())

    def close(self) -> None:
        """Close the session (and the jump host's); safe to call twice."""
        with self._open_lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        conn: SSHTarget | str | None = self._fabric
        self._fabric = None
        jump, self._jump = self._jump, None
        # The host's own client, then any ProxyJump hops built from ~/.ssh/config (a jump
        # host from a tunnel profile is our own SSHConnection, closed below).
        while isinstance(conn, SSHTarget) and conn is not (jump._fabric if jump else None):
            # closing a broken transport may raise anything; it is gone either way
            with contextlib.suppress(Exception):
                conn.client.close()
            conn = conn.gateway
        if jump is not None:
            jump.close()

    # ------------------------------------------------------------------ errors

    @contextmanager
    def _translating(self) -> Iterator[None]:
        """Turn paramiko's and socket's exceptions into ours, with one-line messages."""
        host_id, role = self.host.id, self.role
        prefix = f"{role}: " if role else ""
        where = f"cannot connect to {self._target}"
        try:
            yield
        except MachineroomError:
            raise
        except paramiko.BadHostKeyException as e:
            raise HostKeyError(host_id, f"{prefix}host key mismatch for {e.hostname}") from None
        except paramiko.PasswordRequiredException:
            raise AuthFailed(
                host_id,
                f"{prefix}user {self._user}: a private key is passphrase-protected; load it into "
                f"ssh-agent (ssh-add KEY) (tried: {', '.join(self._tried)})",
            ) from None
        except paramiko.BadAuthenticationType as e:
            allowed = ", ".join(e.allowed_types) or "nothing"
            raise AuthFailed(
                host_id,
                f"{prefix}user {self._user}: server accepts only {allowed} "
                f"(we had: {', '.join(self._tried) or 'no credentials'})",
            ) from None
        except paramiko.AuthenticationException:
            raise AuthFailed(host_id, prefix + self._auth_failure()) from None
        except NoValidConnectionsError as e:
            reasons = {_socket_reason(x) for x in e.errors.values()}
            raise Unreachable(
                host_id, f"{prefix}{where}: {'; '.join(sorted(reasons))}{self._tunnel_hint}"
            ) from None
        except paramiko.ChannelException as e:
            raise Unreachable(
                host_id,
                f"{where}: the jump host could not reach it ({e.text.lower()})",
            ) from None
        except (paramiko.SSHException, EOFError) as e:
            text = str(e) or type(e).__name__
            if "No authentication methods" in text:
                raise AuthFailed(host_id, prefix + self._auth_failure()) from None
            if "banner" in text:
                text = "no SSH banner (is it an SSH server? is it overloaded?)"
            raise Unreachable(host_id, f"{prefix}{where}: {text}{self._tunnel_hint}") from None
        except OSError as e:
            raise Unreachable(
                host_id, f"{prefix}{where}: {_socket_reason(e)}{self._tunnel_hint}"
            ) from None

    def _auth_failure(self) -> str:
        tried = self._tried
        user = f"user {self._user}"
        if tried == ["password"]:
            return f"{user}: password rejected"
        if not tried:
            return (
                f"{user}: no credentials to try (give a password or ssh_key in the inventory, "
                f"or load a key into ssh-agent)"
            )
        if "password" in tried:
            return f"{user}: password and keys rejected (tried: {', '.join(tried)})"
        return f"{user}: no key accepted (tried: {', '.join(tried)})"

    # ------------------------------------------------------------------ commands

    def ensure_open(self) -> None:
        """Open the session on the first command."""
        if self._fabric is None:
            self.open()

    streams_output = True

    def exec_command(
        self,
        wire: str,
        prefix: bytes,
        stdin: Stdin,
        timeout: float | None,
        tag: str | None,
        sinks: Sinks | None = None,
    ) -> Exited:
        """Exec `wire` on a new channel of the session, `prefix` then `stdin` on its stdin."""
        host_id = self.host.id
        start = time.monotonic()
        conn = self._fabric
        transport = conn.client.get_transport() if conn is not None else None
        if transport is None or not transport.is_active():
            raise SessionDropped(host_id, "the SSH session is closed", started=False)
        try:
            chan = own(transport.open_session(timeout=self.connect_timeout))
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SessionDropped(
                host_id,
                f"the SSH session dropped before the command: {e or type(e).__name__}",
                started=False,
            ) from None
        stdout, stderr = sinks or (CappedOutput(), CappedOutput())
        feeder = None
        try:
            try:
                chan.exec_command(wire)
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise SessionDropped(
                    host_id,
                    f"the SSH session dropped starting the command: {e or type(e).__name__}",
                    started=True,
                ) from None
            feeder = send_stdin(chan, prefix, stdin)
            deadline = None if timeout is None else start + timeout
            code = collect(chan, deadline, stdout, stderr)
        except TimedOut:
            raise DeadlinePassed from None
        finally:
            release(chan, feeder)
        lost = None
        if code == -1 and not transport.is_active():
            lost = f"connection to {self._target} lost during the command"
        local_error = feeder.local_error if feeder is not None else None
        # -1: no exit status, the command was killed (by stop_commands, when stopping)
        return Exited(code, stdout.text(), stderr.text(), code == -1, lost, local_error)

    def __repr__(self) -> str:
        state = "open" if self.is_alive() else "closed"
        return f"<SSHConnection {self.host.id} {self._target} {state}>"


# ---------------------------------------------------------------------------- helpers


def _key_from_text(text: str, host_id: str) -> Any:
    """A private key given as text (never written to disk): OpenSSH or PEM, any type."""
    import io

    import paramiko

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise AuthFailed(host_id, "the key file is encrypted (use ssh-agent)") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise AuthFailed(host_id, "the key file given with the run is not a private key")


def _reorder(current: Any, first: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(current)
    head = tuple(x for x in first if x in items)
    return head + tuple(x for x in items if x not in head)


def _await_banner(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Wait until the server's version line (`SSH-...`) is next on `sock`, consuming the
    lines a server may send before it (RFC 4253 4.2). (True, b"") then; else (False, the
    first bytes it sent instead) once the time is up or the server closed."""
    deadline = time.monotonic() + timeout
    said = b""
    mid_line = False  # inside a line that did not start with SSH-
    for _ in range(1000):  # lines or pieces of them: a server talking forever is not SSH
        left = deadline - time.monotonic()
        if left <= 0 or not wait_readable(sock.fileno(), left):
            return False, said
        try:
            data = sock.recv(4096, socket.MSG_PEEK)
        except OSError:
            return False, said
        if not data:
            return False, said  # closed
        if not mid_line and data.startswith(b"SSH-"):
            return True, b""
        if not mid_line and len(data) < 4 and b"SSH-".startswith(data):
            time.sleep(0.01)  # the start of a banner: wait for the rest of it
            continue
        end = data.find(b"\n")
        taken = sock.recv(end + 1 if end >= 0 else len(data))
        mid_line = end < 0
        if len(said) < 200:
            said += taken[: 200 - len(said)]
    return False, said


def _socket_reason(e: BaseException) -> str:
    if isinstance(e, socket.gaierror):
        return "name not resolved"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if getattr(e, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route to host"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
