"""The cert, env and python stages (roles/) and `machineroom add-cert`, against real lab hosts.

Each test uses hosts counted from the end of the lab (so it works with 6 hosts or 20) and a
throwaway project in tmp_path whose `roles` links to the repository's roles.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from machineroom.lab import Lab

ROLES = Path(__file__).resolve().parents[1] / "roles"
STAGES = """\
- hosts: all
  stages: [cert, env, python]
"""


MACHINEROOM = (sys.executable, "-m", "machineroom")


def machineroom(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def new_key(folder: Path, name: str) -> tuple[Path, str]:
    """A fresh ed25519 key pair in `folder`; (private key path, public key line)."""
    key = Ed25519PrivateKey.generate()
    path = folder / name
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
    line = public.decode() + f" {name}@test"
    (folder / f"{name}.pub").write_text(line + "\n")
    return path, line


class Project:
    """An inventory of one lab host (`user`, password or key) around the repository's roles."""

    def __init__(self, root: Path, lab: Lab, index: int) -> None:
        self.root, self.lab = root, lab
        host = lab.hosts[index]
        self.name, self.address = host.name, host.address
        (root / "roles").symlink_to(ROLES)
        (root / ".machineroom").mkdir(mode=0o700)
        (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
        (root / "site.yml").write_text(STAGES)

    def inventory(self, user: str, *, password: str | None = None, key: str | None = None) -> None:
        fields = [f"host: {self.address}", f"user: {user}"]
        if password:
            fields.append(f"password: {password}")
        if key:
            fields.append(f"ssh_key: {key}")
        text = f"all:\n  hosts:\n    {self.name}: {{{', '.join(fields)}}}\n"
        (self.root / "inventory.yml").write_text(text)

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def apply(self, *args: str, env: dict[str, str] | None = None) -> tuple[Any, Any]:
        out = machineroom("apply", *args, "--json", cwd=self.root, env=env)
        try:
            return out, json.loads(out.stdout)
        except json.JSONDecodeError:
            return out, None

    def root_sh(self, command: str) -> str:
        """Run `command` as root with the lab key, recorded in a separate database."""
        inventory = self.root / "root-inventory.yml"
        inventory.write_text(
            f"all:\n  hosts:\n    {self.name}: "
            f"{{host: {self.address}, user: root, ssh_key: {self.lab.key}}}\n"
        )
        out = machineroom(
            "run",
            self.name,
            "-i",
            str(inventory),
            "--state",
            str(self.root / "root.db"),
            "--known-hosts",
            self.lab.known_hosts,
            "--json",
            "--",
            command,
            cwd=self.root,
        )
        return str(json.loads(out.stdout)["hosts"][self.name]["stdout"])

    def res(self) -> dict[str, Any]:
        with sqlite3.connect(self.root / ".machineroom" / "state.db") as db:
            row = db.execute("SELECT res FROM server_room WHERE id = ?", [self.name]).fetchone()
        return dict(json.loads(row[0]))

    def dump(self) -> str:
        with sqlite3.connect(self.root / ".machineroom" / "state.db") as db:
            return "\n".join(db.iterdump())


def changed(report: Any) -> int:
    return int(sum(s["changed"] for s in report["stats"].values()))


@pytest.fixture
def last(tmp_path: Path, lab: Lab) -> Project:
    return Project(tmp_path, lab, -3)


def test_add_cert_from_password_login_then_key_only(
    last: Project, hermetic: Path, lab: Lab
) -> None:
    # deploy already trusts another key: it must stay
    _, other = new_key(last.root, "other")
    last.root_sh(
        "install -d -o deploy -g deploy -m 700 ~deploy/.ssh && "
        f"echo '{other}' > ~deploy/.ssh/authorized_keys && "
        "chown deploy:deploy ~deploy/.ssh/authorized_keys && chmod 600 ~deploy/.ssh/authorized_keys"
    )
    last.inventory("deploy", password="deploy-pass")
    started = time.monotonic()
    out = machineroom("add-cert", "all", cwd=last.root)
    first = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert "generated" in out.stderr
    assert f"{last.name}: key login ok" in out.stderr
    private = hermetic / ".ssh" / "id_ed25519"
    assert private.stat().st_mode & 0o777 == 0o600
    assert (hermetic / ".ssh").stat().st_mode & 0o777 == 0o700
    public = (hermetic / ".ssh" / "id_ed25519.pub").read_text().strip()
    res = last.res()
    assert res["identity_cert_installed"] is True
    assert res["identity_cert_verified"] is True
    assert res["local_cert_path"] == str(private)

    # the key alone (no password in the inventory) now logs in; nothing changes
    last.inventory("deploy", key=str(private))
    out, report = last.apply("site.yml", "--stage", "cert")
    assert out.returncode == 0, out.stderr
    assert changed(report) == 0

    # a password that no longer works: add-cert connects with the key res recorded
    last.inventory("deploy", password="wrong-password")
    started = time.monotonic()
    again = machineroom("add-cert", "all", "--json", cwd=last.root)
    second = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(json.loads(again.stdout)) == 0
    keys = last.root_sh("cat ~deploy/.ssh/authorized_keys").splitlines()
    assert keys == [other, public]  # the other key kept, ours once
    print(f"\nadd-cert: first {first:.2f}s, second {second:.2f}s")


def test_restricted_key_runs_only_its_forced_command(tmp_path: Path, lab: Lab) -> None:
    project = Project(tmp_path, lab, -4)
    monitor, monitor_line = new_key(tmp_path, "monitor")
    key, _ = new_key(tmp_path, "admin")
    project.inventory("root", key=str(lab.key))
    restricted = [{"user": "ops", "key": monitor_line, "command": 'echo "collected" uptime'}]
    project.write(
        "group_vars/all.yml",
        f"cert_public_key_path: {key}.pub\ncert_restricted_keys: {json.dumps(restricted)}\n",
    )
    out, report = project.apply("site.yml", "--stage", "cert")
    assert out.returncode == 0, out.stderr
    line = project.root_sh("cat ~ops/.ssh/authorized_keys").splitlines()[-1]
    assert line.startswith('command="echo \\"collected\\" uptime",no-pty,no-port-forwarding,')
    assert "no-agent-forwarding,no-X11-forwarding ssh-ed25519 " in line

    client = paramiko.SSHClient()
    client.load_host_keys(lab.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        project.address,
        username="ops",
        key_filename=str(monitor),
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    try:
        _, stdout, _ = client.exec_command("cat /etc/passwd; id")
        assert stdout.read().decode() == "collected uptime\n"
        transport = client.get_transport()
        assert transport is not None
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", (project.address, 22), ("127.0.0.1", 0))
    finally:
        client.close()
    again, report = project.apply("site.yml", "--stage", "cert")
    assert again.returncode == 0 and changed(report) == 0


def test_env_precedence_files_and_secrets(tmp_path: Path, lab: Lab, hermetic: Path) -> None:
    project = Project(tmp_path, lab, -5)
    project.inventory("deploy", password="deploy-pass")
    secret = "tok-9f3a-never-shown"
    project.write(
        "group_vars/all.yml",
        """\
        env_vars_fleet:
          REGION: eu-west
          LEVEL: fleet
          API_TOKEN: "{{ lookup('env', 'STAGES_TEST_TOKEN') }}"
        """,
    )
    project.write(
        f"host_vars/{project.name}.yml", "env_vars_device: {LEVEL: device, SPACED: 'a b'}\n"
    )
    env = {"STAGES_TEST_TOKEN": secret}
    out, report = project.apply("site.yml", "--stage", "env", "--diff", "-vv", env=env)
    assert out.returncode == 0, out.stderr
    assert changed(report) >= 6
    text = project.root_sh(
        "cd /opt/machineroom && stat -c '%n %a %U' . cache assets bin docker-compose.yml env.sh"
        " && su - deploy -c 'echo $LEVEL/$REGION/$MACHINEROOM_WS/$SPACED; echo $PATH'"
        " && grep -c MACHINEROOM ~deploy/.profile && su - deploy -c 'echo $API_TOKEN'"
    )
    assert text.splitlines() == [
        ". 755 deploy",
        "cache 755 deploy",
        "assets 755 deploy",
        "bin 755 deploy",
        "docker-compose.yml 644 deploy",
        "env.sh 600 deploy",
        "device/eu-west//opt/machineroom/a b",  # device > fleet > software
        text.splitlines()[7],
        "2",
        secret,
    ]
    assert text.splitlines()[7].startswith("/opt/machineroom/bin:")
    assert project.res()["env_installed"] is True
    assert project.res()["remote_ws"] == "/opt/machineroom"
    again, report = project.apply("site.yml", "--stage", "env", "--diff", "-vv", env=env)
    assert again.returncode == 0 and changed(report) == 0
    for output in (out.stdout, out.stderr, again.stdout, again.stderr, project.dump()):
        assert secret not in output


def test_env_vault_secret_is_written_but_never_shown(tmp_path: Path, lab: Lab) -> None:
    project = Project(tmp_path, lab, -5)
    project.inventory("root", key=str(lab.key))
    key, _ = new_key(tmp_path, "admin")
    vault_env = {"MACHINEROOM_VAULT_PASSWORD": "stages-test"}
    cipher = subprocess.run(
        [*MACHINEROOM, "vault", "encrypt-string", "--stdin", "--name", "DB_PASSWORD"],
        cwd=tmp_path,
        input="vault-plain-1",
        capture_output=True,
        text=True,
        env={**os.environ, **vault_env},
        check=True,
    )
    secret_yaml = "    ".join(cipher.stdout.splitlines(keepends=True))
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        f"cert_public_key_path: {key}.pub\nenv_vars_fleet:\n  {secret_yaml}"
    )
    out, _ = project.apply("site.yml", "--stage", "env", "--diff", "-vv", env=vault_env)
    assert out.returncode == 0, out.stderr
    assert "export DB_PASSWORD=vault-plain-1" in project.root_sh("cat /opt/machineroom/env.sh")
    assert "vault-plain-1" not in out.stdout + out.stderr + project.dump()


def test_stages_check_mode_idempotent_and_listed(tmp_path: Path, lab: Lab) -> None:
    project = Project(tmp_path, lab, -6)
    key, _ = new_key(tmp_path, "admin")
    project.inventory("root", key=str(lab.key))
    project.write("group_vars/all.yml", f"cert_public_key_path: {key}.pub\n")
    out, report = project.apply("site.yml", "--check")
    assert out.returncode == 0, out.stderr
    assert changed(report) > 0
    assert project.root_sh("test -e /opt/machineroom && echo yes || echo no") == "no\n"
    recorded = {"identity_cert_installed", "env_installed", "python3_installed"}
    assert not recorded & set(project.res())
    times = []
    for expected_changes in (True, False):
        started = time.monotonic()
        out, report = project.apply("site.yml")
        times.append(time.monotonic() - started)
        assert out.returncode == 0, out.stderr
        assert (changed(report) > 0) is expected_changes
    res = project.res()
    assert res["python3_installed"] is True
    assert res["python3_version"].startswith("3.")
    assert res["identity_cert_installed"] is True
    assert res["local_cert_path"] == str(key)
    listing = machineroom("ls", cwd=tmp_path)
    assert "env,identity_cert,python3" in listing.stdout
    print(f"\ncert+env+python: first {times[0]:.2f}s, second {times[1]:.2f}s")


def test_python_missing_is_installed_or_reported(tmp_path: Path, lab: Lab) -> None:
    """python3 hidden from PATH: check mode says it would install; the real run installs
    (apt reinstalls nothing when the package is there, so only the probe is faked)."""
    project = Project(tmp_path, lab, -6)
    key, _ = new_key(tmp_path, "admin")
    project.inventory("root", key=str(lab.key))
    project.write(
        "group_vars/all.yml",
        f"cert_public_key_path: {key}.pub\npython_executable: python3-absent-here\n",
    )
    out, report = project.apply("site.yml", "--stage", "python", "--check")
    assert out.returncode == 0, out.stderr
    tasks = {t["task"]: t for t in report["hosts"][project.name]["tasks"]}
    assert tasks["python : Install python3 (missing)"]["status"] in {"ok", "changed"}
    assert "python3_installed" not in project.res()
