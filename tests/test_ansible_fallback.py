"""Every other module, faithfully: modules machineroom lacks run as ansible-core's own code.

Real `machineroom apply` runs (subprocesses) against lab host h28, in paths of their own
(/tmp/mr-fallback): ansible.builtin.known_hosts (a builtin machineroom does not implement,
with the normal action) changing a file, then changing nothing, check mode and --diff through
it; modules in the playbook's and a role's `library/` written here with AnsibleModule: their
result keys registered, `ansible_facts` set, a failure's msg shown, no_log hiding what the
task handled; a host whose `ansible_python_interpreter` does not exist; a module with an
action plugin refused at load; and machineroom in a Python without ansible-core (a virtualenv
made here from this one's packages, ansible-core left out) naming the extra to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

from machineroom.errors import InputErrors
from machineroom.lab import Lab
from machineroom.modules import ansible_fallback
from machineroom.modules.base import CommandOutput, ModuleContext
from machineroom.playbook.load import load_playbook
from machineroom.playbook.model import Task
from tests.clirun import machineroom

HOST = "h28"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGjaW4wLQqbBA2sPkpZ3+Q1L8nm1hxBJnk2Mj5PqUE3g"

# A module of the playbook's own: writes `text` to `path`, with check mode, diff and a fact.
NOTE = """\
#!/usr/bin/python
import os
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            text=dict(type="str", required=True),
            token=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    path, text = module.params["path"], module.params["text"] + "\\n"
    if text.startswith("fail"):
        module.fail_json(msg="refusing to write " + text.strip())
    before = open(path).read() if os.path.exists(path) else ""
    changed = before != text
    if changed and not module.check_mode:
        with open(path, "w") as handle:
            handle.write(text)
    module.exit_json(
        changed=changed,
        path=path,
        diff=dict(before=before, after=text, before_header=path, after_header=path),
        ansible_facts=dict(note_length=len(text)),
    )


main()
"""

# A role's module: answers without changing anything.
SHOUT = """\
#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec=dict(word=dict(type="str")), supports_check_mode=True)
module.exit_json(changed=False, loud=module.params["word"].upper())
"""


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def setup(root: Path, lab: Lab, site: str) -> None:
    address = next(h.address for h in lab.hosts if h.name == HOST)
    write(
        root,
        "inventory.yml",
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n"
        f"  hosts:\n    {HOST}: {{host: {address}, user: root}}\n",
    )
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    write(root, "site.yml", site)


def apply(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Any]:
    out = machineroom(
        "apply", "-i", "inventory.yml", "site.yml", "--json", *args, cwd=root, env=env
    )
    try:
        return out, json.loads(out.stdout)
    except json.JSONDecodeError:
        return out, None


def sh(lab: Lab, command: str) -> str:
    """`command` on the host over OpenSSH (cheaper than a machineroom start); its stdout."""
    out = subprocess.run(
        ["ssh", "-F", lab.ssh_config, HOST, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def tasks_of(report: Any) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][HOST]["tasks"]}


KNOWN_HOSTS = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: native
      file: {path: /tmp/mr-fallback, state: directory}
    - name: trust example.org
      ansible.builtin.known_hosts:
        path: /tmp/mr-fallback/known_hosts
        name: example.org
        key: "example.org KEY"
    - name: trust example.net
      ansible.builtin.known_hosts:
        path: /tmp/mr-fallback/known_hosts
        name: example.net
        key: "example.net KEY"
      when: ansible_check_mode
""".replace("KEY", KEY)


