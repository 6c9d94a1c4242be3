"""Play keywords as ansible-playbook reads them, by real `machineroom apply` runs on this
machine (connection: local): `environment` (play and task, a mapping or a template) reaching
the command, `vars_prompt` answered by -e or its default, `hosts:` as a template, `order:`,
`ignore_errors`/`no_log` inherited by every task, `gather_subset`, and
`ansible.builtin.import_playbook`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clirun import machineroom

INVENTORY = (
    "all:\n  hosts:\n"
    "    b-host: {host: 127.0.0.1, user: root, connection: local}\n"
    "    a-host: {host: 127.0.0.1, user: root, connection: local}\n"
)


def _apply(tmp_path: Path, playbook: str, *args: str) -> tuple[Any, Any]:
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "site.yml").write_text(playbook)
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", *args, cwd=tmp_path)
    try:
        return out, json.loads(out.stdout)
    except json.JSONDecodeError:
        return out, None


def _msgs(report: Any, host: str) -> list[str]:
    tasks = report["hosts"][host]["tasks"]
    return [t.get("msg", "") for t in tasks if t["task"].endswith("debug")]


def test_environment_reaches_commands(tmp_path: Path) -> None:
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n"
        "  environment: {PLAY_ENV: from-play}\n"
        "  vars: {proxy: {HTTP_PROXY: 'http://proxy:3128', ODD: \"it's $HOME\"}}\n"
        "  tasks:\n"
        '    - shell: echo "$TASK_ENV $PLAY_ENV"\n'
        "      environment: {TASK_ENV: '{{ 40 + 2 }}'}\n"
        "      register: one\n"
        '    - shell: echo "$HTTP_PROXY|$ODD|$PLAY_ENV"\n'
        "      environment: '{{ proxy }}'\n"
        "      register: two\n"
        "    - debug: {msg: '{{ one.stdout }} / {{ two.stdout }}'}\n"
        "    - command: 'true'\n"
        "      environment: {'BAD NAME': x}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["42 from-play / http://proxy:3128|it's $HOME|from-play"]
    last = report["hosts"]["a-host"]["tasks"][-1]
    assert last["status"] == "failed"
    assert "environment: 'BAD NAME' is not a variable name" in last["msg"]


def test_vars_prompt_hosts_template_order_and_inherited_keywords(tmp_path: Path) -> None:
    playbook = (
        "- hosts: \"{{ target | default('nobody') }}\"\n"
        "  gather_facts: true\n  gather_subset: [min]\n"
        "  order: sorted\n  ignore_errors: true\n"
        "  vars_prompt:\n"
        "    - {name: answer, prompt: What?, default: '42', private: false}\n"
        "    - {name: token, prompt: Token?, private: true}\n"
        "  tasks:\n"
        "    - command: 'false'\n"
        "    - debug: {msg: 'answer={{ answer }} token={{ token }}'}\n"
    )
    out, report = _apply(tmp_path, playbook, "-e", "target=all", "-e", "token=t0k3n-from-e")
    assert report is not None, out.stderr
    assert out.returncode == 0, out.stdout  # the play's ignore_errors covers `false`
    assert report["plays"][0]["hosts"] == ["a-host", "b-host"]  # order: sorted
    assert _msgs(report, "a-host") == ["answer=42 token=***"]  # -e answers; masked as -e is
    assert "not prompting for 'answer' (not a terminal): using its default" in out.stderr
    assert "token" not in out.stderr  # given by -e: not asked
    facts = next(t for t in report["hosts"]["b-host"]["tasks"] if t["task"] == "Gathering Facts")
    assert facts["status"] == "ok"
    empty, _ = _apply(tmp_path, playbook.replace("'nobody'", "''"), "-e", "token=x")
    assert empty.returncode == 4
    assert "hosts: {{ target | default('') }} gave an empty pattern" in empty.stderr


def test_fqcn_import_playbook(tmp_path: Path) -> None:
    (tmp_path / "other.yml").write_text(
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n    - debug: {msg: imported}\n"
    )
    out, report = _apply(tmp_path, "- ansible.builtin.import_playbook: other.yml\n")
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["imported"]


def test_meta_end_host_and_end_play_honour_when(tmp_path: Path) -> None:
    """`meta: end_host` behind a false `when` (its own or its block's) does not end the host."""
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - {meta: end_host, when: false}\n"
        "    - debug: {msg: still here}\n"
        "    - block:\n        - meta: end_play\n      when: nope is defined\n"
        "    - debug: {msg: after the block}\n"
        "    - {meta: end_host, when: true}\n"
        "    - debug: {msg: never}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["still here", "after the block"]


def test_module_facts_also_under_ansible_facts(tmp_path: Path) -> None:
    """A module's facts (getent's) are variables and keys of ansible_facts, as in Ansible."""
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - getent: {database: passwd, key: root}\n"
        "    - debug:\n"
        "        msg: '{{ ansible_facts.getent_passwd.root[1] }} {{ getent_passwd.root[1] }}'\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["0 0"]


def test_first_found_searches_the_task_files_folder(tmp_path: Path) -> None:
    """`include_tasks: "{{ lookup('first_found', files) }}"` in a role finds tasks/default.yml
    (ansible-core's setup_remote_tmp_dir does this), as Ansible's search path has it."""
    tasks = tmp_path / "roles" / "r" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(
        "- include_tasks: \"{{ lookup('first_found', files) }}\"\n"
        "  vars: {files: [nope.yml, default.yml]}\n"
    )
    (tasks / "default.yml").write_text("- debug: {msg: from default.yml}\n")
    out, report = _apply(tmp_path, "- hosts: a-host\n  gather_facts: false\n  roles: [r]\n")
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["from default.yml"]


def test_a_task_written_to_fail_fails_when_it_runs(tmp_path: Path) -> None:
    """Bad arguments on a task with ignore_errors or failed_when (ansible-core's own error
    tests) are a warning at load and the task's failure where it runs, as Ansible finds them;
    register and failed_when see that failure."""
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - copy: {src: '', dest: /nonexistent/never}\n"
        "      register: bad_copy\n      ignore_errors: true\n"
        "    - fetch:\n      register: bad_fetch\n      failed_when: bad_fetch is not failed\n"
        "    - debug: {msg: \"{{ bad_copy is failed }} {{ 'src' in bad_copy.msg }}\"}\n",
    )
    assert report is not None, out.stderr
    assert out.returncode == 0, out.stdout
    assert "copy: src: empty value (only a warning" in out.stderr
    assert _msgs(report, "a-host") == ["True True"]
    plain, _ = _apply(tmp_path, "- hosts: a-host\n  tasks:\n    - copy: {src: '', dest: /x}\n")
    assert plain.returncode == 4  # certainly runs, certainly wrong: refused at load


