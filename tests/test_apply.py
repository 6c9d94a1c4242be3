"""`machineroom apply` end to end against real sshd lab hosts: the engine's promises.

Each test writes a small project (inventory of some lab hosts, a playbook, roles) into
tmp_path and runs the CLI as a subprocess, then checks what a user would: files on the host,
the JSON report, the database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab


def machineroom(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class Project:
    """A throwaway inventory repo around some lab hosts."""

    def __init__(self, root: Path, lab: Lab, hosts: list[str], extra_hosts: str = "") -> None:
        self.root = root
        self.lab = lab
        self.hosts = hosts
        lines = ["all:", "  vars:", f"    ssh_key: {lab.key}", "  children:", "    web:"]
        lines.append("      hosts:")
        for name in hosts:
            address = next(h.address for h in lab.hosts if h.name == name)
            lines.append(f"        {name}: {{host: {address}, user: root}}")
        (root / "inventory.yml").write_text("\n".join(lines) + "\n" + extra_hosts)
        (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
        (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def apply(self, *args: str, **kw: Any) -> tuple[subprocess.CompletedProcess[str], Any]:
        out = machineroom("apply", *args, "--json", cwd=self.root, **kw)
        try:
            report = json.loads(out.stdout)
        except json.JSONDecodeError:
            report = None
        return out, report

    def sh(self, host: str, command: str) -> str:
        """Run `command` on the hosts `host` matches; the first one's stdout."""
        out = machineroom("run", host, "--json", "--", command, cwd=self.root)
        hosts = json.loads(out.stdout)["hosts"]
        return str(next(iter(hosts.values()))["stdout"])

    def db(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.root / ".machineroom" / "state.db") as db:
            return list(db.execute(sql))


def changed(report: Any) -> dict[str, int]:
    return {h: s["changed"] for h, s in report["stats"].items()}


def tasks_of(report: Any, host: str) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][host]["tasks"]}


@pytest.fixture
def project(tmp_path: Path, lab: Lab) -> Project:
    return Project(tmp_path, lab, ["h8", "h9"])


def test_first_run_changes_second_run_changes_nothing(project: Project) -> None:
    project.write(
        "roles/app/templates/app.conf.j2",
        """\
        # {{ app_name }} on {{ inventory_hostname }}
        port = {{ app_port }}
        {% for u in app_users %}
        user {{ u }}
        {% endfor %}
        """,
    )
    project.write("roles/app/defaults/main.yml", "app_port: 8080\napp_users: [ann, bob]\n")
    project.write(
        "roles/app/tasks/main.yml",
        """\
        - name: app folder
          file: {path: /srv/app, state: directory, mode: "0750"}
        - name: config
          template: {src: app.conf.j2, dest: /srv/app/app.conf, mode: "0640"}
          notify: restart app
        - name: marker line
          lineinfile: {path: /srv/app/extra.conf, line: "# managed", create: true}
        - name: setup once
          command: touch /srv/app/.setup
          args: {creates: /srv/app/.setup}
        """,
    )
    project.write(
        "roles/app/handlers/main.yml",
        """\
        - name: restart app
          shell: echo restarted >> /srv/app/restarts
        """,
    )
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          vars: {app_name: shop}
          stages: [app]
        """,
    )
    out, report = project.apply("site.yml")
    assert out.returncode == 0, out.stderr
    assert changed(report) == {"h8": 5, "h9": 5}
    conf = project.sh(
        "h8",
        "cat /srv/app/app.conf /srv/app/extra.conf; stat -c '%a %U' /srv/app/app.conf /srv/app",
    )
    assert conf.splitlines() == [
        "# shop on h8",
        "port = 8080",
        "user ann",
        "user bob",
        "# managed",
        "640 root",
        "750 root",
    ]
    assert project.sh("h9", "cat /srv/app/restarts") == "restarted\n"
    again, report2 = project.apply("site.yml")
    assert again.returncode == 0, again.stderr
    assert changed(report2) == {"h8": 0, "h9": 0}
    assert project.sh("h9", "cat /srv/app/restarts") == "restarted\n"  # handler not rerun
    # the recap in the database says the same
    summary = json.loads(
        str(project.db("SELECT summary FROM runs WHERE kind = 'apply' ORDER BY id DESC")[0][0])
    )
    assert summary["hosts"]["h8"]["changed"] == 0


def test_check_mode_changes_nothing_and_diff_shows_the_change(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: h8
          gather_facts: false
          tasks:
            - copy: {content: "new text\\n", dest: /srv/check.txt, mode: "0600"}
        """,
    )
    out, report = project.apply("site.yml", "--check", "--diff")
    assert out.returncode == 0, out.stderr
    assert changed(report) == {"h8": 1}
    task = report["hosts"]["h8"]["tasks"][0]
    assert "+new text" in task["diff"]
    assert project.sh("h8", "test -e /srv/check.txt && echo exists || echo absent") == "absent\n"


