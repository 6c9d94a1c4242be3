"""Ansible parity: one playbook, written for Ansible, run by ansible-playbook on one lab host and
unchanged by `machineroom apply` on another, must leave the same state on both.

ansible-core comes from PyPI into its own virtualenv, cached in `.cache/ansible-venv` at the
top of the repository (kept between local runs, built once on a fresh CI machine). The
`authorized_key` module lives in the ansible.posix collection, which ansible-core does not
ship: the collection is unpacked from the `ansible` community package's wheel, nothing else
of it is installed. No network to PyPI fails the test (CI has PyPI); it never skips.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab, LabHost

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK_DIR = Path(__file__).resolve().parent / "data" / "parity"
PLAYBOOK = PLAYBOOK_DIR / "site.yml"
ANSIBLE_CACHE = ROOT / ".cache" / "ansible-venv"
# ansible-core 2.17-2.19 run on a Python 3.11 controller and a 3.11 target; the community
# package of the same line (10 for 2.17 ... 12 for 2.19) carries a matching ansible.posix
ANSIBLE_CORE = "ansible-core>=2.17,<2.20"
ANSIBLE_PACKAGE = "ansible>=10,<13"
POSIX_PREFIX = "ansible_collections/ansible/posix/"

# One command per host: every path under /srv/parity (type, mode, owner, group, link
# target), each file's sha256 and text, the account and groups, in a stable order.
SNAPSHOT = r"""
export LC_ALL=C
cd /
echo '## tree'
if [ -e /srv/parity ]; then
  find /srv/parity -printf '%p %y %m %u %g %l\n' | sort
fi
echo '## sha256'
if [ -e /srv/parity ]; then
  find /srv/parity -type f -print0 | sort -z | xargs -0 -r sha256sum
fi
echo '## accounts'
getent passwd parity-app || echo 'no user parity-app'
for g in parity-grp parity-extra; do getent group "$g" || echo "no group $g"; done
id parity-app 2>&1 || true
echo '## contents'
if [ -e /srv/parity ]; then
  find /srv/parity -type f | sort | while read -r f; do
    echo "== $f"
    cat "$f"
    echo
  done
fi
"""


@dataclass(frozen=True)
class Ansible:
    """ansible-playbook from its own virtualenv, with the collections it needs."""

    playbook: Path
    collections: Path
    version: str


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, capturing its output as text; the caller looks at the exit status."""
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def _build_ansible(venv: Path) -> None:
    """Make `venv` from scratch: ansible-core, and ansible.posix out of the community wheel."""
    if venv.exists():
        shutil.rmtree(venv)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", ANSIBLE_CORE],
        [
            str(venv / "bin" / "pip"),
            "download",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(venv / "download"),
            ANSIBLE_PACKAGE,
        ],
    ]
    for step in steps:
        out = _run(step, timeout=900)
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).splitlines()[-15:])
            pytest.fail(
                f"cannot install Ansible for the parity test (is PyPI reachable?):\n"
                f"$ {' '.join(step)}\nexit {out.returncode}\n{tail}",
                pytrace=False,
            )
    (wheel,) = (venv / "download").glob("ansible-*.whl")
    collections = venv / "collections"
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(POSIX_PREFIX) and not name.endswith("/"):
                archive.extract(name, collections)
    shutil.rmtree(venv / "download")
    (venv / "empty-ansible.cfg").write_text("[defaults]\n")
    (venv / "machineroom-spec").write_text(f"{ANSIBLE_CORE}\n{ANSIBLE_PACKAGE}\n")


