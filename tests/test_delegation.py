"""delegate_to, local_action, connection: local, run_once, async/poll, throttle, remote_user
and become_method, end to end as ansible-core runs them.

Real runs of `machineroom apply` (a subprocess) against lab hosts h23, h24 and h25, in
/tmp/mr-deleg on the hosts and the test's tmp_path on the controller.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from tests.clirun import machineroom

HOSTS = ("h23", "h24", "h25")
COLOURS = {"h23": "red", "h24": "green", "h25": "blue"}


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def setup(root: Path, lab: Lab, site: str, extra: dict[str, str] | None = None) -> None:
    """A 3-host inventory (root by key, a colour per host) and `site.yml`."""
    lines = [f"all:\n  vars: {{user: root, ssh_key: {lab.key}}}\n  hosts:\n"]
    for host in lab.hosts:
        if host.name in HOSTS:
            more = (extra or {}).get(host.name, "")
            lines.append(
                f"    {host.name}: {{host: {host.address}, colour: {COLOURS[host.name]}{more}}}\n"
            )
    write(root, "inventory.yml", "".join(lines))
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    write(root, "site.yml", site)


def apply(root: Path, *args: str) -> tuple[Any, Any]:
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", *args, cwd=root)
    try:
        return out, json.loads(out.stdout)
    except json.JSONDecodeError:
        return out, None


def tasks_of(report: Any, host: str) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][host]["tasks"]}


def looked(report: Any) -> dict[str, str]:
    """What the playbook's last task, `look` (a `cat` on the host), printed on each host."""
    return {
        host: data["tasks"][-1]["stdout"]
        for host, data in report["hosts"].items()
        if data["tasks"] and data["tasks"][-1]["task"] == "look"
    }


def look(command: str) -> str:
    """The `look` task (YAML, indented for a play's task list): `command`'s output on each
    host, read at the end of the run (one CLI call less than `machineroom run`)."""
    return f"""
            - name: look
              shell: "{command}"
              changed_when: false
    """


def changed(report: Any) -> list[str]:
    return [
        f"{h}: {t['task']}"
        for h, data in report["hosts"].items()
        for t in data["tasks"]
        if t["status"] == "changed"
    ]


def test_keywords_load_as_ansible_reads_them(tmp_path: Path) -> None:
    from machineroom.errors import InputErrors
    from machineroom.playbook.load import iter_tasks, load_playbook

    book = write(
        tmp_path,
        "site.yml",
        """\
        - hosts: all
          remote_user: deploy
          become_method: su
          tasks:
            - local_action: copy dest=/tmp/x content=y
            - action: {module: command, cmd: uptime}
            - block:
                - command: "true"
              delegate_to: db1
              remote_user: ops
              throttle: 2
            - shell: sleep 9
              async: 30
              poll: 0
        """,
    )
    play = load_playbook(book).plays[0]
    local, action, inner, job = iter_tasks(play.stages[0].items)
    assert (local.module, dict(local.args), local.delegate_to) == (
        "copy",
        {"dest": "/tmp/x", "content": "y"},
        "localhost",
    )
    assert (action.module, action.args["cmd"], action.delegate_to) == ("command", "uptime", None)
    assert (inner.delegate_to, inner.remote_user, inner.throttle) == ("db1", "ops", 2)
    assert (job.async_seconds, job.poll) == (30, 0)
    assert (play.remote_user, play.become_method) == ("deploy", "su")
    write(tmp_path, "bad.yml", "- hosts: all\n  tasks:\n    - local_action: {creates: /x}\n")
    with pytest.raises(InputErrors) as caught:
        load_playbook(tmp_path / "bad.yml")
    assert "bad.yml:3:7: local_action: no module named" in str(caught.value)