def test_rescue_sees_the_failed_result_and_magic_variables(tmp_path: Path) -> None:
    """ansible_failed_result in rescue, ansible_run_tags/skip_tags, ansible_connection, and a
    task or block whose `name:` is empty (null), as Ansible accepts it."""
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - name:\n      block:\n        - command: 'false'\n      rescue:\n"
        "        - debug:\n            msg: >-\n"
        "              {{ ansible_failed_result.rc }} {{ ansible_failed_result.msg }}\n"
        "              {{ ansible_run_tags }} {{ ansible_skip_tags }} {{ ansible_connection }}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["1 non-zero return code ['all'] [] local"]


def test_a_changed_when_that_cannot_be_evaluated_fails_the_task(tmp_path: Path) -> None:
    """Not the run: the task fails (ignore_errors covers it), as ansible-core's changed_when
    and failed_when targets expect."""
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - command: 'true'\n      changed_when: boomboomboom\n"
        "      register: r\n      ignore_errors: true\n"
        "    - debug: {msg: \"{{ r is failed }} {{ 'boomboomboom' in r.changed_when_result }}\"}\n",
    )
    assert report is not None, out.stderr
    assert out.returncode == 0
    assert _msgs(report, "a-host") == ["True True"]


def test_include_vars_failure_has_a_message(tmp_path: Path) -> None:
    """A failed include_vars says why under `message` too, as Ansible's action does."""
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp" / "noext").write_text("a: 1\n")
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - include_vars: {dir: webapp}\n      register: r\n      ignore_errors: true\n"
        "    - debug: {msg: \"{{ 'a valid extension' in r.message }}\"}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["True"]


