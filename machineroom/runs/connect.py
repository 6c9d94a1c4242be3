"""Connection settings of a run: one value built once from the command line (or a request),
turned into the connection layer's `ConnectOptions` for the run's workspace."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machineroom.errors import InputError

if TYPE_CHECKING:
    from machineroom.connection.base import CommandHook, ConnectOptions
    from machineroom.runs.workspace import Workspace


@dataclass(frozen=True)
class ConnectSettings:
    """How a run reaches its hosts, as the user asked: parallelism, timeouts, host keys,
    the vault password's source. Plain data: it crosses a process boundary in a RunRequest."""

    forks: int = 50
    connect_timeout: float = 10.0
    command_timeout: float | None = None
    known_hosts: tuple[str, ...] = ()  # extra known_hosts files to trust
    accept_new_host_keys: bool = False
    vault_password_file: str | None = None
    ask_vault_password: bool = False
    vault_ids: tuple[str, ...] = ()
    # --cluster: hosts walk on a Dask cluster's workers (cluster/); None: in this process
    cluster: str | None = None
    cluster_tls: tuple[str | None, str | None, str | None] = (None, None, None)  # ca, cert, key
    # what an unknown host key's message advises; None: the CLI's --accept-new-host-keys
    # (the dashboard names the page where an admin can trust the key)
    unknown_key_advice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "forks": self.forks,
            "connect_timeout": self.connect_timeout,
            "command_timeout": self.command_timeout,
            "known_hosts": list(self.known_hosts),
            "accept_new_host_keys": self.accept_new_host_keys,
            "vault_password_file": self.vault_password_file,
            "ask_vault_password": self.ask_vault_password,
            "vault_ids": list(self.vault_ids),
            "cluster": self.cluster,
            "cluster_tls": list(self.cluster_tls),
            "unknown_key_advice": self.unknown_key_advice,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConnectSettings:
        """The settings `to_dict` wrote."""
        return cls(
            forks=int(data.get("forks", 50)),
            connect_timeout=float(data.get("connect_timeout", 10.0)),
            command_timeout=data.get("command_timeout"),
            known_hosts=tuple(data.get("known_hosts", ())),
            accept_new_host_keys=bool(data.get("accept_new_host_keys", False)),
            vault_password_file=data.get("vault_password_file"),
            ask_vault_password=bool(data.get("ask_vault_password", False)),
            vault_ids=tuple(data.get("vault_ids", ())),
            cluster=data.get("cluster"),
            cluster_tls=_three(data.get("cluster_tls")),
            unknown_key_advice=data.get("unknown_key_advice"),
        )

    def use_vault_source(self) -> None:
        """Name this run's vault password source before anything loads (whole-file vaults
        in group_vars/ or vars_files are decrypted while the inventory is read)."""
        use_vault_source(self.vault_password_file, self.ask_vault_password, self.vault_ids)


def _three(value: Any) -> tuple[str | None, str | None, str | None]:
    items = list(value or ())[:3] + [None] * 3
    a, b, c = (None if v is None else str(v) for v in items[:3])
    return (a, b, c)


def cluster_tls_settings() -> tuple[str | None, str | None, str | None]:
    """The TLS files of a tls:// cluster, from machineroom.yml (cluster_tls_ca, ...)."""
    from machineroom.runs.settings import current_settings

    settings = current_settings()
    return (
        settings.get("cluster_tls_ca"),
        settings.get("cluster_tls_cert"),
        settings.get("cluster_tls_key"),
    )


def use_vault_source(
    password_file: str | None, ask: bool, vault_ids: tuple[str, ...] | list[str] = ()
) -> None:
    """Where the vault password comes from (a file, a prompt on the terminal, `--vault-id`s),
    named before anything loads."""
    from machineroom.vault import set_password_source

    set_password_source(password_file, ask, prompt_password, tuple(vault_ids))


def vault_password_in_environment() -> bool:
    """Whether $MACHINEROOM_VAULT_PASSWORD holds the vault password (it wins over files)."""
    from machineroom.vault import PASSWORD_ENV

    return bool(os.environ.get(PASSWORD_ENV))


def connect_options(
    workspace: Workspace, settings: ConnectSettings, on_command: CommandHook | None = None
) -> ConnectOptions:
    """Connection settings: host keys from the project's and the user's files, vault unlock."""
    from machineroom.connection.base import ConnectOptions

    project_kh = workspace.project_known_hosts
    user_kh = str(Path.home() / ".ssh" / "known_hosts")
    files = (project_kh, *settings.known_hosts, user_kh)
    # ansible.cfg's host_key_checking = False: record first-seen keys, never skip the check
    accept_new = settings.accept_new_host_keys or bool(
        workspace.settings.get("accept_new_host_keys")
    )
    return ConnectOptions(
        known_hosts_files=files,
        project_known_hosts=project_kh,
        accept_new_host_keys=accept_new,
        unknown_key_advice=settings.unknown_key_advice,
        connect_timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
        decrypt=make_decrypt(settings.vault_password_file, settings.ask_vault_password),
        on_command=on_command,
    )


def make_decrypt(password_file: str | None, ask: bool) -> Callable[[str], str]:
    """A `decrypt` callable that asks for the vault password only when first needed (once
    per process: files decrypted while loading share the key)."""

    def decrypt(ciphertext: str) -> str:
        from machineroom.vault import recorded_vault_ids, shared_key

        key = shared_key(password_file, ask, prompt_password, recorded_vault_ids())
        result: str = key.decrypt(ciphertext)
        return result

    return decrypt


def prompt_password(message: str) -> str:
    """Ask the terminal for a password (refused when stdin is not a terminal)."""
    if not os.isatty(0):
        raise InputError("a vault password is needed and stdin is not a terminal")
    return getpass.getpass(message)