def test_delegate_to_local_action_and_connection_local(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          gather_facts: false
          strategy: linear
          tasks:
            - name: folder on h25
              file: {{path: /tmp/mr-deleg, state: directory}}
              delegate_to: h25
              run_once: true
            - name: written on h25 with each host's variables
              copy:
                dest: "/tmp/mr-deleg/from-{{{{ inventory_hostname }}}}"
                content: "{{{{ colour }}}} {{{{ inventory_hostname }}}}\\n"
              delegate_to: "{{{{ groups['all'] | last }}}}"
            - name: on the controller (string form)
              local_action: >-
                copy dest={tmp_path}/local-{{{{ inventory_hostname }}}} content={{{{ colour }}}}
            - name: on the controller (mapping form)
              local_action:
                module: command
                cmd: "touch {tmp_path}/mapping-{{{{ inventory_hostname }}}}"
                creates: "{tmp_path}/mapping-{{{{ inventory_hostname }}}}"
            - name: task connection local
              shell: "hostname > {tmp_path}/conn-{{{{ inventory_hostname }}}}"
              args: {{creates: "{tmp_path}/conn-{{{{ inventory_hostname }}}}"}}
              connection: local
            - name: a fact for h25 only
              set_fact: {{told_by: "{{{{ inventory_hostname }}}}"}}
              delegate_to: h25
              delegate_facts: true
              when: inventory_hostname == 'h23'
            - name: show the fact
              copy: {{dest: /tmp/mr-deleg/told, content: "{{{{ told_by | default('none') }}}}\\n"}}
              when: inventory_hostname == 'h25'
        """
        + look("cat /tmp/mr-deleg/from-* /tmp/mr-deleg/told 2>/dev/null; true"),
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # every file on h25, each with its own host's variables; the fact went to h25 only
    found = looked(report)
    assert found == {"h23": "", "h24": "", "h25": "red h23\ngreen h24\nblue h25\nh23"}
    for host in HOSTS:
        assert (tmp_path / f"local-{host}").read_text() == COLOURS[host]
        assert (tmp_path / f"mapping-{host}").exists()
        # connection: local ran on this machine, not on the lab host
        assert (tmp_path / f"conn-{host}").read_text().strip() != host
    again, report = apply(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == []


def test_run_once_result_reaches_every_host(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          gather_facts: false
          tasks:
            - file: {path: /tmp/mr-deleg, state: directory}
            - name: pick
              shell: echo "{{ inventory_hostname }} $(date +%N)"
              register: picked
              run_once: true
              notify: mark
            - name: fact once
              set_fact: {chosen: "{{ picked.stdout.split()[0] }}"}
              run_once: true
            - name: write
              copy:
                dest: /tmp/mr-deleg/once
                content: "{{ picked.stdout }} {{ chosen }}\\n"
            - meta: flush_handlers
        """
        + look("cat /tmp/mr-deleg/once /tmp/mr-deleg/handler")
        + """
          handlers:
            - name: mark
              copy: {dest: /tmp/mr-deleg/handler, content: "notified\\n"}
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    contents = looked(report)
    first = contents["h23"]
    assert first.startswith("h23 ") and first.endswith(" h23\nnotified")
    assert set(contents.values()) == {first}  # one run, one result, on every host
    # the recap shows the task once: only the host that ran it reports it
    assert "pick" in tasks_of(report, "h23")
    assert "pick" not in tasks_of(report, "h24") and "pick" not in tasks_of(report, "h25")


def test_run_once_failure_fails_every_host(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          gather_facts: false
          strategy: linear
          pre_tasks:
            - name: poke
              command: "true"
              when: inventory_hostname == 'h24'
              notify: once handler
          tasks:
            - command: "true"
          handlers:
            - name: once handler
              command: "true"
              run_once: true
        - hosts: all
          gather_facts: false
          tasks:
            - name: breaks
              command: "false"
              run_once: true
            - name: never
              command: "true"
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    # a run_once handler only h24 was notified for: h24 runs it (h23, waiting at the
    # lock-step gate of the next stage, never reaches it and is not waited for)
    assert tasks_of(report, "h24")["once handler"]["status"] == "changed"
    assert "once handler" not in tasks_of(report, "h23")
    assert tasks_of(report, "h23")["breaks"]["status"] == "failed"
    for host in ("h24", "h25"):
        task = tasks_of(report, host)["breaks"]
        assert task["status"] == "failed"
        assert "run_once: the task failed on h23" in task["msg"]
    for host in HOSTS:
        assert "never" not in tasks_of(report, host)


def test_async_poll_fire_and_forget_and_timeout(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: h23
          gather_facts: false
          tasks:
            - file: {path: /tmp/mr-deleg, state: directory}
            - name: polled
              shell: sleep 1; echo polled-out; echo polled-err >&2
              async: 20
              poll: 1
              register: polled
            - copy: {dest: /tmp/mr-deleg/polled, content: "{{ polled.stdout }} {{ polled.rc }}\\n"}
            - name: fired
              shell: sleep 1; echo fired > /tmp/mr-deleg/fired
              async: 30
              poll: 0
              register: job
            - copy:
                dest: /tmp/mr-deleg/job
                content: "{{ job.started }} {{ job.finished }} {{ job.ansible_job_id }}\\n"
            - name: wait for it
              async_status: {jid: "{{ job.ansible_job_id }}"}
              register: status
              until: status is finished
              retries: 20
              delay: 0.5
            - name: too slow
              shell: sleep 2.5; echo late > /tmp/mr-deleg/late
              async: 1
              poll: 1
              ignore_errors: true
        """
        # the slow job was killed at its limit: `late` never appears (its sleep ends 2.5 s
        # after it started: wait for the watchdog's mark at 1 s, then past those 2.5 s)
        + look(
            "for i in $(seq 50); do ls ~/.ansible_async/*/timedout >/dev/null 2>&1 && break;"
            " sleep 0.1; done; sleep 2; cd /tmp/mr-deleg;"
            " cat polled job fired; stat -c %a fired; ls late 2>&1; true"
        ),
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report, "h23")
    assert tasks["wait for it"]["status"] == "changed"  # the job's own result: shell changed
    slow = tasks["too slow"]
    assert slow["status"] == "failed" and slow["ignored"]
    assert slow["msg"] == "async task did not complete within the requested time - 1s"
    polled, job, fired, mode, late = looked(report)["h23"].splitlines()
    assert polled == "polled-out 0"
    started, finished, jid = job.split()
    assert (started, finished) == ("True", "False") and jid.startswith("j")
    assert fired == "fired" and mode == "644"  # the job kept the login's umask
    assert "No such file" in late


