"""Applies through a real Dask cluster: a TLS scheduler and two workers on loopback (a
throwaway CA), lab hosts h29-h32, `machineroom apply --cluster tls://...` as a user types it.

w1 has no zone: hosts without a `zone` go to it; w2 has the resource zone-eu: hosts with
`zone: eu` go to it. A task delegated to localhost runs on the worker itself, and the
worker's MR_TEST_WORKER says which one walked the host.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import machineroom
from dasklab import DaskLab, free_port, start_dask
from test_secrets import VAULT_PASSWORD, VAULT_SECRET, _env, _leaks, project  # noqa: F401

from machineroom.errors import ExitCode
from machineroom.lab import Lab

HOSTS = ("h29", "h30", "h31", "h32")
EU = ("h31", "h32")  # zone eu: walked on w2


@pytest.fixture(scope="module")
def dask(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskLab]:
    cluster = start_dask(tmp_path_factory.mktemp("dask"))
    try:
        cluster.start_worker("w1")
        cluster.start_worker("w2", "zone-eu=1")
        yield cluster
    finally:
        cluster.stop()


class Project:
    """A throwaway project: inventory of HOSTS (EU in zone eu), known_hosts, TLS settings."""

    def __init__(self, root: Path, lab: Lab, dask: DaskLab, zones: dict[str, str] | None = None):
        self.root, self.lab, self.dask = root, lab, dask
        zones = {h: "eu" for h in EU} if zones is None else zones
        lines = ["all:", "  vars:", f"    ssh_key: {lab.key}", "  hosts:"]
        for name in HOSTS:
            address = next(h.address for h in lab.hosts if h.name == name)
            zone = f", zone: {zones[name]}" if name in zones else ""
            lines.append(f"    {name}: {{host: {address}, user: root{zone}}}")
        (root / "inventory.yml").write_text("\n".join(lines) + "\n")
        (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
        (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
        (root / "machineroom.yml").write_text("inventory: inventory.yml\n" + dask.settings())
        self.state = root / ".machineroom" / "state.db"

    def write(self, name: str, text: str) -> None:
        (self.root / name).write_text(textwrap.dedent(text))

    def apply(self, *args: str, cluster: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--cluster", self.dask.address] if cluster else []
        return machineroom("apply", *args, *extra, cwd=self.root, timeout=180)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "machineroom", "apply", *args, "--cluster", self.dask.address],
            cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def rows(self, run: int) -> list[tuple[Any, ...]]:
        """(host, task, status) of a run's task rows, sorted."""
        with contextlib.closing(sqlite3.connect(self.state)) as db:
            got = db.execute(
                "SELECT host_id, task, location, status FROM task_results WHERE run_id = ?", (run,)
            ).fetchall()
        return sorted(got)

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.state)) as db:
            return db.execute(sql, args).fetchall()

    def ssh(self, host: str, command: str) -> str:
        out = subprocess.run(
            ["ssh", "-F", str(self.lab.ssh_config), host, command],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.stdout

    def running(self, host: str, command: str) -> int:
        return int(self.ssh(host, f"pgrep -cxf '{command}' || true").strip() or 0)


@pytest.fixture
def proj(tmp_path: Path, lab: Lab, dask: DaskLab) -> Project:
    return Project(tmp_path, lab, dask)


def recap(out: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.startswith(HOSTS) and "ok=" in line)


def wait_until(what: Any, proc: subprocess.Popen[str], why: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if what():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"{why}: never happened\nstdout:\n{out}\nstderr:\n{err}")


SITE = """\
- hosts: all
  strategy: linear
  tasks:
    - name: which worker walks me
      shell: echo "${MR_TEST_WORKER:-controller}"
      delegate_to: localhost
      register: who
      changed_when: false
    - name: one host decides the release
      set_fact:
        release: "r-{{ 6 * 7 }}"
      run_once: true
    - name: config file
      copy:
        dest: "{{ dir }}/app.conf"
        content: "host={{ inventory_hostname }} release={{ release }}\\n"
        mode: "0640"
      notify: restart app
    - name: packages list
      lineinfile:
        path: "{{ dir }}/list"
        line: "{{ item }}"
        create: true
      loop: [a, b, c]
    - name: only in eu
      command: touch {{ dir }}/eu
      args: {creates: "{{ dir }}/eu"}
      when: zone | default('') == 'eu'
    - name: a failure that is ignored
      command: "false"
      ignore_errors: true
      changed_when: false
  handlers:
    - name: restart app
      command: touch {{ dir }}/restarted
- hosts: all
  tasks:
    - name: second play, free strategy
      stat: {path: "{{ dir }}/app.conf"}
      register: conf
    - assert:
        that: [conf.stat.exists, "conf.stat.mode == '0640'"]
"""


def test_a_cluster_apply_matches_a_local_one(proj: Project) -> None:
    proj.write("site.yml", SITE)
    for host in HOSTS:
        proj.ssh(host, "rm -rf /srv/c-local /srv/c-cluster; mkdir -p /srv/c-local /srv/c-cluster")
    local = proj.apply("site.yml", "-e", "dir=/srv/c-local", cluster=False)
    assert local.returncode == 0, local.stdout + local.stderr
    out = proj.apply("site.yml", "-e", "dir=/srv/c-cluster", "-v")
    assert out.returncode == 0, out.stdout + out.stderr
    # the same recap and the same task rows as the local run
    assert recap(out.stdout) == recap(local.stdout)
    assert proj.rows(2) == proj.rows(1)
    # 5 tasks, the handler and play 2's 2 tasks on each host; run_once's row on one host
    assert len(proj.rows(2)) == 8 * len(HOSTS) + 1
    # hosts walked where their zone says
    for host in HOSTS:
        assert f"[{host}]\n    {'w2' if host in EU else 'w1'}" in out.stdout
    # the same end state on the hosts
    for host in HOSTS:
        state = proj.ssh(
            host, "cd /srv/c-cluster && cat app.conf list && stat -c %a app.conf && ls"
        )
        assert state == (
            f"host={host} release=r-42\na\nb\nc\n640\n"
            + ("app.conf\neu\nlist\nrestarted\n" if host in EU else "app.conf\nlist\nrestarted\n")
        )
    # the run is in history like any other, and a re-run changes nothing
    assert proj.db("SELECT status FROM runs WHERE id = 2") == [("ok",)]
    again = proj.apply("site.yml", "-e", "dir=/srv/c-cluster")
    assert again.returncode == 0, again.stdout + again.stderr
    assert all("changed=0" in line for line in recap(again.stdout)), again.stdout


def test_serial_batches_and_max_fail_percentage_hold_across_workers(proj: Project) -> None:
    # batch 1 is h29 (w1) + h30 (w1); batch 2 h31 + h32 (w2): a failure in batch 1 over the
    # limit stops the play before batch 2 starts
    proj.write(
        "serial.yml",
        """\
        - hosts: all
          strategy: linear
          serial: 2
          max_fail_percentage: 40
          tasks:
            - command: "{{ 'false' if inventory_hostname == 'h30' else 'true' }}"
            - command: "true"
        """,
    )
    local = proj.apply("serial.yml", cluster=False)
    out = proj.apply("serial.yml")
    assert out.returncode == local.returncode == ExitCode.HOSTS_FAILED, out.stdout + out.stderr
    assert recap(out.stdout) == recap(local.stdout)
    assert {r[0] for r in proj.rows(2)} == {"h29", "h30"}
    assert proj.rows(2) == proj.rows(1)


def test_any_errors_fatal_stops_hosts_on_the_other_worker(proj: Project) -> None:
    proj.write(
        "fatal.yml",
        """\
        - hosts: all
          strategy: linear
          any_errors_fatal: true
          tasks:
            - command: "{{ 'false' if inventory_hostname == 'h31' else 'true' }}"
            - name: never after the failure
              command: "true"
        """,
    )
    out = proj.apply("fatal.yml")
    assert out.returncode == ExitCode.HOSTS_FAILED, out.stdout + out.stderr
    assert "never after the failure" not in out.stdout
    assert not [r for r in proj.rows(1) if r[1] == "never after the failure"]


def test_a_zone_without_a_worker_is_refused_before_anything_runs(
    tmp_path: Path, lab: Lab, dask: DaskLab
) -> None:
    proj = Project(tmp_path, lab, dask, zones={"h32": "ap"})
    proj.write("site.yml", "- hosts: all\n  tasks:\n    - command: 'true'\n")
    out = proj.apply("site.yml")
    assert out.returncode == ExitCode.USAGE, out.stdout + out.stderr
    assert "zone 'ap' (hosts h32)" in out.stderr
    assert f"dask worker {dask.address} --resources zone-ap=1" in out.stderr
    assert "Traceback" not in out.stderr
    assert not proj.state.exists() or proj.db("SELECT count(*) FROM runs") == [(0,)]


def test_ctrl_c_stops_the_commands_on_every_worker(proj: Project) -> None:
    sleep = f"sleep {1000 + uuid.uuid4().int % 8999}"
    proj.write("slow.yml", f"- hosts: h29:h31\n  tasks:\n    - command: {sleep}\n")
    proc = proj.start("slow.yml")
    wait_until(
        lambda: proj.running("h29", sleep) and proj.running("h31", sleep), proc, "both sleeping"
    )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == ExitCode.INTERRUPTED, out + err
    assert proj.running("h29", sleep) == 0 and proj.running("h31", sleep) == 0
    assert proj.db("SELECT status FROM runs") == [("interrupted",)]
    assert "Traceback" not in err


def test_a_lost_worker_leaves_its_hosts_interrupted_and_resumable(
    tmp_path: Path, lab: Lab, dask: DaskLab
) -> None:
    # h32 walks on w3 (zone k), which is killed while h32 sleeps; h29 (w1) finishes
    dask.start_worker("w3", "zone-k=1")
    proj = Project(tmp_path, lab, dask, zones={"h32": "k"})
    sleep = f"sleep {1000 + uuid.uuid4().int % 8999}"
    napping = "nap | default('1') != '0' and inventory_hostname == 'h32'"
    command = f"{{{{ '{sleep}' if {napping} else 'true' }}}}"
    proj.write(
        "site.yml",
        f"""\
        - hosts: h29:h32
          pre_tasks:
            - name: prep step
              command: "true"
          tasks:
            - command: "{command}"
            - name: done
              command: touch /tmp/mr-cluster-resumed
        """,
    )
    proc = proj.start("site.yml")
    try:
        wait_until(lambda: proj.running("h32", sleep), proc, "h32 sleeping")
        dask.kill_worker("w3")
        out, err = proc.communicate(timeout=90)
    finally:
        proj.ssh("h32", f"pkill -xf '{sleep}' || true")
    assert proc.returncode == ExitCode.INTERRUPTED, out + err
    assert "worker w3 left the cluster" in out + err
    assert proj.db("SELECT status FROM runs WHERE id = 1") == [("interrupted",)]
    pending = {h: json.loads(a) for h, a in proj.db("SELECT id, next_action FROM server_room")}
    assert pending["h32"].get("stage") == "main", pending
    assert not pending["h29"], pending
    # resumed with a new worker in the zone: only h32, from the stage it was in
    dask.start_worker("w3b", "zone-k=1")
    try:
        again = proj.apply("site.yml", "--resume", "-e", "nap=0")
        assert again.returncode == 0, again.stdout + again.stderr
        assert [line.split()[0] for line in recap(again.stdout)] == ["h32"]
        assert {r[0] for r in proj.rows(2)} == {"h32"}
        assert "prep step" not in [r[1] for r in proj.rows(2)]
    finally:
        dask.kill_worker("w3b")


def test_tcp_cluster_refuses_a_run_with_secrets(proj: Project) -> None:
    proj.write("site.yml", "- hosts: all\n  tasks:\n    - command: 'true'\n")
    out = machineroom("apply", "site.yml", "--cluster", "tcp://127.0.0.1:1", cwd=proj.root)
    assert out.returncode == ExitCode.USAGE, out.stdout + out.stderr
    assert "carries secrets (key file" in out.stderr and "tls://" in out.stderr


def test_an_unreachable_scheduler_is_one_clear_error(proj: Project) -> None:
    proj.write("site.yml", "- hosts: all\n  tasks:\n    - command: 'true'\n")
    address = f"tls://127.0.0.1:{free_port()}"
    out = machineroom("apply", "site.yml", "--cluster", address, "-T", "2", cwd=proj.root)
    assert out.returncode == ExitCode.USAGE, out.stdout + out.stderr
    assert f"--cluster {address}: the scheduler cannot be reached" in out.stderr
    assert "Traceback" not in out.stderr
    bad = machineroom("apply", "site.yml", "--cluster", "http://x", cwd=proj.root)
    assert bad.returncode == ExitCode.USAGE and "expected local:N" in bad.stderr


def test_secrets_travel_sealed_and_are_never_shown(project: Path, lab: Lab, dask: DaskLab) -> None:  # noqa: F811
    env = _env(lab)
    (project / "machineroom.yml").write_text(dask.settings())
    secrets = [env["DEPLOY_PW"], VAULT_SECRET, VAULT_PASSWORD]
    out = machineroom(
        "apply", "site.yml", "-vv", "--diff", "-e", "db_password=extra-pw-9137",
        "--cluster", dask.address, cwd=project, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "login=***" in out.stdout and "the token is ***" in out.stdout
    assert _leaks(out.stdout + out.stderr, [*secrets, "extra-pw-9137"]) == []
    assert _leaks(dask.logs(), [*secrets, "extra-pw-9137"]) == []
    db = sqlite3.connect(project / ".machineroom" / "state.db")
    try:
        stored = " ".join(
            str(v) for row in db.execute("SELECT command, stdout_tail FROM audit_log") for v in row
        )
    finally:
        db.close()
    assert _leaks(stored, secrets) == []


def test_a_local_cluster_of_worker_processes(proj: Project) -> None:
    proj.write("site.yml", "- hosts: h29\n  tasks:\n    - command: hostname\n")
    out = machineroom("apply", "site.yml", "--cluster", "local:2", cwd=proj.root, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "h29 : ok=1" in out.stdout.replace("  ", " ")


def test_group_by_and_add_host_on_workers_shape_later_plays(proj: Project) -> None:
    proj.write(
        "groups.yml",
        """\
        - hosts: all
          tasks:
            - group_by: {key: "in_{{ zone | default('none') }}"}
            - add_host: {name: extra1, groups: extras, ansible_connection: local}
              run_once: true
        - hosts: in_eu
          tasks:
            - name: only the eu hosts
              command: "true"
        - hosts: extras
          gather_facts: false
          tasks:
            - name: the added host
              debug: {msg: "{{ inventory_hostname }} in {{ group_names }}"}
        """,
    )
    local = proj.apply("groups.yml", cluster=False)
    out = proj.apply("groups.yml")
    assert out.returncode == local.returncode == 0, out.stdout + out.stderr
    assert recap(out.stdout) == recap(local.stdout)
    assert sorted(r[0] for r in proj.rows(2) if r[1] == "only the eu hosts") == list(EU)
    assert "extra1 in ['extras']" in out.stdout
