"""The inventory model: hosts, groups, tunnel profiles and secrets, as frozen plain data.

Both inventory formats (YAML and the server-list text) load into these classes. Group
inheritance and variable precedence are resolved once, at load, into `Host.vars` with
`Host.var_sources` saying where each value came from.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

from machineroom.errors import InputError, Location
from machineroom.masking import add_secret

SecretKind = Literal["plain", "env", "vault"]
VAULT_PREFIX = "$MACHINEROOM_VAULT;"


@dataclass(frozen=True, repr=False)
class Secret:
    """A password as the user wrote it: plain text, an environment variable, or vault ciphertext.

    `reveal()` gives the plain value only when a connection needs it; `reference()` is what may
    be stored in the database or shown (never the plain value); `repr` masks everything.
    """

    kind: SecretKind
    value: str  # plain: the password; env: the variable's name; vault: the ciphertext
    location: Location | None = None

    def reveal(self, decrypt: Callable[[str], str] | None = None) -> str:
        """The plain password. `decrypt` turns vault ciphertext into text (it holds the key).

        The value is registered as a secret of the process: masked wherever it would leave.
        """
        plain = self._plain(decrypt)
        add_secret(plain)
        return plain

    def _plain(self, decrypt: Callable[[str], str] | None) -> str:
        if self.kind == "plain":
            return self.value
        if self.kind == "env":
            try:
                return os.environ[self.value]
            except KeyError:
                raise InputError(
                    f"environment variable {self.value} is not set",
                    self.location,
                    f"{self.value} exported before running machineroom",
                ) from None
        if decrypt is None:
            raise InputError(
                "this password is vault-encrypted and no vault password was given",
                self.location,
                "--vault-password-file FILE, $MACHINEROOM_VAULT_PASSWORD or --ask-vault-password",
            )
        return decrypt(self.value)

    def reference(self) -> str | None:
        """A safe description for storage: `env:NAME`, `vault`, or None for plain text."""
        if self.kind == "env":
            return f"env:{self.value}"
        if self.kind == "vault":
            return "vault"
        return None

    def __repr__(self) -> str:
        return f"Secret({self.kind}, {self.reference() or '***'})"

    __str__ = __repr__


class TunnelType(Enum):
    """Tunnel profile types of the server-list format. Only SSH (a jump host) is driven by us."""

    L2TP_IPSEC = "L2TP/IPSEC"
    CISCO_IPSEC = "CISCO/IPSEC"
    IKEV2 = "IKEV2"
    WIREGUARD = "WIREGUARD"
    PPTP = "PPTP"
    SSH = "SSH"

    @classmethod
    def parse(cls, text: str) -> TunnelType | None:
        """Recognise a type name case-insensitively (`l2tp/ipsec`, `ssh`, ...); None if unknown."""
        wanted = text.strip().upper().replace(" ", "")
        for member in cls:
            if member.value == wanted or member.name == wanted:
                return member
        return None


@dataclass(frozen=True)
class TunnelProfile:
    """A named way to reach hosts behind something. Type SSH is a jump host (ProxyJump)."""

    name: str
    type: TunnelType
    server: str  # host or host:port
    user: str | None = None
    password: Secret | None = None
    port: int = 22
    ssh_key: str | None = None
    location: Location | None = None


@dataclass(frozen=True)
class Host:
    """One server, with every field and var resolved (group vars < host vars)."""

    id: str
    host: str
    user: str | None = None
    password: Secret | None = None
    port: int = 22
    ssh_key: str | None = None
    description: str = ""
    tunnel: str | None = None
    become_password: Secret | None = None
    # the connection type, a name in connection/registry.py ("ssh", "local", ...)
    connection: str = "ssh"
    groups: tuple[str, ...] = ("all",)
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    var_sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    location: Location | None = None
    # where each field (`port`, `tunnel`, `ssh_key`, ...) was written, for errors found later
    field_locations: Mapping[str, Location] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def address(self) -> str:
        """`user@host:port` for messages."""
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.host}:{self.port}"

    @property
    def connection_settings(self) -> ConnectionSettings:
        """What this host's connection reads, in one value (see ConnectionSettings)."""
        own = f"ansible_{self.connection}_"
        chosen = {
            name: value
            for name, value in self.vars.items()
            if name in CONNECTION_VAR_NAMES
            or name.startswith(own)
            or name.startswith(CONNECTION_VAR_PREFIXES)
        }
        return ConnectionSettings(
            type=self.connection,
            address=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            ssh_key=self.ssh_key,
            tunnel=self.tunnel,
            connect_timeout=_seconds(self.vars.get("connect_timeout")),
            command_timeout=_seconds(self.vars.get("command_timeout")),
            vars=MappingProxyType(chosen),
        )