def test_throttle_one_never_overlaps(tmp_path: Path, lab: Lab) -> None:
    # each host takes a lock folder on the controller for 0.4 s: a second host at once fails
    lock = tmp_path / "lock"
    locked = f"shell: mkdir {lock} && sleep 0.4 && rmdir {lock}"
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          gather_facts: false
          strategy: linear
          tasks:
            - name: throttled
              {locked}
              delegate_to: localhost
              throttle: 1
            - name: not throttled
              {locked}
              delegate_to: localhost
              ignore_errors: true
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(tasks_of(report, h)["throttled"]["status"] == "changed" for h in HOSTS)
    # without throttle the same task does overlap: the check above can fail
    statuses = [tasks_of(report, h)["not throttled"]["status"] for h in HOSTS]
    assert "failed" in statuses, statuses


def test_remote_user_and_become_methods(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: h24
          gather_facts: false
          tasks:
            - name: su needs root's password
              shell: echo root:root-pw | chpasswd
        - hosts: h24
          gather_facts: false
          remote_user: deploy
          tasks:
            - name: as deploy
              command: id -un
              register: plain
            - name: sudo from deploy
              command: id -un
              become: true
              become_method: sudo
              become_flags: -H
              register: sudo
            - block:
                - name: su from deploy
                  command: id -un
                  register: su
              become: true
              become_method: su
              vars: {ansible_become_password: root-pw}
            - name: as root again
              command: id -un
              remote_user: root
              register: root
            - name: su with a bad password
              command: id -un
              remote_user: ops
              become: true
              become_method: su
              ignore_errors: true
            - name: look
              debug: {msg: "{{ [plain, sudo, su, root] | map(attribute='stdout') | join(' ') }}"}
        """,
        extra={"h24": ", become_password: not-root-pw"},
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert tasks_of(report, "h24")["look"]["msg"] == "deploy root root root"
    bad = tasks_of(report, "h24")["su with a bad password"]
    assert bad["status"] == "failed" and bad["ignored"]
    assert "cannot become root with su: su rejected the password" in bad["msg"]


def test_add_host_and_group_by_feed_later_plays(tmp_path: Path, lab: Lab) -> None:
    h25 = next(h.address for h in lab.hosts if h.name == "h25")
    setup(
        tmp_path,
        lab,
        f"""\
        - hosts: all
          gather_facts: false
          tasks:
            - file: {{path: /tmp/mr-deleg, state: directory}}
            - name: add
              add_host:
                name: extra25
                groups: added
                ansible_host: {h25}
                marker: "from {{{{ inventory_hostname }}}}"
            - name: sort
              group_by: {{key: "colour_{{{{ colour }}}}", parents: coloured}}
            - name: seen in this play
              copy:
                dest: /tmp/mr-deleg/groups
                content: "{{{{ groups['added'] | join(',') }}}} {{{{ group_names | join(',') }}}}"
        - hosts: added
          gather_facts: false
          tasks:
            - copy:
                dest: /tmp/mr-deleg/added
                content: "{{{{ inventory_hostname }}}} {{{{ marker }}}}\\n"
        - hosts: colour_green
          gather_facts: false
          tasks:
            - copy: {{dest: /tmp/mr-deleg/green, content: "{{{{ group_names | join(',') }}}}\\n"}}
        - hosts: h23:h24:h25
          gather_facts: false
          tasks:
        """
        + look("cd /tmp/mr-deleg; cat added green groups 2>/dev/null; true"),
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # add_host ran once (on h23, the first host) and the new host ran the second play
    assert "add" in tasks_of(report, "h23") and "add" not in tasks_of(report, "h24")
    assert looked(report) == {
        "h23": "extra25 colour_red,coloured",
        "h24": "colour_green,coloured\nextra25 colour_green,coloured",
        "h25": "extra25 from h23\nextra25 colour_blue,coloured",
    }