def test_a_builtin_module_runs_through_ansible_core(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, KNOWN_HOSTS)
    sh(lab, "rm -rf /tmp/mr-fallback")

    plan = machineroom("plan", "-i", "inventory.yml", "site.yml", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    line = next(x for x in plan.stdout.splitlines() if "trust example.org" in x)
    assert "[ansible.builtin.known_hosts]" in line and "via ansible-core" in line
    native = next(x for x in plan.stdout.splitlines() if "native" in x)
    assert "ansible-core" not in native

    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    trust = tasks["trust example.org"]
    assert (trust["status"], trust["engine"]) == ("changed", "ansible-core")
    assert "engine" not in tasks["native"]
    assert sh(lab, "cat /tmp/mr-fallback/known_hosts") == f"example.org {KEY}\n"
    print(f"fallback task {trust['duration']:.3f}s, native {tasks['native']['duration']:.3f}s")

    # again, in check mode with a diff: what is there is left alone, example.net (only
    # in check mode) is reported with its diff and not written
    again, report = apply(tmp_path, "--check", "--diff")
    assert again.returncode == 0, again.stdout + again.stderr
    tasks = tasks_of(report)
    assert tasks["trust example.org"]["status"] == "ok"
    assert tasks["native"]["status"] == "ok"
    net = tasks["trust example.net"]
    assert net["status"] == "changed" and report["stats"][HOST]["changed"] == 1
    assert "--- before: /tmp/mr-fallback/known_hosts" in net["diff"]
    assert f"+example.net {KEY}" in net["diff"]
    assert sh(lab, "cat /tmp/mr-fallback/known_hosts") == f"example.org {KEY}\n"


LIBRARY = """\
- hosts: all
  gather_facts: false
  roles: [loud]
  tasks:
    - name: note
      note: path=/tmp/mr-fallback/lib/note.txt text=hello
      register: written
    - name: from the playbook's collections
      tags: [once]
      acme.tools.shout: {word: near}
      register: near
    - name: from ANSIBLE_COLLECTIONS_PATH
      tags: [once]
      other.stuff.shout: {word: far}
      register: far
    - name: show
      tags: [once]
      copy:
        dest: /tmp/mr-fallback/lib/seen.txt
        content: "{{ written.path }} {{ note_length }} {{ written.engine }} {{ near.loud }}\\n"
    - name: refused
      tags: [once]
      note: {path: /tmp/mr-fallback/lib/other.txt, text: fail now}
      ignore_errors: true
    - name: secret
      tags: [once]
      note: {path: /tmp/mr-fallback/lib/other.txt, text: "fail s3cr3t-w0rd", token: t0ken}
      no_log: true
      ignore_errors: true
    - name: as deploy
      note: {path: /tmp/mr-fallback-deploy.txt, text: mine}
      become: true
      become_user: deploy
    - name: no python there
      tags: [once]
      note: {path: /tmp/mr-fallback/lib/other.txt, text: never}
      vars: {ansible_python_interpreter: /opt/none/python3}
      ignore_errors: true
"""


def test_library_modules_of_the_playbook_and_its_roles(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, LIBRARY)
    write(tmp_path, "library/note.py", NOTE)
    write(tmp_path, "roles/loud/library/shout.py", SHOUT)
    modules = "ansible_collections/{}/plugins/modules/shout.py"
    write(tmp_path, "collections/" + modules.format("acme/tools"), SHOUT)
    write(tmp_path, "elsewhere/" + modules.format("other/stuff"), SHOUT)
    elsewhere = {"ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "elsewhere")}
    write(
        tmp_path,
        "roles/loud/tasks/main.yml",
        """\
        - name: shout
          shout: {word: quiet}
          register: shouted
        - file: {path: /tmp/mr-fallback/lib, state: directory}
        - copy: {dest: /tmp/mr-fallback/lib/loud.txt, content: "{{ shouted.loud }}\\n"}
        """,
    )
    sh(lab, "rm -rf /tmp/mr-fallback/lib /tmp/mr-fallback-deploy.txt")

    out, report = apply(tmp_path, "--diff", env=elsewhere)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    assert tasks["loud : shout"]["status"] == "ok"
    assert tasks["from ANSIBLE_COLLECTIONS_PATH"]["engine"] == "ansible-core"
    assert sh(lab, "cat /tmp/mr-fallback/lib/loud.txt") == "QUIET\n"
    note = tasks["note"]
    assert note["status"] == "changed" and note["engine"] == "ansible-core"
    assert "+hello" in note["diff"]
    assert sh(lab, "cat /tmp/mr-fallback/lib/note.txt") == "hello\n"
    # result keys registered, ansible_facts become facts
    seen = "/tmp/mr-fallback/lib/note.txt 6 ansible-core NEAR\n"
    assert sh(lab, "cat /tmp/mr-fallback/lib/seen.txt") == seen
    # become wraps the one command as it wraps a native module's
    assert sh(lab, "stat -c %U /tmp/mr-fallback-deploy.txt") == "deploy\n"
    # a failing module's msg is shown; under no_log nothing it handled is
    refused = tasks["refused"]
    assert refused["status"] == "failed" and refused["ignored"]
    assert refused["msg"] == "refusing to write fail now"
    secret = tasks["secret"]
    assert secret["status"] == "failed" and secret["engine"] == "ansible-core"
    assert "s3cr3t" not in out.stdout + out.stderr and "t0ken" not in out.stdout + out.stderr
    # a host where the interpreter named is missing: said so, not a Python traceback
    assert tasks["no python there"]["msg"] == (
        "note: this module runs through ansible-core and needs Python on the host; none found "
        "at '/opt/none/python3' (ansible_python_interpreter)"
    )

    # the tasks that change something, again: nothing changes
    again, report = apply(tmp_path, "--skip-tags", "once", env=elsewhere)
    assert again.returncode == 0, again.stdout + again.stderr
    assert report["stats"][HOST]["changed"] == 0
    assert tasks_of(report)["note"]["status"] == "ok"


def test_a_module_needing_its_action_plugin_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        "site.yml",
        """\
        - hosts: all
          tasks:
            - name: parts
              ansible.builtin.assemble: {src: /tmp/parts, dest: /tmp/whole}
            - name: typo
              lineinfle: {path: /tmp/x, line: y}
            - name: argument typo
              ansible.builtin.known_hosts: {nmae: example.org, key: "example.org k"}
            - name: an argument the module's documentation does not list, close to none
              ansible.builtin.known_hosts: {name: example.org, zzz_extra: 1}
        """,
    )
    with pytest.raises(InputErrors) as caught:
        load_playbook(tmp_path / "site.yml")
    problems = sorted(str(e).split("/")[-1] for e in caught.value.errors)
    assert problems == [
        "site.yml:4:7: task \"parts\": module 'ansible.builtin.assemble' runs through "
        "ansible-core's action plugin 'ansible.builtin.assemble' on the controller, which "
        "machineroom does not run",
        # a typo of a native module keeps its suggestion
        "site.yml:6:7: task \"typo\": unknown module 'lineinfle' (did you mean 'lineinfile'?)",
        # a misspelt argument of a fallback module, from its documentation, before anything
        # runs; zzz_extra, close to no argument, is left to the module on the host
        'site.yml:8:37: task "argument typo": ansible.builtin.known_hosts: '
        "unknown argument 'nmae' (did you mean 'name'?)",
    ]


def test_module_defaults_reach_an_ansible_core_module(tmp_path: Path) -> None:
    write(
        tmp_path,
        "site.yml",
        """\
        - hosts: all
          module_defaults:
            ansible.builtin.known_hosts: {path: /tmp/from-defaults, hash_host: true}
          tasks:
            - ansible.builtin.known_hosts: {name: example.org, hash_host: false}
        """,
    )
    (task,) = load_playbook(tmp_path / "site.yml").plays[0].stages[0].items
    assert isinstance(task, Task)
    assert dict(task.args) == {
        "path": "/tmp/from-defaults",
        "hash_host": False,
        "name": "example.org",
    }


def _python_without_ansible(root: Path) -> Path:
    """A virtualenv with this one's packages (machineroom included) but not ansible-core."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    (theirs,) = venv.glob("lib/python*/site-packages")
    for entry in ours.iterdir():
        if not entry.name.startswith(("ansible", "pip")):
            (theirs / entry.name).symlink_to(entry)
    return venv / "bin" / "python"


def test_without_ansible_core_the_error_names_the_extra(tmp_path: Path) -> None:
    python = _python_without_ansible(tmp_path)
    probe = subprocess.run([str(python), "-c", "import ansible"], capture_output=True, text=True)
    assert probe.returncode == 1 and "No module named 'ansible'" in probe.stderr
    write(
        tmp_path,
        "site.yml",
        """\
        - hosts: all
          tasks:
            - community.general.ini_file: {path: /tmp/x.ini, section: a, option: b, value: c}
        """,
    )
    out = subprocess.run(
        [str(python), "-m", "machineroom", "validate", "site.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 4, out.stdout + out.stderr
    assert (
        "site.yml:3:7: module 'community.general.ini_file' is not built into machineroom, and "
        "running Ansible's own code for it needs ansible-core, which is not installed: "
        "pip install 'machineroom[ansible]'"
    ) in out.stderr


def test_missing_extra_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same error path with ansible's import failing here (sys.modules says none)."""
    for name in [m for m in sys.modules if m == "ansible" or m.startswith("ansible.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "ansible", None)
    assert not ansible_fallback.ansible_installed()
    found = ansible_fallback.resolve("ansible.posix.acl")
    assert found.module is None and "pip install 'machineroom[ansible]'" in found.problem
    assert ansible_fallback.fallback_module("ansible.posix.acl") is None


def test_diffs_read_as_ansible_prints_them() -> None:
    text = ansible_fallback.diff_text(
        [{"before": "a\n", "after": "b\n", "before_header": "f", "after_header": "f"}]
    )
    assert text == "--- before: f\n+++ after: f\n@@ -1 +1 @@\n-a\n+b\n"
    assert ansible_fallback.diff_text({"prepared": "changed x"}) == "changed x\n"
    structured = ansible_fallback.diff_text({"before": {"k": 1}, "after": {"k": 2}})
    assert '-    "k": 1' in structured and '+    "k": 2' in structured


CTX = ModuleContext(host_id=HOST)


def test_an_error_summary_of_ansible_core_2_19_becomes_the_message() -> None:
    cause = {"msg": "[Errno 2] No such file or directory: '/x/tmp1'"}
    data = {
        "failed": True,
        "exception": {
            "__ansible_type": "ErrorSummary",
            "event": {
                "msg": "Failed to write to file '/x/kh'.",
                "formatted_traceback": "Traceback (most recent call last): ...\n",
                "chain": {"msg_reason": "<<< caused by >>>", "follow": True, "event": cause},
            },
        },
    }
    outcome = ansible_fallback.outcome_of(data, CTX)
    assert outcome.status == "failed"
    assert outcome.msg == (
        "Failed to write to file '/x/kh': [Errno 2] No such file or directory: '/x/tmp1'"
    )
    assert outcome.result["exception"] == "Traceback (most recent call last): ...\n"


def test_output_around_the_json_and_a_crash() -> None:
    banner = "Welcome!\n" + json.dumps({"changed": True, "rc": 0, "_ansible_no_log": False})
    outcome = ansible_fallback.parse_result("m", CommandOutput(0, banner + "\nbye\n", ""), CTX)
    assert outcome.status == "changed"
    assert dict(outcome.result) == {"rc": 0, "engine": "ansible-core"}
    crash = CommandOutput(1, "", "Traceback (most recent call last):\nImportError: no yaml\n")
    failed = ansible_fallback.parse_result("m", crash, CTX)
    assert failed.status == "failed"
    assert failed.msg == "MODULE FAILURE: Traceback (most recent call last):\nImportError: no yaml"
    assert failed.result["module_stderr"] == crash.stderr and failed.result["rc"] == 1
    # a module without check mode under --check: skipped (the executor reads the key)
    said = {"skipped": True, "msg": "remote module (m) does not support check mode"}
    skipped = ansible_fallback.outcome_of(said, CTX)
    assert skipped.result["skipped"] is True and skipped.msg == said["msg"]
