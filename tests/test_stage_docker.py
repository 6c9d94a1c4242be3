"""The docker, watchtower and yacht stages, the compose module and `scan-docker`, against a
real Docker daemon inside the lab's last host.

The docker role installs Debian's docker.io and docker-compose (v1) in that host (apt-get in a
lab host writes only its own overlay) and starts the daemon with the lab-safe options in
daemon.json (no bridge, no iptables, no forwarding or masquerading), on a tmpfs
/var/lib/docker. Lab hosts have no CAP_NET_ADMIN (so a playbook cannot touch the machine's
shared network): that daemon runs, but containers cannot set up their network namespace. For
the container tests the test restarts the daemon from the machine with `nsenter` into the
host's namespaces and `unshare --net`: it then has its own, private network namespace, so
whatever it does to networking stays there. Images are built in the host from Debian's
busybox-static with `docker import` (no Docker Hub). At the end every container is removed,
the daemon stopped and its cgroup folders removed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from dockerlab import BUILD_IMAGES, CLEAN_UP, DOCKER_TMPFS, SAFE_DAEMON, start_capable_daemon

from machineroom.connection import Connection, ConnectOptions
from machineroom.connection import open_connection as connect
from machineroom.executor.step import run_module
from machineroom.inventory.model import Host
from machineroom.lab import Lab
from machineroom.modules import get_module
from machineroom.modules.base import ModuleContext, Outcome, quote

ROLES = Path(__file__).resolve().parents[1] / "roles"
IMAGE = "mr-app:1"
TIMES: dict[str, float] = {}


def machineroom(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


class DockerHost:
    """The lab host that runs docker: a project folder around it and a connection to it."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab = lab
        self.target = lab.hosts[-1]
        self.root = root
        self.name = "d1"
        (root / "inventory.yml").write_text(
            "all:\n  hosts:\n"
            f"    {self.name}: {{host: {self.target.address}, port: {self.target.port}, "
            f"user: root, ssh_key: {lab.key}}}\n"
        )
        (root / ".machineroom").mkdir(mode=0o700)
        (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
        (root / "roles").symlink_to(ROLES)
        host = Host(
            id=self.name,
            host=self.target.address,
            port=self.target.port,
            user="root",
            ssh_key=lab.key,
        )
        self.commands = 0

        def count(_host: Any, _result: Any) -> None:
            self.commands += 1

        self.conn: Connection = connect(
            host, ConnectOptions(known_hosts_files=(lab.known_hosts,), on_command=count)
        )

    def sh(self, command: str, *, ok: bool = True) -> str:
        """A helper command on the host (not a task)."""
        result = self.conn.run(command, timeout=300)
        if ok:
            assert result.exit_code == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def playbook(self, name: str, stages: list[str], variables: Mapping[str, Any]) -> Path:
        path = self.root / name
        path.write_text(json.dumps([{"hosts": "all", "vars": variables, "stages": stages}]))
        return path

    def apply(self, playbook: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
        started = time.monotonic()
        out = machineroom("apply", str(playbook), "--json", *args, cwd=self.root)
        label = f"apply {playbook.stem} {' '.join(args)}".strip()
        TIMES[f"{label} #{sum(k.startswith(label + ' #') for k in TIMES) + 1}"] = (
            time.monotonic() - started
        )
        try:
            report = json.loads(out.stdout)
        except json.JSONDecodeError:
            report = None
        assert report is not None, out.stdout + out.stderr
        return out, report

    def compose(
        self, args: Mapping[str, Any], *, check: bool = False, diff: bool = False
    ) -> Outcome:
        """One compose task, run directly; it must cost exactly one remote command."""
        module = get_module("compose")
        assert module is not None
        before = self.commands
        outcome = run_module(
            module, args, ModuleContext(host_id=self.name, check=check, diff=diff), self.conn
        )
        assert self.commands - before == 1, "a compose task must cost one remote command"
        return outcome

    def res(self) -> dict[str, Any]:
        with sqlite3.connect(self.root / ".machineroom" / "state.db") as db:
            row = db.execute("SELECT res FROM server_room WHERE id = ?", [self.name]).fetchone()
        return dict(json.loads(row[0]))

    def inspect(self, container: str, template: str) -> str:
        return self.sh(f"docker inspect -f {quote(template)} {quote(container)}").strip()


def _changed(report: Any) -> int:
    return int(sum(s["changed"] for s in report["stats"].values()))


def _start_capable_daemon(host: DockerHost) -> None:
    """Restart dockerd with CAP_NET_ADMIN, in a network namespace of its own (see the top)."""
    start_capable_daemon(host.lab.lab_dir, host.target.name, host.sh)


def _clean_up(host: DockerHost) -> None:
    """No container, no daemon, no cgroup folder left behind on the machine."""
    host.sh(CLEAN_UP, ok=False)


@pytest.fixture(scope="module")
def docker_host(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    """The last lab host, with a tmpfs on /var/lib/docker, before the docker role ran."""
    host = DockerHost(lab, tmp_path_factory.mktemp("docker"))
    host.sh(DOCKER_TMPFS)
    try:
        yield host
    finally:
        _clean_up(host)
        host.conn.close()
        for name, seconds in TIMES.items():
            print(f"{name}: {seconds:.1f} s")


@pytest.fixture(scope="module")
def docker_ready(docker_host: DockerHost) -> DockerHost:
    """The docker role has run; the daemon can start containers; the images exist."""
    playbook = docker_host.playbook(
        "docker.yml", ["docker"], {"docker_daemon_options": SAFE_DAEMON}
    )
    out, _ = docker_host.apply(playbook)
    assert out.returncode == 0, out.stdout + out.stderr
    _start_capable_daemon(docker_host)
    images = docker_host.sh(BUILD_IMAGES).split()
    assert images == ["mr-app:1", "mr-app:2"]
    return docker_host


def test_docker_role_installs_starts_records_and_is_idempotent(docker_host: DockerHost) -> None:
    playbook = docker_host.playbook(
        "docker.yml", ["docker"], {"docker_daemon_options": SAFE_DAEMON}
    )
    out, report = docker_host.apply(playbook)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _changed(report) >= 4  # daemon.json, ulimit block, packages, started (+ handler)
    assert docker_host.sh("docker info --format '{{.ServerVersion}}'").startswith("20.10")
    assert json.loads(docker_host.sh("cat /etc/docker/daemon.json")) == SAFE_DAEMON
    # the safe options hold: no bridge, only the host and none networks
    assert docker_host.sh("docker network ls --format '{{.Name}}' | sort").split() == [
        "host",
        "none",
    ]
    res = docker_host.res()
    assert res["docker_installed"] is True
    assert res["docker_compose_installed"] is True
    assert res["docker_version"].startswith("20.10")
    assert res["docker_compose_version"] == "1.29.2"
    assert res["docker_compose_kind"] == "v1"
    assert res["docker_install_source"] == "distro"

    out, report = docker_host.apply(playbook)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _changed(report) == 0
    out, report = docker_host.apply(playbook, "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert _changed(report) == 0


def test_docker_role_refuses_too_little_memory(docker_host: DockerHost) -> None:
    playbook = docker_host.playbook("small.yml", ["docker"], {"ram_gb_requirement": 4096})
    out, report = docker_host.apply(playbook)
    assert out.returncode == 2
    text = json.dumps(report)
    assert "ram_gb_requirement" in text and "4096" in text


def test_docker_role_refuses_an_unsupported_os(docker_host: DockerHost) -> None:
    playbook = docker_host.playbook(
        "os.yml", ["docker"], {"docker_supported_os_families": ["RedHat"]}
    )
    out, report = docker_host.apply(playbook)
    assert out.returncode == 2
    assert "Debian" in json.dumps(report)


def _app(command: str, **extra: Any) -> dict[str, Any]:
    """A compose definition of one service on our image, with no network."""
    service: dict[str, Any] = {
        "image": IMAGE,
        "network_mode": "none",
        "stop_grace_period": "1s",
        "environment": {"V": "${V}"},
        "command": ["/bin/sh", "-c", command],
        **extra,
    }
    return {"services": {"app": service}}


GOOD = _app("echo app v$$V started; exec sleep 100000")
CRASH = _app("echo app v$$V is broken: missing config >&2; exit 3")
UNHEALTHY = _app(
    "echo app v$$V up but sick; exec sleep 100000",
    healthcheck={"test": ["CMD", "/bin/false"], "interval": "1s", "retries": 1, "timeout": "1s"},
)


def test_compose_first_run_second_run_and_check_mode(docker_ready: DockerHost) -> None:
    host = docker_ready
    args = {"project_src": "/srv/shop", "definition": GOOD, "env": {"V": "1"}}
    outcome = host.compose(args, check=True, diff=True)
    assert outcome.status == "changed" and "would deploy" in outcome.msg
    assert "+    image: mr-app:1" in outcome.diff and "+V" in outcome.diff
    assert host.sh("[ -e /srv/shop ] && echo yes || echo no").strip() == "no"

    started = time.monotonic()
    outcome = host.compose(args, diff=True)
    TIMES["compose first run"] = time.monotonic() - started
    assert outcome.status == "changed", outcome.msg
    assert outcome.result["compose"] == "v1"
    assert host.inspect("shop_app_1", "{{.State.Status}}") == "running"
    assert host.sh("docker logs shop_app_1").strip() == "app v1 started"
    assert host.sh("cat /srv/shop/.env") == "V=1\n"
    assert host.sh("stat -c %a /srv/shop/.env").strip() == "600"
    container = host.inspect("shop_app_1", "{{.Id}}")

    started = time.monotonic()
    outcome = host.compose(args)
    TIMES["compose second run"] = time.monotonic() - started
    assert outcome.status == "ok", outcome.msg
    assert host.inspect("shop_app_1", "{{.Id}}") == container

    # check mode with a new value: reported (keys only: values may be secrets), not done
    outcome = host.compose({**args, "env": {"V": "secret-2"}}, check=True, diff=True)
    assert outcome.status == "changed"
    assert "~V (value changed)" in outcome.diff and "secret-2" not in outcome.diff
    assert host.sh("cat /srv/shop/.env") == "V=1\n"
    assert host.inspect("shop_app_1", "{{.Id}}") == container

    # a stopped container is started again: changed, though no file changed
    host.sh("docker stop -t 1 shop_app_1 >/dev/null")
    outcome = host.compose(args)
    assert outcome.status == "changed" and outcome.msg.startswith("brought up")
    assert host.inspect("shop_app_1", "{{.State.Status}}") == "running"


def test_compose_rolls_back_when_the_new_version_exits(docker_ready: DockerHost) -> None:
    host = docker_ready
    args = {"project_src": "/srv/crash", "definition": GOOD, "env": {"V": "1"}}
    assert host.compose(args).status == "changed"
    started = time.monotonic()
    outcome = host.compose({**args, "definition": CRASH, "env": {"V": "2"}})
    TIMES["compose rollback (service exits)"] = time.monotonic() - started
    assert outcome.status == "failed"
    assert "crash_app_1: exited (exit code 3)" in outcome.msg
    assert "rolled back to the previous version, which runs again" in outcome.msg
    assert "app v2 is broken: missing config" in outcome.msg  # the container's last log lines
    assert outcome.result["rollback"] == "ok"
    # the previous version runs again, with its files back in place
    assert host.inspect("crash_app_1", "{{.State.Status}}") == "running"
    assert host.sh("docker logs crash_app_1").strip() == "app v1 started"
    assert host.sh("cat /srv/crash/.env") == "V=1\n"
    assert host.sh("cat /srv/crash/.env.failed") == "V=2\n"
    assert "exit 3" in host.sh("cat /srv/crash/docker-compose.yml.failed")
    # and the good version is still what a rerun finds: nothing to do
    assert host.compose(args).status == "ok"


def test_compose_rolls_back_when_the_new_version_is_unhealthy(docker_ready: DockerHost) -> None:
    host = docker_ready
    args = {"project_src": "/srv/health", "definition": GOOD, "env": {"V": "1"}}
    assert host.compose(args).status == "changed"
    started = time.monotonic()
    outcome = host.compose({**args, "definition": UNHEALTHY, "env": {"V": "2"}, "timeout": 30})
    TIMES["compose rollback (unhealthy)"] = time.monotonic() - started
    assert outcome.status == "failed"
    assert "health_app_1: running, unhealthy" in outcome.msg
    assert "app v2 up but sick" in outcome.msg
    assert outcome.result["rollback"] == "ok"
    assert host.inspect("health_app_1", "{{.State.Status}}") == "running"
    assert host.sh("docker logs health_app_1").strip() == "app v1 started"


def test_compose_first_version_failing_is_taken_down(docker_ready: DockerHost) -> None:
    host = docker_ready
    outcome = host.compose({"project_src": "/srv/first", "definition": CRASH, "env": {"V": "9"}})
    assert outcome.status == "failed"
    assert "no previous version: took the failed one down" in outcome.msg
    assert host.sh("docker ps -aq --filter label=com.docker.compose.project=first") == ""
    assert host.sh("ls -A /srv/first").split() == [".env.failed", "docker-compose.yml.failed"]


def test_compose_refuses_an_invalid_definition_and_changes_nothing(
    docker_ready: DockerHost,
) -> None:
    host = docker_ready
    args = {"project_src": "/srv/valid", "definition": GOOD, "env": {"V": "1"}}
    assert host.compose(args).status == "changed"
    bad = {"services": {"app": {**GOOD["services"]["app"], "restart_policy": "sometimes"}}}
    outcome = host.compose({**args, "definition": bad})
    assert outcome.status == "failed"
    assert "invalid" in outcome.msg and "restart_policy" in outcome.msg
    assert "sometimes" not in host.sh("cat /srv/valid/docker-compose.yml")
    assert host.sh("ls -A /srv/valid").split() == [".env", "docker-compose.yml"]


def test_compose_absent(docker_ready: DockerHost) -> None:
    host = docker_ready
    args = {"project_src": "/srv/gone", "definition": GOOD, "env": {"V": "1"}}
    assert host.compose(args).status == "changed"
    assert host.compose({**args, "state": "absent"}, check=True).status == "changed"
    assert host.inspect("gone_app_1", "{{.State.Status}}") == "running"
    assert host.compose({**args, "state": "absent"}).status == "changed"
    assert host.sh("docker ps -aq --filter label=com.docker.compose.project=gone") == ""
    assert host.compose({**args, "state": "absent"}).status == "ok"


def test_watchtower_and_yacht_stages(docker_ready: DockerHost) -> None:
    host = docker_ready
    variables = {
        "watchtower_image": "mr-app",
        "watchtower_version": "1",
        "watchtower_args": ["/bin/sh", "-c", "echo watching; exec sleep 100000"],
        "watchtower_network_mode": "none",
        "yacht_image": "mr-app",
        "yacht_version": "2",
        "yacht_command": ["/bin/sh", "-c", "echo ui; exec sleep 100000"],
        "yacht_network_mode": "none",
    }
    playbook = host.playbook("apps.yml", ["watchtower", "yacht"], variables)
    out, report = host.apply(playbook)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _changed(report) == 4  # two deployments, two records
    assert host.inspect("watchtower_watchtower_1", "{{.Config.Image}}") == "mr-app:1"
    assert host.inspect("yacht_yacht_1", "{{.Config.Image}}") == "mr-app:2"
    assert host.inspect("yacht_yacht_1", "{{.State.Status}}") == "running"
    res = host.res()
    assert res["watchtower_installed"] is True and res["watchtower_image"] == "mr-app:1"
    assert res["yacht_installed"] is True and res["yacht_image"] == "mr-app:2"
    out, report = host.apply(playbook)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _changed(report) == 0
    out, report = host.apply(playbook, "--check")
    assert _changed(report) == 0


def test_scan_docker_lists_and_records_containers(docker_ready: DockerHost) -> None:
    host = docker_ready
    host.compose({"project_src": "/srv/scan", "definition": GOOD, "env": {"V": "1"}})
    host.sh("docker run -d --name scan-stopped --network none mr-app:1 true >/dev/null; sleep 1")
    out = machineroom("scan-docker", "all", cwd=host.root)
    assert out.returncode == 0, out.stderr
    assert "d1:" in out.stdout and "scan_app_1" in out.stdout
    for alias in ("scandocker", "validation", "valid"):
        again = machineroom(alias, "d1", "--json", cwd=host.root)
        assert again.returncode == 0, again.stderr
        containers = {c["name"]: c for c in json.loads(again.stdout)["d1"]["containers"]}
        assert containers["scan_app_1"]["state"] == "running"
        assert containers["scan_app_1"]["project"] == "scan"
        assert containers["scan-stopped"]["state"] == "exited"
    res = host.res()
    names = {c["name"]: c["state"] for c in res["containers"]}
    assert names["scan_app_1"] == "running" and names["scan-stopped"] == "exited"
    assert res["containers_at"]


def test_compose_arguments_are_checked() -> None:
    from machineroom.errors import InputError

    module = get_module("compose")
    assert module is not None
    ctx = ModuleContext(host_id="x")
    with pytest.raises(InputError, match="project_name"):
        module.build({"project_src": "/a", "project_name": "Bad Name", "definition": "x"}, ctx)
    with pytest.raises(InputError, match="not a variable name"):
        module.build({"project_src": "/a", "definition": "x", "env": {"A-B": "1"}}, ctx)
    with pytest.raises(InputError, match="newline"):
        module.build({"project_src": "/a", "definition": "x", "env": {"A": "1\n2"}}, ctx)
    with pytest.raises(InputError, match="definition or src"):
        module.build({"project_src": "/a"}, ctx)
    step = module.build({"project_src": "/srv/My App!", "definition": {"services": {}}}, ctx)
    assert step is not None and "project=myapp" in step.script
