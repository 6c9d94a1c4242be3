"""Options shared by commands: the inventory and state (`-i`, `--state`) and how to connect
(`connection_options`, gathered into one `ConnectSettings` value). What the options mean and
where things live by default: machineroom/runs/workspace.py and runs/connect.py."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from machineroom.runs.connect import ConnectSettings, cluster_tls_settings
from machineroom.runs.settings import default_of, use_inventory_paths

if TYPE_CHECKING:
    from machineroom.runs.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])
CONNECT_FIELDS = (
    "forks",
    "connect_timeout",
    "command_timeout",
    "known_hosts",
    "accept_new_host_keys",
    "vault_password_file",
    "ask_vault_password",
    "cluster",
)


def inventory_options(func: F) -> F:
    """`-i/--inventory` (repeatable) and `--state`."""
    func = click.option(
        "--state",
        "state_path",
        type=click.Path(dir_okay=False),
        envvar="MACHINEROOM_STATE",
        help="State database file [default: .machineroom/state.db in the inventory's repo].",
    )(func)
    func = click.option(
        "-i",
        "--inventory",
        "inventory_paths",
        multiple=True,
        type=click.Path(),
        callback=_remember_inventory,
        help="Inventory file or folder (YAML, INI or server list); repeatable.",
    )(func)
    return func


def connection_options(func: F) -> F:
    """Host-key, timeout, vault and parallelism options of commands that connect, handed to
    the command as one value: its `connect: ConnectSettings` parameter."""
    options = [
        click.option(
            "-f",
            "--forks",
            type=click.IntRange(1, 1000),
            default=lambda: default_of("forks", 50),
            help="Hosts worked on at once [default: 50, or forks in machineroom.yml, "
            "$ANSIBLE_FORKS, ansible.cfg].",
        ),
        click.option(
            "-T",
            "--connect-timeout",
            type=float,
            default=lambda: float(default_of("connect_timeout", 10.0)),
            help="Seconds to wait for a host's SSH handshake [default: 10, or ansible.cfg's "
            "timeout].",
        ),
        click.option(
            "--timeout",
            "command_timeout",
            type=float,
            default=lambda: default_of("command_timeout", None),
            help="Seconds a remote command may run.",
        ),
        click.option(
            "--known-hosts",
            "known_hosts",
            multiple=True,
            type=click.Path(),
            help="Extra known_hosts file to trust; repeatable.",
        ),
        click.option(
            "--accept-new-host-keys",
            is_flag=True,
            help="Record first-seen host keys (a changed key is still refused).",
        ),
        click.option(
            "--vault-password-file",
            type=click.Path(dir_okay=False),
            default=_vault_file_default,
            callback=_remember_vault_option,
            help="File whose first line is the vault password (an executable: its output).",
        ),
        click.option(
            "--ask-vault-password",
            "--ask-vault-pass",
            "-J",
            is_flag=True,
            default=lambda: bool(default_of("ask_vault_pass", False)),
            callback=_remember_vault_option,
            help="Prompt for the vault password.",
        ),
        click.option(
            "--vault-id",
            "vault_ids",
            multiple=True,
            expose_value=False,
            default=lambda: tuple(default_of("vault_identity_list", ())),
            callback=_remember_vault_option,
            help="[LABEL@]FILE or LABEL@prompt: one more vault password (as ansible's); "
            "repeatable [default: ansible.cfg's vault_identity_list].",
        ),
        click.option(
            "--cluster",
            envvar="MACHINEROOM_CLUSTER",
            default=lambda: default_of("cluster", None),
            metavar="ADDRESS",
            help="Walk hosts on a Dask cluster: local:N (N worker processes here), "
            "tls://HOST:PORT or tcp://HOST:PORT (a scheduler) [default: cluster in "
            "machineroom.yml]. See docs/distributed.md.",
        ),
    ]

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in CONNECT_FIELDS}
        vault_ids = click.get_current_context().meta.get("vault_ids", ())
        kwargs["connect"] = _settings(values, vault_ids)
        return func(*args, **kwargs)

    wrapped: Any = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def _settings(values: dict[str, Any], vault_ids: tuple[str, ...]) -> ConnectSettings:
    return ConnectSettings(
        forks=values["forks"],
        connect_timeout=values["connect_timeout"],
        command_timeout=values["command_timeout"],
        known_hosts=tuple(values["known_hosts"]),
        accept_new_host_keys=values["accept_new_host_keys"],
        vault_password_file=values["vault_password_file"],
        ask_vault_password=values["ask_vault_password"],
        vault_ids=tuple(vault_ids),
        cluster=values["cluster"] or None,
        cluster_tls=cluster_tls_settings() if values["cluster"] else (None, None, None),
    )


def make_workspace(
    inventory_paths: tuple[str, ...], state_path: str | None, need_inventory: bool = True
) -> Workspace:
    """The command's workspace (runs/workspace.py), its notes printed on stderr."""
    from machineroom.runs.workspace import make_workspace as workspace_of

    workspace = workspace_of(inventory_paths, state_path, need_inventory)
    workspace.warn = lambda text: click.echo(text, err=True)
    return workspace


def _remember_inventory(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Settings read while the options are parsed find a project file beside `-i`'s paths."""
    use_inventory_paths(tuple(value or ()))
    return value


def _remember_vault_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Record the vault password source before anything loads: whole-file vaults in
    group_vars/ or vars_files are decrypted while the inventory and playbook are read."""
    from machineroom.runs.connect import use_vault_source

    # Both options are parsed before the command runs; each callback sees the other's value
    # once it has been parsed (or its default), so the last call holds both.
    if param.name == "vault_ids":  # not a command argument: kept beside them
        ctx.meta["vault_ids"] = tuple(value)
    params = {**ctx.params, param.name or "": value}
    use_vault_source(
        params.get("vault_password_file"),
        bool(params.get("ask_vault_password")),
        ctx.meta.get("vault_ids", ()),
    )
    return value


def _vault_file_default() -> str | None:
    """--vault-password-file when not given: $MACHINEROOM_VAULT_PASSWORD wins (vault.py reads
    it), else machineroom.yml's, $ANSIBLE_VAULT_PASSWORD_FILE or ansible.cfg's file."""
    from machineroom.runs.connect import vault_password_in_environment

    if vault_password_in_environment():
        return None
    value = default_of("vault_password_file", None)
    return None if value is None else str(value)
