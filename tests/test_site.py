"""playbooks/site.yml end to end on three lab hosts at once, as issue 4 describes it: a fresh
server, from a password login to a managed docker host.

The inventory logs in as `deploy` with its password (root work goes through sudo) and names
the workstation key the cert stage installs (`ssh_key`: tried first, the password after), as
inventories/prod does. Lab hosts have no CAP_NET_ADMIN, so containers can only run once the
daemon the docker stage started is restarted from the machine in a network namespace of its
own (tests/dockerlab.py). Hence the order: the cert and docker stages, then that restart and
images built in each host from busybox-static (no Docker Hub; the watchtower and yacht image
variables point at them), then the whole of site.yml, twice: the second run changes nothing.
Each host's /var/lib/docker is a tmpfs; at the end every container is removed, the daemons
stopped and their cgroup folders removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dockerlab import BUILD_IMAGES, CLEAN_UP, DOCKER_TMPFS, SAFE_DAEMON, start_capable_daemon

from machineroom.connection import Connection, ConnectOptions
from machineroom.connection import open_connection as connect
from machineroom.inventory.model import Host
from machineroom.lab import Lab, LabHost

SITE = Path(__file__).resolve().parents[1] / "playbooks" / "site.yml"
INSTALLED = "docker,docker_compose,env,identity_cert,python3,watchtower,yacht"

# The test's group_vars/all.yml besides the keys: the lab-safe daemon and the local images.
SITE_VARS: dict[str, Any] = {
    "docker_daemon_options": SAFE_DAEMON,
    "watchtower_image": "mr-app",
    "watchtower_version": "1",
    "watchtower_args": ["/bin/sh", "-c", "echo watching; exec sleep 100000"],
    "watchtower_network_mode": "none",
    "yacht_image": "mr-app",
    "yacht_version": "2",
    "yacht_command": ["/bin/sh", "-c", "echo ui; exec sleep 100000"],
    "yacht_network_mode": "none",
}


def machineroom(*args: str, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


class RootShell:
    """Root on one lab host with the lab key: the test's own setup and checks, not tasks."""

    def __init__(self, lab: Lab, target: LabHost) -> None:
        self.target = target
        host = Host(
            id=target.name, host=target.address, port=target.port, user="root", ssh_key=lab.key
        )
        self.conn: Connection = connect(host, ConnectOptions(known_hosts_files=(lab.known_hosts,)))

    def sh(self, command: str, *, ok: bool = True) -> str:
        result = self.conn.run(command, timeout=600)
        if ok:
            assert result.exit_code == 0, (
                f"{self.target.name}: {command}\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout


def _new_key(folder: Path) -> Path:
    """The workstation's key pair in `folder` (ed25519, 600); returns the private key."""
    key = Ed25519PrivateKey.generate()
    path = folder / "id_ed25519"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    (folder / "id_ed25519.pub").write_text(public.decode() + " admin@workstation\n")
    return path


def _apply(root: Path, *args: str) -> tuple[float, Any]:
    """`machineroom apply playbooks/site.yml --json ARGS`: (seconds, report); must succeed."""
    started = time.monotonic()
    out = machineroom("apply", str(SITE), "--json", *args, cwd=root)
    seconds = time.monotonic() - started
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        report = None
    assert report is not None, f"exit {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr}"
    failed = [
        f"{name}: {task['task']} ({task.get('location')}): {task['msg']}\n{task['stderr']}"
        for name, host in report["hosts"].items()
        for task in host.get("tasks", [])
        if task["status"] in {"failed", "unreachable"} and not task.get("ignored")
    ]
    code = out.returncode
    assert code == 0, f"site.yml {' '.join(args)}: exit {code}\n" + "\n".join(
        failed or [out.stderr[-4000:]]
    )
    return seconds, report


def _changed(report: Any) -> dict[str, int]:
    return {name: int(s["changed"]) for name, s in report["stats"].items()}


@pytest.fixture
def fleet(lab: Lab) -> Iterator[list[RootShell]]:
    """Three fresh lab hosts (a tmpfs for /var/lib/docker each), cleaned up afterwards."""
    shells = [RootShell(lab, target) for target in lab.hosts[-12:-9]]
    try:
        for shell in shells:
            shell.sh(DOCKER_TMPFS)
        yield shells
    finally:
        for shell in shells:
            ids = shell.sh("docker ps -aq --no-trunc 2>/dev/null", ok=False).split()
            shell.sh(CLEAN_UP, ok=False)
            left = shell.sh("pidof dockerd containerd containerd-shim-runc-v2", ok=False)
            assert not left.strip(), f"{shell.target.name}: still running: {left}"
            for container in ids:
                assert not list(Path("/sys/fs/cgroup").glob(f"*/docker/{container}")), container
            shell.conn.close()


def test_site_yml_from_password_login_to_managed_docker_hosts(
    fleet: list[RootShell], lab: Lab, tmp_path: Path, hermetic: Path
) -> None:
    root = tmp_path
    key = _new_key(hermetic / ".ssh")  # ~/.ssh/id_ed25519
    names = [shell.target.name for shell in fleet]
    hosts = "".join(
        f"    {s.target.name}: {{host: {s.target.address}, port: {s.target.port}, "
        f"user: deploy, password: {lab.users['deploy']}}}\n"
        for s in fleet
    )
    (root / "inventory.yml").write_text(f"all:\n  hosts:\n{hosts}")
    (root / "group_vars").mkdir()
    keys = {"ssh_key": str(key), "cert_public_key_path": f"{key}.pub"}
    (root / "group_vars" / "all.yml").write_text(json.dumps({**keys, **SITE_VARS}, indent=2))
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())

    # 1. cert and docker: the key installed (password login), Docker installed and started
    early, report = _apply(root, "--stage", "cert", "--stage", "docker")
    assert all(n > 0 for n in _changed(report).values()), _changed(report)

    # 2. from the machine: each daemon restarted able to run containers; the local images
    def prepare(shell: RootShell) -> list[str]:
        start_capable_daemon(lab.lab_dir, shell.target.name, shell.sh)
        return shell.sh(BUILD_IMAGES).split()

    with ThreadPoolExecutor(len(fleet)) as pool:
        for images in pool.map(prepare, fleet):
            assert images == ["mr-app:1", "mr-app:2"]

    # 3. the whole of site.yml, twice: the second run changes nothing
    first, report = _apply(root)
    assert sorted(report["stats"]) == sorted(names)
    assert all(n > 0 for n in _changed(report).values()), _changed(report)
    second, report = _apply(root)
    assert _changed(report) == dict.fromkeys(names, 0)

    # what a user checks: `ls` lists every stage on every host ...
    listing = machineroom("ls", cwd=root, timeout=300)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[1]: line for line in listing.stdout.splitlines()[1:]}
    for name in names:
        assert "reachable" in lines[name] and INSTALLED in lines[name].split(), listing.stdout

    # ... the containers run ...
    scan = machineroom("scan-docker", "all", "--json", cwd=root, timeout=300)
    assert scan.returncode == 0, scan.stdout + scan.stderr
    found = json.loads(scan.stdout)
    for name in names:
        states = {c["name"]: (c["state"], c["image"]) for c in found[name]["containers"]}
        assert states == {
            "watchtower_watchtower_1": ("running", "mr-app:1"),
            "yacht_yacht_1": ("running", "mr-app:2"),
        }, (name, states)

    # ... and the workstation key alone logs in as deploy
    for shell in fleet:
        client = paramiko.SSHClient()
        client.load_host_keys(lab.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        target = shell.target
        client.connect(
            target.address,
            port=target.port,
            username="deploy",
            key_filename=str(key),
            allow_agent=False,
            look_for_keys=False,
            timeout=30,
        )
        try:
            _, stdout, _ = client.exec_command("id -un; hostname")
            assert stdout.read().decode().split() == ["deploy", target.name]
        finally:
            client.close()

    print(
        f"\nsite.yml on {len(names)} hosts: cert+docker stages {early:.1f} s,"
        f" first full run {first:.1f} s, second run {second:.1f} s (no changes)"
    )