def test_loops_when_register_and_blocks(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          tasks:
            - name: make files
              copy: {content: "{{ item.text }}\\n", dest: "/srv/loop-{{ item.name }}"}
              loop: [{name: a, text: alpha}, {name: b, text: beta}]
              loop_control: {label: "{{ item.name }}"}
            - name: read back
              command: cat /srv/loop-a /srv/loop-b
              register: both
              changed_when: false
            - name: only on h8
              copy: {content: "{{ both.stdout_lines | join(',') }}\\n", dest: /srv/joined}
              when: inventory_hostname == 'h8'
            - name: recover
              block:
                - command: /bin/false
                - copy: {content: never, dest: /srv/never}
              rescue:
                - copy: {content: "rescued {{ ansible_failed_task.name | default('?') }}\\n",
                         dest: /srv/rescued}
              always:
                - copy: {content: "always\\n", dest: /srv/always}
        """,
    )
    out, report = project.apply("site.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert project.sh("h8", "cat /srv/joined") == "alpha,beta\n"
    assert project.sh("h9", "test -e /srv/joined || echo none") == "none\n"
    assert tasks_of(report, "h9")["only on h8"]["status"] == "skipped"
    items = tasks_of(report, "h8")["make files"]["items"]
    assert [i["item"] for i in items] == ["a", "b"]
    assert project.sh("h8", "cat /srv/always; test -e /srv/never || echo no-never") == (
        "always\nno-never\n"
    )
    assert project.sh("h8", "test -e /srv/rescued && echo rescued") == "rescued\n"
    assert report["hosts"]["h8"]["status"] == "ok"


def test_invalid_input_exits_4_and_contacts_nothing(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: web
          tasks:
            - name: Install docker
              aptt: {name: docker.io}
        """,
    )
    out = machineroom("apply", "site.yml", cwd=project.root)
    assert out.returncode == 4
    assert "site.yml:4:7: task \"Install docker\": unknown module 'aptt'" in out.stderr
    assert "did you mean 'apt'" in out.stderr
    assert not (project.root / ".machineroom" / "state.db").exists() or not project.db(
        "SELECT * FROM audit_log"
    )


def test_undefined_variable_names_variable_task_host_and_line(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: h8
          gather_facts: false
          tasks:
            - name: Write version
              copy: {content: "{{ docker_version }}", dest: /srv/v}
        """,
    )
    out, report = project.apply("site.yml")
    assert out.returncode == 2
    msg = report["hosts"]["h8"]["tasks"][0]["msg"]
    assert "site.yml:4:7" in msg
    assert 'task "Write version" on h8' in msg
    assert "undefined variable 'docker_version'" in msg


def test_host_output_is_never_rendered_as_a_template(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: h8
          gather_facts: false
          vars: {secret: "do-not-leak"}
          tasks:
            - command: printf '%s' "{{ '{{' }} secret {{ '}}' }}"
              register: evil
            - copy: {content: "got {{ evil.stdout }}\\n", dest: /srv/injection}
            - set_fact: {echoed: "{{ evil.stdout }}"}
            - copy: {content: "{{ echoed }}\\n", dest: /srv/injection2}
        """,
    )
    out, _ = project.apply("site.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert project.sh("h8", "cat /srv/injection /srv/injection2") == (
        "got {{ secret }}\n{{ secret }}\n"
    )