@pytest.fixture(scope="session")
def ansible() -> Iterator[Ansible]:
    """ansible-playbook from `.cache/ansible-venv`, built there when missing or outdated."""
    ANSIBLE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(ANSIBLE_CACHE.parent / "ansible-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions building at once would clash
        spec = ANSIBLE_CACHE / "machineroom-spec"
        wanted = f"{ANSIBLE_CORE}\n{ANSIBLE_PACKAGE}\n"
        if not spec.exists() or spec.read_text() != wanted:
            _build_ansible(ANSIBLE_CACHE)
    playbook = ANSIBLE_CACHE / "bin" / "ansible-playbook"
    config = ANSIBLE_CACHE / "empty-ansible.cfg"
    out = _run([str(playbook), "--version"], env={**os.environ, "ANSIBLE_CONFIG": str(config)})
    assert out.returncode == 0, out.stdout + out.stderr
    version = out.stdout.splitlines()[0]  # "ansible-playbook [core 2.19.4]"
    yield Ansible(playbook, ANSIBLE_CACHE / "collections", version)


def ansible_env(ansible: Ansible, work: Path) -> dict[str, str]:
    """An environment in which ansible reads no user or system config and writes in `work`."""
    config = work / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_HOME=str(work / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_COLLECTIONS_PATH=str(ansible.collections),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
        ANSIBLE_ROLES_PATH=str(work / "no-roles"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(work / "cp"),
        # the master connection ends soon after the run instead of lingering
        ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=2s",
        ANSIBLE_PIPELINING="True",
        ANSIBLE_HOST_KEY_CHECKING="True",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_NOCOLOR="True",
        ANSIBLE_FORCE_COLOR="False",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="False",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3",
    )
    return env


def write_ansible_inventory(path: Path, lab: Lab, host: LabHost) -> None:
    """Group `parity` holding `host` for ansible-playbook, trusting only the lab's host keys."""
    ssh_args = (
        f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes "
        "-o KexAlgorithms=curve25519-sha256"
    )
    fields = {
        "ansible_host": host.address,
        "ansible_port": host.port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": lab.key,
        "ansible_ssh_common_args": ssh_args,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    path.write_text(json.dumps({"parity": {"hosts": {host.name: fields}}}, indent=2))


def write_machineroom_project(work: Path, lab: Lab, host: LabHost) -> None:
    """A project folder: group `parity` holding `host`, the lab's host keys trusted."""
    inventory = (
        f"all:\n  children:\n    parity:\n      hosts:\n        {host.name}: "
        f"{{host: {host.address}, port: {host.port}, user: root, ssh_key: {lab.key}}}\n"
    )
    (work / "inventory.yml").write_text(inventory)
    state = work / ".machineroom"
    state.mkdir(mode=0o700)
    (state / "known_hosts").write_text(Path(lab.known_hosts).read_text())


def run_ansible(ansible: Ansible, lab: Lab, host: LabHost, work: Path) -> str:
    """ansible-playbook on `host`; returns its output; a failed run fails the test."""
    work.mkdir()
    write_ansible_inventory(work / "inventory.json", lab, host)
    out = _run(
        [str(ansible.playbook), "-i", str(work / "inventory.json"), str(PLAYBOOK)],
        cwd=work,
        env=ansible_env(ansible, work),
        timeout=600,
    )
    assert out.returncode == 0, f"ansible-playbook failed ({ansible.version}):\n{out.stdout}"
    return out.stdout


def machineroom_apply(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`machineroom apply` of the parity playbook in the project folder `work`, with --json."""
    return _run(
        [
            sys.executable,
            "-m",
            "machineroom",
            "apply",
            str(PLAYBOOK),
            "-i",
            "inventory.yml",
            "--json",
            *args,
        ],
        cwd=work,
        timeout=600,
    )


def snapshot(lab: Lab, host: LabHost) -> str:
    """What the parity playbook leaves on `host`, as text (SNAPSHOT)."""
    out = _run(["ssh", "-F", lab.ssh_config, host.name, SNAPSHOT], timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def stats(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """The per-host stats of an `apply --json` run."""
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"apply --json printed no JSON (exit {out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    return report["stats"]  # type: ignore[no-any-return]


def failures(out: subprocess.CompletedProcess[str]) -> str:
    """The failed tasks of an `apply --json` run, one line each, for assertion messages."""
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        return out.stdout + out.stderr
    lines = [out.stderr.strip()]
    for host, result in report.get("hosts", {}).items():
        for task in result.get("tasks", []):
            if task.get("status") in ("failed", "unreachable"):
                lines.append(f"{host}: {task.get('task')}: {task.get('msg')} {task.get('stderr')}")
    return "\n".join(lines)


def changed_tasks(out: subprocess.CompletedProcess[str]) -> list[str]:
    """The tasks an `apply --json` run reports changed."""
    report = json.loads(out.stdout)
    return [
        f"{host}: {task.get('task')} ({task.get('location')})"
        for host, result in report.get("hosts", {}).items()
        for task in result.get("tasks", [])
        if task.get("status") == "changed"
    ]


def explain_difference(ansible_side: str, machineroom_side: str) -> str:
    """A unified diff of two snapshots, Ansible's first."""
    return "".join(
        difflib.unified_diff(
            ansible_side.splitlines(keepends=True),
            machineroom_side.splitlines(keepends=True),
            fromfile="ansible-playbook",
            tofile="machineroom apply",
        )
    )


def test_machineroom_leaves_what_ansible_leaves(ansible: Ansible, lab: Lab, tmp_path: Path) -> None:
    """Same playbook: ansible-playbook on one host, machineroom on another, same end state;
    machineroom's second run changes nothing and its check run on a fresh host writes nothing."""
    host_a, host_b, host_c = lab.hosts[-9:-6]  # see tests/conftest.py for who uses which host

    ansible_out = run_ansible(ansible, lab, host_a, tmp_path / "ansible")
    assert "restart app" in ansible_out  # the handler ran
    ansible_again = run_ansible(ansible, lab, host_a, tmp_path / "ansible-again")
    assert "changed=0" in ansible_again, f"the playbook is not idempotent:\n{ansible_again}"

    project = tmp_path / "project"
    project.mkdir()
    write_machineroom_project(project, lab, host_b)
    first = machineroom_apply(project)
    assert first.returncode == 0, failures(first)
    assert stats(first)[host_b.name]["changed"] > 0

    expected, got = snapshot(lab, host_a), snapshot(lab, host_b)
    assert "restarted parity-app" in expected and "parity-key-1" in expected
    if got != expected:
        pytest.fail(
            f"machineroom left a different state than {ansible.version}:\n"
            + explain_difference(expected, got),
            pytrace=False,
        )

    second = machineroom_apply(project)
    assert second.returncode == 0, failures(second)
    assert stats(second)[host_b.name]["changed"] == 0, changed_tasks(second)
    assert snapshot(lab, host_b) == expected

    check_project = tmp_path / "check"
    check_project.mkdir()
    write_machineroom_project(check_project, lab, host_c)
    before = snapshot(lab, host_c)
    assert "no user parity-app" in before and "## sha256\n## accounts" in before
    checked = machineroom_apply(check_project, "--check")
    assert checked.returncode in (0, 2), failures(checked)
    assert stats(checked)[host_c.name]["changed"] > 0
    after = snapshot(lab, host_c)
    if after != before:
        pytest.fail("check mode changed the host:\n" + explain_difference(before, after))