def test_clear_host_errors_in_always_lets_the_host_go_on(tmp_path: Path) -> None:
    """meta: clear_host_errors after a failed rescue: the host goes on, the run is ok."""
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - block: [{fail: {}}]\n      rescue: [{fail: {}}]\n"
        "      always: [{meta: clear_host_errors}]\n"
        "    - debug: {msg: went on}\n",
    )
    assert report is not None, out.stderr
    assert out.returncode == 0, out.stdout
    assert _msgs(report, "a-host") == ["went on"]


def test_file_diff_peek(tmp_path: Path) -> None:
    """file's `_diff_peek` (ansible-core's file target) says whether a file looks binary."""
    (tmp_path / "bin.dat").write_bytes(b"a\0b")
    (tmp_path / "txt.dat").write_text("text\n")
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        f"    - file: {{path: {tmp_path}/bin.dat, _diff_peek: yes}}\n      register: b\n"
        f"    - file: {{path: {tmp_path}/txt.dat, _diff_peek: yes}}\n      register: t\n"
        "    - debug: {msg: '{{ b.appears_binary }} {{ t.appears_binary }} {{ b.changed }}'}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["True False False"]


def test_include_role_by_role_and_include_vars_folded_and_empty_facts(tmp_path: Path) -> None:
    """include_role `role:` (ansible-core's other name), include_vars with `>` (a trailing
    newline), and ansible_facts empty before any gathering."""
    (tmp_path / "roles" / "r2" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r2" / "tasks" / "main.yml").write_text("- debug: {msg: in r2}\n")
    (tmp_path / "vf.yml").write_text("vf_var: loaded\n")
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        "    - debug: {msg: '{{ ansible_facts == {} }}'}\n"
        "    - include_role: {role: r2}\n"
        "    - include_vars: >\n        vf.yml\n"
        "    - debug: {msg: '{{ vf_var }}'}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["True", "in r2", "loaded"]


def test_blockinfile_says_what_ansible_says(tmp_path: Path) -> None:
    """blockinfile's msg as Ansible's (File created, Block inserted, Block removed)."""
    target = tmp_path / "bi.txt"
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        f"    - blockinfile: {{path: {target}, block: x, create: true}}\n      register: a\n"
        f"    - blockinfile: {{path: {target}, block: y}}\n      register: b\n"
        f"    - blockinfile: {{path: {target}, state: absent}}\n      register: c\n"
        "    - debug: {msg: '{{ a.msg }}|{{ b.msg }}|{{ c.msg }}'}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["File created|Block inserted|Block removed"]


def test_tempfile_reports_its_state(tmp_path: Path) -> None:
    """tempfile's result has the path's state, as Ansible's (its target reads it)."""
    out, report = _apply(
        tmp_path,
        "- hosts: a-host\n  gather_facts: false\n  tasks:\n"
        f"    - tempfile: {{state: directory, path: {tmp_path}}}\n      register: d\n"
        f"    - tempfile: {{path: {tmp_path}}}\n      register: f\n"
        "    - debug: {msg: '{{ d.state }} {{ f.state }}'}\n",
    )
    assert report is not None, out.stderr
    assert _msgs(report, "a-host") == ["directory file"]