# Host vars that belong to the connection rather than to tasks: Ansible's per-transport
# variables (`ansible_ssh_common_args`, `ansible_docker_extra_args`, ...) and our timeouts.
# The loaders keep them in `Host.vars` as they always did; ConnectionSettings gathers them.
CONNECTION_VAR_PREFIXES = (
    "ansible_ssh_",
    "ansible_scp_",
    "ansible_sftp_",
    "ansible_paramiko_",
    "ansible_docker_",
    "ansible_local_",
)
CONNECTION_VAR_NAMES = frozenset(
    {
        "connect_timeout",
        "command_timeout",
        "ansible_timeout",
        "ansible_shell_type",
        "ansible_shell_executable",
    }
)


@dataclass(frozen=True)
class ConnectionSettings:
    """A host's settings for its connection, grouped so that a transport reads its own.

    The common ones are fields (where, as whom, how long to wait); everything a particular
    transport may want is in `vars` by its inventory name, and `for_transport("docker")` gives
    `ansible_docker_*` without the prefix (`extra_args`). Built from the Host on access: the
    Host's flat fields stay what modules and loaders use.
    """

    type: str
    address: str
    port: int = 22
    user: str | None = None
    password: Secret | None = None
    ssh_key: str | None = None
    tunnel: str | None = None
    connect_timeout: float | None = None  # seconds; None: the run's default
    command_timeout: float | None = None
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def for_transport(self, name: str) -> Mapping[str, Any]:
        """The vars named `ansible_<name>_...`, keyed by the rest of the name."""
        prefix = f"ansible_{name}_"
        return MappingProxyType(
            {k[len(prefix) :]: v for k, v in self.vars.items() if k.startswith(prefix)}
        )


def _seconds(value: Any) -> float | None:
    """A timeout var as seconds; None when absent, zero or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number or None


@dataclass(frozen=True)
class Group:
    """A named set of hosts; `children` are group names, `hosts` the direct member ids."""

    name: str
    hosts: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    location: Location | None = None


@dataclass(frozen=True)
class InventoryWarning:
    """Something that works but should not be so, e.g. a plaintext password."""

    message: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


@dataclass(frozen=True)
class Inventory:
    """Everything an inventory file (or folder) says. Host and group order is file order."""

    source: str
    hosts: Mapping[str, Host]
    groups: Mapping[str, Group]
    tunnels: Mapping[str, TunnelProfile] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[InventoryWarning, ...] = ()

    def register_secrets(self) -> None:
        """Register every password that can be known without the vault (plain ones, and
        environment variables that are set) as secrets of the process, before anything is
        recorded or shown; vault ones are registered when they are decrypted."""
        secrets = [
            *(s for h in self.hosts.values() for s in (h.password, h.become_password)),
            *(t.password for t in self.tunnels.values()),
        ]
        for secret in secrets:
            if secret is not None and secret.kind != "vault":
                with contextlib.suppress(InputError):  # unset: its host reports it
                    secret.reveal()

    def host(self, host_id: str) -> Host:
        """The host with this id; an InputError naming close ids when there is none."""
        from machineroom.errors import did_you_mean

        try:
            return self.hosts[host_id]
        except KeyError:
            raise InputError(
                f"no host '{host_id}' in {self.source}" + did_you_mean(host_id, self.hosts),
            ) from None
