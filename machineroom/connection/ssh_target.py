"""One SSH endpoint as `~/.ssh/config` resolves it, and the paramiko client that reaches it.

This is the part of Fabric's `Connection` that machineroom used (issue 13): HostName, User,
Port, IdentityFile, ProxyJump hops (each hop an `SSHTarget` of its own) and ProxyCommand
(reported, never run), then `SSHClient.connect`, through a `direct-tcpip` channel of the
gateway when there is one. Fabric brought invoke with it, and invoke brings unittest.mock and
asyncio: ~0.15 s of every run's start-up for code no run called.

Importing this module imports paramiko without invoke. paramiko imports invoke only to run
an ssh config's `Match exec` (it imports it whenever it is installed, used or not);
`allow_match_exec` hands it over when a config file has such a line.
"""

from __future__ import annotations

import getpass
import re
import sys
from typing import Any


def _import_paramiko_without_invoke() -> None:
    """Import paramiko with `import invoke` failing, unless something imported invoke before."""
    if "paramiko" in sys.modules or "invoke" in sys.modules:
        return
    sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` raises ImportError
    try:
        import paramiko  # noqa: F401
    finally:
        if sys.modules.get("invoke", False) is None:
            del sys.modules["invoke"]


_import_paramiko_without_invoke()

import paramiko  # noqa: E402
from paramiko.config import SSHConfig  # noqa: E402

__all__ = ["SSHTarget", "allow_match_exec"]

_MATCH_EXEC = re.compile(r"^\s*match\s.*\bexec\b", re.IGNORECASE | re.MULTILINE)


def allow_match_exec(config_text: str) -> None:
    """Give paramiko invoke, which it runs `Match exec` commands with, if the text uses it."""
    config_module: Any = sys.modules["paramiko.config"]
    if config_module.invoke is None and _MATCH_EXEC.search(config_text):
        import invoke

        config_module.invoke = invoke


def _local_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER/$LOGNAME
        return None


def _shorthand(text: str) -> tuple[str | None, str, int | None]:
    """`user@host:port` of a ProxyJump hop (IPv6 addresses carry no port), as OpenSSH reads it."""
    user, _, hostport = text.rpartition("@")
    if hostport.count(":") > 1:
        return user or None, hostport, None
    host, _, port = hostport.partition(":")
    return user or None, host, int(port) if port else None


class SSHTarget:
    """A host, user and port after `~/.ssh/config`, its gateway, and an unconnected client.

    `gateway` is None when the ssh config names none, another `SSHTarget` for a jump host
    (given, or built from ProxyJump) or the ProxyCommand string the config gives. The client
    has paramiko's default policy (reject unknown keys) until the caller sets its own.
    """

    def __init__(
        self,
        host: str,
        config: SSHConfig,
        *,
        user: str | None = None,
        port: int | None = None,
        gateway: SSHTarget | None = None,
    ) -> None:
        self.original_host = host
        self.ssh_config: Any = config.lookup(host)
        self.host: str = self.ssh_config.get("hostname", host)
        self.user: str | None = user or self.ssh_config.get("user") or _local_user()
        self.port: int = port or int(self.ssh_config.get("port", 22))
        self.gateway: SSHTarget | str | None = (
            gateway if gateway is not None else self._configured_gateway(config)
        )
        keys: str | list[str] = self.ssh_config.get("identityfile") or []
        # what SSHClient.connect receives besides host, port, user and sock
        self.connect_kwargs: dict[str, Any] = {}
        if keys:
            self.connect_kwargs["key_filename"] = [keys] if isinstance(keys, str) else list(keys)
        self.client = paramiko.SSHClient()

    def _configured_gateway(self, config: SSHConfig) -> SSHTarget | str | None:
        """ProxyJump hops, chained as Fabric chained them, or the ProxyCommand string."""
        if "proxyjump" in self.ssh_config:
            previous: SSHTarget | None = None
            for hop in reversed(self.ssh_config["proxyjump"].split(",")):
                user, host, port = _shorthand(hop.strip())
                if host == self.host:  # a wildcard Host block made the hop its own jump host
                    return None
                previous = SSHTarget(host, config, user=user, port=port, gateway=previous)
            return previous
        proxy_command = self.ssh_config.get("proxycommand")
        return str(proxy_command) if proxy_command else None

    def transport(self) -> Any:
        """The client's transport; None before `open`."""
        return self.client.get_transport()

    def open(self) -> None:
        """Connect and authenticate with `connect_kwargs`, through the gateway if any.

        A ProxyCommand gateway is the caller's to refuse before this is called."""
        transport = self.client.get_transport()
        if transport is not None and transport.is_active():
            return
        kwargs = dict(self.connect_kwargs, username=self.user, hostname=self.host, port=self.port)
        if isinstance(self.gateway, SSHTarget):
            self.gateway.open()
            kwargs["sock"] = self.gateway.transport().open_channel(
                kind="direct-tcpip",
                dest_addr=(self.host, int(self.port)),
                src_addr=("", 0),  # empty, not None: it is encoded into the request
            )
        if not kwargs.get("key_filename"):
            kwargs.pop("key_filename", None)
        self.client.connect(**kwargs)
