"""Arguments and keywords as Ansible reads them, end to end through the CLI.

`key=value` strings converted to the argument's type ('yes' -> true, '600' -> 600), Ansible's
argument aliases (`dest` for `path`), and true/false keywords written as templates
(`ignore_errors: "{{ x }}"`), evaluated per host. Load-time cases run `machineroom plan`;
run-time cases `machineroom apply` against lab hosts h16 and h17.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from machineroom.playbook.args import convert_value
from tests.clirun import machineroom

HOSTS = ["h16", "h17"]

# Tasks as public roles write them: free-form key=value, aliases, templated keywords.
ROLE_LIKE = """\
- name: apt as roles write it
  apt: update_cache=yes cache_valid_time=600 pkg=nginx install_recommends=no
  when: false
- name: service enabled=yes
  service: name=nginx enabled=yes state=started
  when: false
- name: dest for path
  file: dest=/tmp/x state=touch mode=0640
  ignore_errors: "{{ ansible_check_mode }}"
- lineinfile: dest=/tmp/y line=z create=True backup=no
  no_log: "{{ hide | default(false) }}"
- blockinfile: {destfile: /tmp/z, content: "a\\nb", create: "yes"}
  become: "{{ use_sudo | default(true) }}"
- user: name=bob createhome=no uid=1000 system=off
  when: false
- copy: {dest: /tmp/n, content: 3, force: "True"}
  run_once: "{{ once | default(false) }}"
  check_mode: "no"
- name: a block with a templated keyword
  block:
    - command: "true"
  any_errors_fatal: "{{ strict | default(false) }}"
  ignore_errors: "{{ lenient | default(false) }}"
"""


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def inventory(root: Path, lab: Lab | None = None, user: str = "root") -> None:
    lines = ["all:", "  children:", "    web:", "      hosts:"]
    for name in HOSTS:
        address = next(h.address for h in lab.hosts if h.name == name) if lab else "127.0.0.1"
        lines.append(f"        {name}: {{host: {address}, user: {user}}}")
    if lab is not None:
        lines[1:1] = ["  vars:", f"    ssh_key: {lab.key}"]
        (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
        (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")


def plan(root: Path) -> Any:
    return machineroom("plan", "-i", "inventory.yml", "site.yml", cwd=root)


def test_role_like_task_files_load(tmp_path: Path) -> None:
    inventory(tmp_path)
    write(tmp_path, "roles/web/tasks/main.yml", ROLE_LIKE)
    write(tmp_path, "site.yml", "- hosts: web\n  roles: [web]\n")
    out = plan(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "apt: update_cache=maybe",
            "tasks.yml:1:3: apt: update_cache: 'maybe' is not true or false",
        ),
        ("apt: name=x cache_valid_time=soon", "cache_valid_time: 'soon' is not an integer"),
        (
            "file: dest=/tmp/a path=/tmp/b state=touch",
            "file: 'dest' and 'path' are the same argument 'path'",
        ),
        (
            "blockinfile: {path: /tmp/a, block: x, content: y}",
            "blockinfile: 'block' and 'content' are the same argument 'block'",
        ),
        (
            "command: 'true'\n  ignore_errors: maybe",
            "tasks.yml:2:18: [0].ignore_errors: 'maybe' is not valid; expected true or false",
        ),
        ("file: dest=/tmp/a stat=touch", "file: unknown argument 'stat' (did you mean 'state'?)"),
    ],
)
def test_what_ansible_would_refuse_is_refused_at_load(
    tmp_path: Path, task: str, message: str
) -> None:
    inventory(tmp_path)
    write(tmp_path, "tasks.yml", f"- {task}\n")
    write(tmp_path, "site.yml", "- hosts: web\n  tasks:\n    - import_tasks: tasks.yml\n")
    out = plan(tmp_path)
    assert out.returncode == 4, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def apply(root: Path, *args: str) -> tuple[Any, Any]:
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", *args, cwd=root)
    try:
        return out, json.loads(out.stdout)
    except json.JSONDecodeError:
        return out, None


def sh(root: Path, host: str, command: str) -> str:
    out = machineroom("run", "-i", "inventory.yml", host, "--json", "--", command, cwd=root)
    hosts = json.loads(out.stdout)["hosts"]
    return str(next(iter(hosts.values()))["stdout"])


def tasks_of(report: Any, host: str) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][host]["tasks"]}


def test_converted_arguments_and_templated_keywords_take_effect(tmp_path: Path, lab: Lab) -> None:
    inventory(tmp_path, lab, user="deploy")  # deploy: sudo without a password
    write(
        tmp_path,
        "site.yml",
        """\
        - hosts: web
          gather_facts: false
          vars: {make_it: "yes", lenient: true, use_sudo: "{{ inventory_hostname == 'h16' }}"}
          tasks:
            - name: clean
              file: path=/tmp/args state=absent
              become: true
              tags: [clean]
            - name: folder
              file: dest=/tmp/args state=directory mode=0755
              become: true
            - name: touch
              file: dest=/tmp/args/x state=touch mode=0640
              become: yes
            - name: line
              lineinfile: dest=/tmp/args/conf line="port = 80" create="{{ make_it }}"
              become: "True"
            - name: block
              blockinfile: {destfile: /tmp/args/block, content: "one", create: "{{ make_it }}"}
              become: "{{ true }}"
            - name: who
              command: id -un
              become: "{{ use_sudo }}"
              register: who
            - name: fails but ignored
              command: "false"
              ignore_errors: "{{ lenient }}"
            - name: hidden
              command: echo secret-output
              no_log: "{{ lenient }}"
            - name: after
              copy: {dest: /tmp/args/after, content: "{{ who.stdout }}", force: "yes"}
              become: true
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    listing = sh(tmp_path, "h16", "stat -c '%a %U %n' /tmp/args/x; cat /tmp/args/conf")
    assert listing.splitlines() == ["640 root /tmp/args/x", "port = 80"]
    assert "one" in sh(tmp_path, "h17", "cat /tmp/args/block")
    # become evaluated per host: h16 through sudo, h17 as the login user
    assert sh(tmp_path, "h16", "cat /tmp/args/after") == "root"
    assert sh(tmp_path, "h17", "cat /tmp/args/after") == "deploy"
    for host in HOSTS:
        tasks = tasks_of(report, host)
        assert tasks["fails but ignored"]["status"] == "failed"
        assert tasks["fails but ignored"]["ignored"] is True
        assert "secret-output" not in json.dumps(tasks["hidden"])
    # idempotent: the converted values compare equal to what is there the second time
    again, report = apply(tmp_path, "--skip-tags", "clean")
    assert again.returncode == 0, again.stdout + again.stderr
    changed = {t["task"] for t in report["hosts"]["h16"]["tasks"] if t["status"] == "changed"}
    assert changed == {"who", "hidden", "touch"}  # as in Ansible: commands and touch always do


