"""`machineroom serve` (the web dashboard and API) and `machineroom token` (its access tokens).

fastapi, uvicorn and the web package are imported inside `serve`, so every other command (and
`--help`) starts without them. What the token commands do to the state database:
web/tokens.py.
"""

from __future__ import annotations

import ipaddress
import json

import click

from machineroom.cli.context import inventory_options, make_workspace


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="TCP port."
)
@inventory_options
@click.option(
    "--cookie-secure",
    is_flag=True,
    help="Mark the session cookie Secure (set it when a TLS reverse proxy serves the site).",
)
@click.option(
    "--proxy",
    "proxy_ips",
    default="127.0.0.1",
    show_default=True,
    help="Addresses of reverse proxies whose X-Forwarded-* headers are trusted.",
)
@click.option(
    "--auth-failures",
    type=click.IntRange(1, 100),  # the table keeps this many times an address
    default=10,
    show_default=True,
    help="Wrong tokens one address may send within --auth-window before it gets 429.",
)
@click.option(
    "--auth-window",
    type=click.FloatRange(1, 86_400),
    default=60,
    show_default=True,
    help="Seconds over which wrong tokens are counted (and the longest 429 lasts).",
)
@click.option("--access-log/--no-access-log", default=True, help="Log each request.")
@click.option(
    "--known-hosts",
    "known_hosts",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Extra known_hosts file the dashboard's applies and collections trust (as apply's "
    "--known-hosts); repeatable. Keys trusted on the dashboard go to the project's file.",
)
@click.option(
    "--vault-password-file",
    type=click.Path(exists=True, dir_okay=False),
    help="File whose first line is the vault password (an executable: its output), for the "
    "dashboard's runs [default: as apply's: $MACHINEROOM_VAULT_PASSWORD, "
    "vault_password_file in machineroom.yml, ansible.cfg]. Each run reads it; the password "
    "never passes through the server.",
)
def serve_command(
    host: str,
    port: int,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    cookie_secure: bool,
    proxy_ips: str,
    auth_failures: int,
    auth_window: float,
    access_log: bool,
    known_hosts: tuple[str, ...],
    vault_password_file: str | None,
) -> None:
    """Serve the web dashboard and the JSON API (see docs/dashboard.md and docs/api.md).

    Every page and call needs an access token (`machineroom token create`); bodies are
    capped (64 KiB for the API, 16 KiB for forms) and an address that sends too many wrong
    tokens gets 429 for a while (--auth-failures, --auth-window). Listens on
    127.0.0.1 unless --host says otherwise: put a TLS reverse proxy in front before
    exposing it.

    Applies and collections started on the dashboard connect as `machineroom apply` typed
    in the repository would (machineroom.yml, ansible.cfg), with --known-hosts and
    --vault-password-file beside those settings. A host key they meet for the first time
    is refused and shown on the action's page, where an admin can trust it."""
    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    if not _is_loopback(host):
        click.secho(
            f"WARNING: listening on {host}, not on the loopback address: anyone who can reach "
            f"port {port} can try tokens, and without TLS tokens and cookies cross the network "
            "in clear text. Prefer 127.0.0.1 behind a TLS reverse proxy (docs/dashboard.md).",
            fg="red",
            bold=True,
            err=True,
        )
    import uvicorn

    from machineroom.web.app import WebConfig, create_app
    from machineroom.web.tokens import any_active_token

    app = create_app(
        WebConfig(
            state_path=workspace.state_path,
            inventory_paths=workspace.inventory_paths,
            cookie_secure=cookie_secure,
            auth_failures=auth_failures,
            auth_window=auth_window,
            known_hosts=known_hosts,
            vault_password_file=vault_password_file,
            project_known_hosts=workspace.project_known_hosts,
        )
    )
    if not any_active_token(app.state.web.store):
        click.echo(
            "note: no active access token yet; create one with "
            "`machineroom token create NAME --role admin`",
            err=True,
        )
    inventory = ", ".join(workspace.inventory_paths) or "none"
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"machineroom dashboard on http://{shown}:{port}/ "
        f"(state {workspace.state_path}; inventory {inventory}); Ctrl-C stops it",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        forwarded_allow_ips=proxy_ips,
        server_header=False,
    )


@click.group("token")
def token_group() -> None:
    """Access tokens of the web dashboard and API: create, list, revoke."""


@token_group.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "admin"]),
    required=True,
    help="viewer reads; operator also starts collections and applies; admin also manages tokens.",
)
@click.option("--expires", help="Lifetime, e.g. 30d, 12h, 2w [default: never expires].")
@inventory_options
def token_create(
    name: str,
    role: str,
    expires: str | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
) -> None:
    """Create the token NAME and print it, once: only its hash is kept.

    Only the token goes to stdout, so `TOKEN=$(machineroom token create ci --role viewer)`
    captures it."""
    from machineroom.web.tokens import create_token, token_lifetime

    lifetime = token_lifetime(expires)
    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    token, row = create_token(workspace, name, role, lifetime)
    until = f", expires {row.expires_at}" if row.expires_at else ", never expires"
    click.echo(
        f"token {name!r} ({role}{until}); it is shown only now: keep it in a password manager",
        err=True,
    )
    click.echo(token)


@token_group.command("list")
@inventory_options
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
def token_list(inventory_paths: tuple[str, ...], state_path: str | None, as_json: bool) -> None:
    """The tokens: name, role, state, created, last used, expiry (never the token)."""
    from machineroom.web.tokens import all_tokens

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    rows = all_tokens(workspace)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "role": r.role,
                        "state": r.state(),
                        "created_at": r.created_at,
                        "created_by": r.created_by,
                        "last_used_at": r.last_used_at,
                        "expires_at": r.expires_at,
                        "revoked_at": r.revoked_at,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("no tokens; create one with `machineroom token create NAME --role ROLE`")
        return
    header = ("NAME", "ROLE", "STATE", "CREATED", "LAST USED", "EXPIRES")
    table = [header] + [
        (
            r.name,
            r.role,
            r.state(),
            f"{r.created_at[:16].replace('T', ' ')} by {r.created_by}",
            (r.last_used_at or "never")[:16].replace("T", " "),
            (r.expires_at or "never")[:16].replace("T", " "),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@token_group.command("revoke")
@click.argument("names", nargs=-1, required=True)
@inventory_options
def token_revoke(
    names: tuple[str, ...], inventory_paths: tuple[str, ...], state_path: str | None
) -> None:
    """Revoke tokens NAMES at once (their browser sessions end with them)."""
    from machineroom.web.tokens import revoke_tokens

    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    for row in revoke_tokens(workspace, names):
        click.echo(f"revoked {row.name!r} ({row.role}) at {row.revoked_at}")
