"""~/.ssh/config as SSHTarget reads it (ProxyJump, ProxyCommand, Match exec), on lab hosts,
and paramiko loaded without invoke."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from machineroom.connection import ConnectOptions, open_connection
from machineroom.errors import HostKeyError, InputError
from machineroom.inventory.model import Host
from machineroom.lab import Lab


def known_only(lab: Lab, address: str, path: Path) -> ConnectOptions:
    """Options trusting only the lab host at `address`."""
    lines = Path(lab.known_hosts).read_text().splitlines()
    path.write_text("".join(f"{x}\n" for x in lines if x.split()[0] == address))
    return ConnectOptions(known_hosts_files=(str(path),), connect_timeout=10)


def jump_config(lab: Lab, home: Path) -> None:
    """`target` (h3) reached through `jumpbox` (h1), both from ~/.ssh/config."""
    jump, target = lab.hosts[0], lab.hosts[2]
    (home / ".ssh" / "config").write_text(
        f"Host jumpbox\n"
        f"    HostName {jump.address}\n"
        f"    Port {jump.port}\n"
        f"    User root\n"
        f"    IdentityFile {lab.key}\n"
        f"Host target\n"
        f"    HostName {target.address}\n"
        f"    ProxyJump jumpbox\n"
    )


def test_proxy_jump_from_ssh_config(lab: Lab, hermetic: Path) -> None:
    jump_config(lab, hermetic)
    options = ConnectOptions(known_hosts_files=(lab.known_hosts,), connect_timeout=10)
    conn = open_connection(Host(id="web", host="target", user="root", ssh_key=lab.key), options)
    try:
        assert conn.run("hostname").stdout == f"{lab.hosts[2].name}\n"
    finally:
        conn.close()


def test_proxy_jump_host_key_is_verified(lab: Lab, hermetic: Path, tmp_path: Path) -> None:
    jump_config(lab, hermetic)
    options = known_only(lab, lab.hosts[2].address, tmp_path / "known_hosts")
    host = Host(id="web", host="target", user="root", ssh_key=lab.key)
    with pytest.raises(HostKeyError, match=r"jump host 'jumpbox': unknown host key"):
        open_connection(host, options)


def test_proxy_command_is_refused(hermetic: Path) -> None:
    (hermetic / ".ssh" / "config").write_text("Host far\n    ProxyCommand nc %h %p\n")
    with pytest.raises(InputError, match="ProxyCommand, which machineroom does not run"):
        open_connection(Host(id="far", host="far"), ConnectOptions())


def test_match_exec_runs_its_command(lab: Lab, hermetic: Path) -> None:
    # paramiko runs the command with invoke, which reads stdin: pytest's capture refuses that,
    # so the connection is made in a child process
    target = lab.hosts[1]
    (hermetic / ".ssh" / "config").write_text(
        f'Match host byexec exec "test -d /"\n    HostName {target.address}\n'
    )
    code = (
        "from machineroom.connection import ConnectOptions, open_connection\n"
        "from machineroom.inventory.model import Host\n"
        f"options = ConnectOptions(known_hosts_files=({lab.known_hosts!r},))\n"
        f"host = Host(id='x', host='byexec', user='root', ssh_key={lab.key!r})\n"
        "conn = open_connection(host, options)\n"
        "print(conn.run('hostname').stdout, end='')\n"
        "conn.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert (out.stdout, out.stderr) == (f"{target.name}\n", "")


def test_ssh_connections_load_neither_fabric_nor_invoke() -> None:
    code = (
        "import sys, machineroom.connection.ssh; "
        "print(','.join(m for m in ('fabric', 'invoke', 'unittest', 'asyncio') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