def test_a_template_giving_no_boolean_fails_the_task(tmp_path: Path, lab: Lab) -> None:
    inventory(tmp_path, lab)
    write(
        tmp_path,
        "site.yml",
        """\
        - hosts: h16
          gather_facts: false
          vars: {word: maybe}
          tasks:
            - name: bad argument
              lineinfile: {path: /tmp/never, line: x, create: "{{ word }}"}
              ignore_errors: true
            - name: bad flag
              command: "true"
              ignore_errors: "{{ word }}"
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    tasks = tasks_of(report, "h16")
    assert tasks["bad argument"]["status"] == "failed"
    assert "lineinfile: create: 'maybe' is not true or false" in tasks["bad argument"]["msg"]
    assert tasks["bad flag"]["status"] == "failed"
    flag = "ignore_errors: {{ word }} gave 'maybe', which is not true or false"
    assert flag in tasks["bad flag"]["msg"]
    assert "/tmp/never" not in sh(tmp_path, "h16", "ls /tmp")


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        *[(word, {"type": "boolean"}, True) for word in ("yes", "Y", "on", "1", "TRUE", "t")],
        *[(word, {"type": "boolean"}, False) for word in ("no", "N", "off", "0", "False", "f")],
        (1, {"type": "boolean"}, True),
        ("600", {"type": "integer"}, 600),
        ("-3", {"type": ["integer", "null"]}, -3),
        ("1.5", {"type": "number"}, 1.5),
        (3, {"type": "string"}, "3"),
        (True, {"type": "string"}, "True"),
        ("a, b", {"type": "array", "items": {"type": "string"}}, ["a", "b"]),
        ("0640", {"type": ["string", "integer"]}, "0640"),  # a mode stays as written
        ("maybe", {"type": "boolean"}, "maybe"),  # left for the check to name
        ("{{ x }}", {"type": "boolean"}, "{{ x }}"),  # known per host only
    ],
)
def test_values_are_converted_as_ansible_converts_them(
    value: Any, schema: dict[str, Any], expected: Any
) -> None:
    assert convert_value(value, schema) == expected
