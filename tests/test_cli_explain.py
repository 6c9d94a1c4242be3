"""`machineroom explain VAR --host H`, run as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

INVENTORY = """\
all:
  vars:
    app_port: 8000
    greeting: "hello {{ inventory_hostname }}"
  children:
    web:
      vars:
        app_port: 8001
      hosts:
        web1:
          host: 10.0.0.1
          app_port: 8002
        web2:
          host: 10.0.0.2
"""


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "machineroom", "explain", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text('docker_version: "23.0"\n')
    role = tmp_path / "roles" / "docker"
    for part in ("defaults", "vars", "tasks"):
        (role / part).mkdir(parents=True)
    (role / "defaults" / "main.yml").write_text('docker_version: "20.10"\ndocker_edition: ce\n')
    (role / "vars" / "main.yml").write_text(
        'docker_url: "https://get.docker.com/{{ docker_version }}"\n'
    )
    (role / "tasks" / "main.yml").write_text("- name: show\n  debug:\n    msg: hi\n")
    (tmp_path / "site.yml").write_text(
        "- hosts: web\n  vars:\n    app_port: 9000\n  roles:\n    - docker\n"
    )
    return tmp_path


def test_inventory_layers_and_winner(project: Path) -> None:
    result = run(project, "app_port", "--host", "web1", "-i", "hosts.yml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "app_port = 8002    (host web1, hosts.yml:12)"
    assert lines[1].split() == ["group", "all", "8000", "hosts.yml", "(group", "all)"]
    assert lines[2].split() == ["group", "web", "8001", "hosts.yml", "(group", "web)"]
    assert lines[3].split() == ["*", "host", "web1", "8002", "hosts.yml:12"]


def test_extra_vars_win_and_say_where(project: Path) -> None:
    result = run(project, "app_port", "--host", "web2", "-i", "hosts.yml", "-e", "x=1 app_port=7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith('app_port = "7"    (extra vars (-e)')
    assert "* extra vars (-e)" in result.stdout
    assert "-e argument 1 (app_port=...)" in result.stdout


def test_template_value_is_rendered(project: Path) -> None:
    result = run(project, "greeting", "--host", "web2", "-i", "hosts.yml")
    assert result.returncode == 0, result.stderr
    assert '  renders to: "hello web2"' in result.stdout


def test_magic_variable(project: Path) -> None:
    result = run(project, "group_names", "--host", "web1", "-i", "hosts.yml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('group_names = ["web"]    (magic variables, machineroom)')


def test_unset_variable_exits_1(project: Path) -> None:
    result = run(project, "nope", "--host", "web1", "-i", "hosts.yml")
    assert result.returncode == 1
    assert "nope is not set for web1 in any layer" in result.stderr


def test_unknown_host_exits_4(project: Path) -> None:
    result = run(project, "app_port", "--host", "web9", "-i", "hosts.yml")
    assert result.returncode == 4
    assert "no host 'web9'" in result.stderr
    assert "did you mean" in result.stderr


def test_bad_extra_vars_exit_4(project: Path) -> None:
    result = run(project, "app_port", "--host", "web1", "-i", "hosts.yml", "-e", "oops")
    assert result.returncode == 4
    assert "'oops' is not key=value" in result.stderr


def _loader_available() -> bool:
    try:
        import machineroom.playbook.load  # noqa: F401
    except ImportError:
        return False
    return True


needs_loader = pytest.mark.skipif(not _loader_available(), reason="playbook loader not there yet")


@needs_loader
def test_playbook_role_defaults_play_vars_and_inventory(project: Path) -> None:
    result = run(
        project, "docker_version", "--host", "web1", "-i", "hosts.yml", "--playbook", "site.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "# play 1 (web), as a task of role docker sees it" in out
    assert 'docker_version = "23.0"    (group web, group_vars/web.yml:1)' in out
    assert "role defaults (docker)" in out
    assert "roles/docker/defaults/main.yml:1" in out


@needs_loader
def test_playbook_play_vars_beat_inventory(project: Path) -> None:
    result = run(project, "app_port", "--host", "web1", "-i", "hosts.yml", "--playbook", "site.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "app_port = 9000    (play vars (web), site.yml:3)" in result.stdout


@needs_loader
def test_playbook_role_vars_rendered(project: Path) -> None:
    result = run(
        project, "docker_url", "--host", "web1", "-i", "hosts.yml", "--playbook", "site.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '  renders to: "https://get.docker.com/23.0"' in result.stdout


@needs_loader
def test_playbook_not_targeting_host(project: Path) -> None:
    (project / "db.yml").write_text("- hosts: web2\n  tasks:\n    - debug: {msg: hi}\n")
    result = run(project, "app_port", "--host", "web1", "-i", "hosts.yml", "--playbook", "db.yml")
    assert result.returncode == 4
    assert "no play in db.yml targets host 'web1'" in result.stderr
