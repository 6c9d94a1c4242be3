"""`machineroom lab up|down|status`: throwaway real SSH hosts on this machine (docs/lab.md)."""

from __future__ import annotations

import time

import click

from machineroom.errors import ExitCode
from machineroom.lab import DEFAULT_LAB_DIR, lab_status, start_lab, stop_lab

dir_option = click.option(
    "--dir",
    "lab_dir",
    default=DEFAULT_LAB_DIR,
    show_default=True,
    help="The lab's directory (must be /tmp/lab-NAME); one lab per directory.",
)


@click.group("lab")
def lab_group() -> None:
    """Start, check and stop lab hosts: real sshd on 127.x addresses, one overlay root each.

    Needs root. Hosts share the machine's kernel and network but not its files: whatever a
    playbook changes in a host stays in that host and is gone at `lab down`.
    """


@lab_group.command("up")
@click.argument("count", type=click.IntRange(1, 254))
@dir_option
@click.option("--net", default="127.0.1", show_default=True, help="Host I listens on NET.I.")
@click.option(
    "--first", default=1, type=click.IntRange(1, 254), show_default=True, help="First host's I."
)
@click.option(
    "--port", default=22, type=click.IntRange(1, 65535), show_default=True, help="sshd's port."
)
@click.option("--pam-nodelay", is_flag=True, help="Refuse a wrong password at once, not after 3 s.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for sshd.")
def up_command(
    count: int,
    lab_dir: str,
    net: str,
    first: int,
    port: int,
    pam_nodelay: bool,
    timeout: float,
) -> None:
    """Start COUNT hosts (stopping any lab already in --dir first)."""
    started = time.monotonic()
    lab = start_lab(count, lab_dir, net, first, port, pam_nodelay, timeout)
    elapsed = time.monotonic() - started
    first_host, last_host = lab.hosts[0], lab.hosts[-1]
    span = first_host.name if count == 1 else f"{first_host.name}..{last_host.name}"
    click.echo(
        f"lab {lab.lab_dir}: {count} host(s) {span} up in {elapsed:.2f}s"
        f" on {first_host.address}..{last_host.address}:{port}"
    )
    passwords = ", ".join(f"{u} / {p}" for u, p in lab.users.items() if p)
    click.echo(
        f"""
  machineroom run -i {lab.inventory} --known-hosts {lab.known_hosts} all -- hostname
  ssh -F {lab.ssh_config} {first_host.name}

root logs in with the key {lab.key}; passwords: {passwords}
(deploy: sudo without password; ops: sudo asks for it).
Stop with: machineroom lab down --dir {lab.lab_dir}"""
    )


@lab_group.command("down")
@dir_option
def down_command(lab_dir: str) -> None:
    """Stop every host of the lab and remove its directory (safe after a crash)."""
    started = time.monotonic()
    stop_lab(lab_dir)
    click.echo(f"lab {lab_dir}: down in {time.monotonic() - started:.2f}s")


@lab_group.command("status")
@dir_option
def status_command(lab_dir: str) -> None:
    """One line per host: process alive, sshd banner. Exit 1 unless every host answers."""
    statuses = lab_status(lab_dir)
    if not statuses:
        click.echo(f"lab {lab_dir}: not running")
        return
    for s in statuses:
        alive = f"pid {s.pid}" if s.alive else "dead"
        banner = s.banner or "sshd does not answer"
        click.echo(f"{s.host.name:>5} {s.host.address}:{s.host.port:<5} {alive:<11} {banner}")
    answering = sum(s.banner is not None for s in statuses)
    click.echo(f"{answering}/{len(statuses)} hosts answer")
    if answering < len(statuses):
        raise click.exceptions.Exit(ExitCode.ERROR)