def test_hostile_values_pass_through_unharmed(project: Project) -> None:
    nasty = 'it\'s "q"; $(touch /tmp/pwned) `id` & done\nline2 $HOME'
    project.write("vars.yml", json.dumps({"nasty": nasty}))
    project.write(
        "site.yml",
        """\
        - hosts: h8
          gather_facts: false
          vars_files: [vars.yml]
          tasks:
            - copy: {content: "{{ nasty }}", dest: "/srv/we ird; $(x)"}
            - command: {argv: [printf, "%s", "{{ nasty }}"], expand_argument_vars: false}
              register: echoed
            - copy: {content: "{{ echoed.stdout }}", dest: /srv/echoed}
            - lineinfile: {path: /srv/lines, line: "{{ nasty | replace('\\n', ' ') }}",
                           create: true}
            - user: {name: hostile, comment: "{{ nasty | replace('\\n', ' ') }}"}
        """,
    )
    out, _ = project.apply("site.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert project.sh("h8", "cat '/srv/we ird; $(x)'") == nasty
    assert project.sh("h8", "cat /srv/echoed") == nasty  # $HOME as written: not expanded
    assert project.sh("h8", "cat /srv/lines") == nasty.replace("\n", " ") + "\n"
    assert (
        project.sh("h8", "getent passwd hostile | cut -d: -f5") == nasty.replace("\n", " ") + "\n"
    )
    assert project.sh("h8", "test -e /tmp/pwned && echo PWNED || echo clean") == "clean\n"


def test_one_remote_command_per_task_or_one_program(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: h8
          gather_facts: false
          tasks:
            - file: {path: /srv/count, state: directory}
            - copy: {content: x, dest: /srv/count/a}
            - lineinfile: {path: /srv/count/b, line: y, create: true}
            - command: "true"
            - debug: {msg: local only}
        """,
    )
    counts = []
    for flags in (("--no-programs",), ()):
        out, report = project.apply("site.yml", *flags)
        assert out.returncode == 0, out.stderr
        run_id = report["run_id"]
        counts.append(project.db(f"SELECT count(*) FROM audit_log WHERE run_id = {run_id}")[0][0])
    # four remote tasks, one command each; debug runs locally; as one per-host program: one
    assert counts == [4, 1]


def test_failure_records_next_action_and_resume_continues_there(project: Project) -> None:
    for name in ("one", "two"):
        project.write(
            f"roles/{name}/tasks/main.yml",
            f"""\
            - copy: {{content: "{name}\\n", dest: /srv/stage-{name}}}
            - command: test -e /srv/allow-{name}
            """,
        )
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          stages: [one, two]
        """,
    )
    project.sh("h8", "touch /srv/allow-one /srv/allow-two")
    project.sh("h9", "touch /srv/allow-one; rm -f /srv/allow-two")
    out, report = project.apply("site.yml")
    assert out.returncode == 2
    assert report["hosts"]["h9"]["status"] == "failed"
    pending = dict(project.db("SELECT id, next_action FROM server_room"))
    assert json.loads(str(pending["h9"]))["stage"] == "two"
    assert json.loads(str(pending["h8"])) == {}
    # another playbook does not resume site.yml's stage (it would skip its own first stages)
    project.write("other.yml", "- hosts: web\n  tasks: [{command: 'true'}]\n")
    other, _ = project.apply("other.yml", "--resume")
    assert other.returncode == 5, other.stdout + other.stderr
    assert "no host is pending in other.yml" in other.stderr
    assert "h9 in site.yml" in other.stderr
    assert "Traceback" not in other.stderr
    project.sh("h9", "touch /srv/allow-two")
    resumed, report2 = project.apply("site.yml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert set(report2["stats"]) == {"h9"}
    ran = {t["stage"] for t in report2["hosts"]["h9"]["tasks"]}
    assert ran == {"two"}
    assert json.loads(str(dict(project.db("SELECT id, next_action FROM server_room"))["h9"])) == {}


def test_serial_and_max_fail_percentage_with_a_host_lost_mid_run(tmp_path: Path, lab: Lab) -> None:
    project = Project(tmp_path, lab, ["h10", "h11", "h12", "h13"])
    # On h10 the second task takes root's key away and cuts the session: the third task
    # finds the connection gone, the one reconnect is refused, and h10 is unreachable.
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          serial: 2
          max_fail_percentage: 40
          tasks:
            - copy: {content: "{{ inventory_hostname }}\\n", dest: /srv/serial}
            - shell: >-
                mv /root/.ssh/authorized_keys /root/.ssh/ak.off &&
                (sleep 0.3; pkill -9 -f 'sshd: root') >/dev/null 2>&1 &
              when: inventory_hostname == 'h10'
            - command: sleep 1
            - copy: {content: "done\\n", dest: /srv/serial-done}
        """,
    )
    try:
        out, report = project.apply("site.yml")
    finally:
        restore_root_key(lab, "h10")
    assert out.returncode == 3, out.stdout + out.stderr
    assert report["stats"]["h10"]["unreachable"] == 1
    assert report["stats"]["h10"]["ok"] >= 2  # it was reachable for the first two tasks
    assert report["hosts"]["h10"]["status"] == "unreachable"
    # the batch (h10, h11) is 50% failed > 40%: the play stops for everyone, as Ansible's
    # does: h11 runs no task after the failure, h12 and h13 never start
    assert project.sh("h11", "cat /srv/serial; test -e /srv/serial-done || echo stopped") == (
        "h11\nstopped\n"
    )
    assert project.sh("h12", "test -e /srv/serial || echo untouched") == "untouched\n"
    assert project.sh("h13", "test -e /srv/serial || echo untouched") == "untouched\n"
    pending = json.loads(str(dict(project.db("SELECT id, next_action FROM server_room"))["h10"]))
    assert pending["stage"] == "main"


def restore_root_key(lab: Lab, name: str) -> None:
    """Give root its key back, logging in as deploy (password) and using its sudo."""
    import paramiko

    address = next(h.address for h in lab.hosts if h.name == name)
    client = paramiko.SSHClient()
    client.load_host_keys(lab.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address,
        username="deploy",
        password=lab.users["deploy"],
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    try:
        _, stdout, _ = client.exec_command(
            "sudo -n sh -c 'test -e /root/.ssh/ak.off && "
            "mv /root/.ssh/ak.off /root/.ssh/authorized_keys || true'"
        )
        stdout.channel.recv_exit_status()
    finally:
        client.close()


def test_ctrl_c_marks_the_run_interrupted_and_exits_99(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          tasks:
            - command: sleep 1
            - command: sleep 3
            - copy: {content: late, dest: /srv/too-late}
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "machineroom", "apply", "site.yml"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ctrl-C once `sleep 1` is done on two hosts, so `sleep 3` is running (not after a fixed
    # time: a busy machine starts slowly)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if project.db("SELECT count(*) FROM task_results")[0][0] >= 2:
                break
        except sqlite3.Error:  # the database or its tables are not there yet
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 99, stdout + stderr
    assert "PLAY RECAP" in stdout
    assert project.db("SELECT status FROM runs") == [("interrupted",)]
    assert project.sh("h8", "test -e /srv/too-late || echo never") == "never\n"
    rows = project.db("SELECT count(*) FROM task_results")[0][0]
    assert rows >= 2


def test_record_module_writes_res_and_ls_shows_it(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: h8
          gather_facts: false
          tasks:
            - record: {demo_installed: true, demo_version: "1.2"}
        """,
    )
    out, _ = project.apply("site.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    res = json.loads(str(dict(project.db("SELECT id, res FROM server_room"))["h8"]))
    assert res["demo_installed"] is True and res["demo_version"] == "1.2"
    listing = machineroom("ls", cwd=project.root).stdout
    assert "demo" in next(line for line in listing.splitlines() if " h8 " in line)
    again, report = project.apply("site.yml")
    assert again.returncode == 0 and changed(report) == {"h8": 0}


def test_plan_shows_tasks_per_host_without_connecting(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: web
          vars: {flavour: blue}
          tasks:
            - name: always here
              command: "true"
            - name: only red
              command: "true"
              when: flavour == 'red'
            - name: by facts
              command: "true"
              when: ansible_facts.os_family == 'Debian'
            - name: tagged
              command: "true"
              tags: [slow]
        """,
    )
    out = machineroom("plan", "site.yml", "--skip-tags", "slow", cwd=project.root)
    assert out.returncode == 0, out.stderr
    assert "+ always here" in out.stdout
    assert "- only red" in out.stdout and "when: flavour == 'red'" in out.stdout
    assert "? by facts" in out.stdout
    assert "- tagged" in out.stdout
    assert "hosts: h8, h9" in out.stdout
    mermaid = machineroom("plan", "site.yml", "--format", "mermaid", cwd=project.root)
    assert mermaid.stdout.startswith("flowchart LR")
    as_json = json.loads(
        machineroom("plan", "site.yml", "--format", "json", cwd=project.root).stdout
    )
    assert as_json["plays"][0]["hosts"][0]["host"] == "h8"
    assert not (project.root / ".machineroom" / "state.db").exists() or not project.db(
        "SELECT * FROM audit_log"
    )


def test_become_with_a_sudo_password(tmp_path: Path, lab: Lab) -> None:
    address = next(h.address for h in lab.hosts if h.name == "h8")
    (tmp_path / "inventory.yml").write_text(
        f"all:\n  hosts:\n    h8: {{host: {address}, user: ops, password: '${{OPS_PASS}}'}}\n"
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            """\
            - hosts: all
              gather_facts: false
              become: true
              tasks:
                - copy: {content: "as root\\n", dest: /root/become-test, mode: "0600"}
                - command: id -un
                  register: who
                - assert: {that: ["who.stdout == 'root'"]}
            """
        )
    )
    out = machineroom("apply", "site.yml", cwd=tmp_path, env={"OPS_PASS": "ops-pass"})
    assert out.returncode == 0, out.stdout + out.stderr
    dump = "\n".join(sqlite3.connect(tmp_path / ".machineroom" / "state.db").iterdump())
    assert "ops-pass" not in dump


def test_strategy_linear_keeps_hosts_in_lock_step(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          strategy: linear
          tasks:
            - shell: "{{ pause }}; date +%s.%N > /srv/t1"
              vars: {pause: "{{ 'sleep 2' if inventory_hostname == 'h8' else 'true' }}"}
            - shell: date +%s.%N > /srv/t2
        """,
    )
    out, _ = project.apply("site.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    slow_first = float(project.sh("h8", "cat /srv/t1"))
    fast_second = float(project.sh("h9", "cat /srv/t2"))
    assert fast_second >= slow_first  # h9 waited for h8 to finish task 1
    project.write("site.yml", (project.root / "site.yml").read_text().replace("linear", "free"))
    out, _ = project.apply("site.yml")
    assert float(project.sh("h9", "cat /srv/t2")) < float(project.sh("h8", "cat /srv/t1"))


def test_facts_command_stores_history(project: Project) -> None:
    out = machineroom("facts", "h8", "--json", cwd=project.root)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)["h8"]
    assert facts["hostname"] == "h8" and facts["memory"]["total_mb"] > 0
    assert "docker" in facts and "compose" in facts  # asked for: the versions, or None
    rows = project.db("SELECT host_id, facts FROM facts")
    assert [r[0] for r in rows] == ["h8"]
    res = json.loads(str(dict(project.db("SELECT id, res FROM server_room"))["h8"]))
    assert res["facts"]["hostname"] == "h8"


def test_retries_until_tags_timeout_and_any_errors_fatal(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          tasks:
            - name: count attempts until the third
              shell: echo x >> /srv/attempts; wc -l < /srv/attempts
              register: tries
              until: tries.stdout | int >= 3
              retries: 5
              delay: 0
            - name: tagged slow
              command: touch /srv/slow
              tags: [slow]
            - name: too long
              command: sleep 5
              timeout: 1
              ignore_errors: true
              register: late
            - name: timed out
              assert: {that: ["late.failed", "'timed out' in late.msg"]}
        """,
    )
    project.sh("h8:h9", "rm -f /srv/attempts /srv/slow")
    out, report = project.apply("site.yml", "--skip-tags", "slow")
    assert out.returncode == 0, out.stdout + out.stderr
    assert tasks_of(report, "h8")["too long"]["duration"] < 4  # cut at 1 s, not slept out
    assert project.sh("h8", "wc -l < /srv/attempts") == "3\n"
    assert project.sh("h8", "test -e /srv/slow || echo skipped") == "skipped\n"
    assert tasks_of(report, "h8")["count attempts until the third"]["status"] == "changed"
    # only the tagged task
    out, report = project.apply("site.yml", "--tags", "slow")
    assert out.returncode == 0
    assert list(tasks_of(report, "h8")) == ["tagged slow"]
    # any_errors_fatal: h8 fails, h9 stops before its next task
    project.write(
        "fatal.yml",
        """\
        - hosts: web
          gather_facts: false
          any_errors_fatal: true
          tasks:
            - command: "{{ 'false' if inventory_hostname == 'h8' else 'sleep 1' }}"
            - copy: {content: after, dest: /srv/after-fatal}
        """,
    )
    project.sh("h8:h9", "rm -f /srv/after-fatal")
    out, report = project.apply("fatal.yml")
    assert out.returncode == 2
    assert project.sh("h9", "test -e /srv/after-fatal || echo stopped") == "stopped\n"


def test_no_log_hides_output_and_run_once_runs_on_one_host(project: Project) -> None:
    project.write(
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          tasks:
            - command: echo hidden-token-42
              no_log: true
            - shell: hostname > /srv/run-once; rm -f /srv/run-once-other
              run_once: true
        """,
    )
    project.sh("h8:h9", "rm -f /srv/run-once")
    out = machineroom("apply", "site.yml", "-vv", cwd=project.root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "hidden-token-42" not in out.stdout + out.stderr
    dump = "\n".join(sqlite3.connect(project.root / ".machineroom" / "state.db").iterdump())
    assert "hidden-token-42" not in dump  # neither task results nor the audit log
    assert project.sh("h8", "cat /srv/run-once") == "h8\n"
    assert project.sh("h9", "test -e /srv/run-once || echo not-here") == "not-here\n"
