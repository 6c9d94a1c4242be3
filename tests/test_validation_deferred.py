"""Validation that helps without blocking: a task machineroom cannot run behind a condition.

A role written for several systems (`yum:` for RedHat, `apt:` for Debian) loads with a warning
naming the RedHat task's file:line, runs on a Debian lab host and skips it; `validate --strict`
makes the warning an error; with no condition, an unknown module stays a load error; a
deferred task whose condition holds fails its host with the load-time message. The files are
in tests/data/deferred/. Lab hosts h8 and h9 (read only: nothing here changes a host).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from machineroom.lab import Lab
from machineroom.playbook.load import iter_tasks, load_playbook
from tests.clirun import machineroom

DATA = Path(__file__).parent / "data" / "deferred"
HOSTS = ["h8", "h9"]
YUM_AT = "roles/pkgs/tasks/main.yml:3:3"  # the `yum:` key of the RedHat task
DNF_AT = "roles/pkgs/tasks/redhat.yml:3:3"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of tests/data/deferred with no inventory."""
    root = tmp_path / "project"
    shutil.copytree(DATA, root)
    return root


def _with_inventory(root: Path, lab: Lab) -> Path:
    lines = ["all:", "  vars:", f"    ssh_key: {lab.key}", "  children:", "    web:"]
    lines.append("      hosts:")
    for name in HOSTS:
        address = next(h.address for h in lab.hosts if h.name == name)
        lines.append(f"        {name}: {{host: {address}, user: root}}")
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return root


def test_tasks_behind_a_condition_load_with_warnings(project: Path) -> None:
    playbook = load_playbook(project / "site.yml")
    assert len(playbook.warnings) == 2
    yum, dnf = playbook.warnings
    assert yum.endswith(f"{YUM_AT}: task \"Install curl (RedHat)\": unknown module 'yum'")
    assert dnf.endswith(f"{DNF_AT}: task \"Install curl with dnf\": unknown module 'dnf'")
    tasks = list(iter_tasks(playbook.plays[0].stages[0].items))
    deferred = [t.module for t in tasks if t.deferred is not None]
    assert deferred == ["yum", "dnf"]


def test_validate_warns_and_strict_refuses(project: Path) -> None:
    plain = machineroom("validate", "site.yml", cwd=project)
    assert plain.returncode == 0, plain.stderr
    assert "2 warning(s)" in plain.stdout
    assert [line.startswith("warning: ") for line in plain.stderr.splitlines()] == [True] * 2
    assert f"{YUM_AT}: task \"Install curl (RedHat)\": unknown module 'yum'" in plain.stderr
    assert "behind a condition" in plain.stderr
    assert DNF_AT in plain.stderr

    strict = machineroom("validate", "--strict", "site.yml", cwd=project)
    assert strict.returncode == 4, strict.stderr
    assert YUM_AT in strict.stderr and "unknown module 'yum'" in strict.stderr
    assert DNF_AT in strict.stderr and "an error under --strict" in strict.stderr


def test_unknown_module_without_condition_is_a_load_error(project: Path) -> None:
    out = machineroom("validate", "unconditional.yml", cwd=project)
    assert out.returncode == 4
    assert "unconditional.yml:5:7: task \"Install curl\": unknown module 'yum'" in out.stderr


def test_a_typo_behind_a_condition_stays_an_error(project: Path) -> None:
    out = machineroom("validate", "typo.yml", cwd=project)
    assert out.returncode == 4
    assert "unknown argument 'stat' (did you mean 'state'?)" in out.stderr


def test_apply_on_debian_skips_the_redhat_tasks(project: Path, lab: Lab) -> None:
    root = _with_inventory(project, lab)
    out = machineroom("apply", "site.yml", "--json", cwd=root, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    for host in HOSTS:
        status = {t["task"]: t["status"] for t in report["hosts"][host]["tasks"]}
        assert status["pkgs : Install curl (RedHat)"] == "skipped"
        assert status["pkgs : Install curl with dnf"] == "skipped"
        assert status["pkgs : Install coreutils (Debian)"] == "ok"
    # once per run, not once per host
    assert out.stderr.count(f'{YUM_AT}: task "Install curl (RedHat)"') == 1
    assert out.stderr.count(DNF_AT) == 1

    plan = machineroom("plan", "site.yml", cwd=root)
    assert plan.returncode == 0, plan.stderr
    assert plan.stderr.count(YUM_AT) == 1
    redhat = [line for line in plan.stdout.splitlines() if "Install curl (RedHat)" in line]
    # facts decide at run time; the plan says what happens if the condition holds
    assert redhat and all("fails here if it runs" in line for line in redhat), plan.stdout


def test_deferred_task_reached_fails_the_host(project: Path, lab: Lab) -> None:
    root = _with_inventory(project, lab)
    out = machineroom("apply", "reached.yml", cwd=root, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    message = "reached.yml:4:7: task \"Install curl the RedHat way\": unknown module 'yum'"
    assert out.stderr.count(message) == 1  # the load-time warning
    both = out.stdout + out.stderr
    for host in HOSTS:
        assert any(host in line and "unknown module 'yum'" in line for line in both.splitlines())
