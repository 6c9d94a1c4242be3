"""Per-host programs on real hosts: the same results as one command per task, in fewer
commands; a failure stops the program there; plays whose hosts wait for each other get none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from tests.test_apply import Project

# Every kind of step a program holds, and what breaks one: a register read later, a local
# module, a `when` that is false, an ignored failure, input on stdin, check and diff output.
PLAYBOOK = """\
- hosts: web
  tasks:
    - file: {path: "{{ base }}", state: directory, mode: "0755"}
    - copy: {content: "one\\n", dest: "{{ base }}/one", mode: "0640"}
    - copy: {src: two.txt, dest: "{{ base }}/two"}
    - command: cat
      args: {stdin: "from stdin"}
      register: echoed
      changed_when: false
    - copy: {content: "{{ echoed.stdout }}\\n", dest: "{{ base }}/echoed"}
    - lineinfile: {path: "{{ base }}/conf", line: "a=1", create: true}
    - lineinfile: {path: "{{ base }}/conf", regexp: "^b=", line: "b=2"}
    - command: "false"
      ignore_errors: true
    - shell: echo out; echo err >&2
      register: both
      changed_when: false
    - debug: {msg: "{{ both.stdout }} {{ both.stderr }}"}
    - file: {path: "{{ base }}/never", state: touch}
      when: false
    - template: {src: t.j2, dest: "{{ base }}/t.txt"}
    - command: touch {{ base }}/made
      args: {creates: "{{ base }}/made"}
    - stat: {path: "{{ base }}/one"}
      register: st
    - assert: {that: ["st.stat.exists", "st.stat.mode == '0640'"]}
"""


@pytest.fixture(scope="module")
def project(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("programs")
    project = Project(root, lab, ["h3", "h4"])
    project.write("site.yml", PLAYBOOK)
    project.write("two.txt", "two\n")
    project.write("t.j2", "host {{ inventory_hostname }} in {{ base }}\n")
    project.write(
        "failing.yml",
        """\
        - hosts: web
          tasks:
            - file: {path: "{{ base }}", state: directory}
            - command: "false"
            - copy: {content: "x", dest: "{{ base }}/after-failure"}
        """,
    )
    project.write(
        "linear.yml",
        """\
        - hosts: web
          strategy: linear
          tasks:
            - file: {path: "{{ base }}", state: directory}
            - copy: {content: "x", dest: "{{ base }}/x"}
            - command: touch {{ base }}/y
        """,
    )
    # a variable and a template file that read a result registered again later: the program
    # that holds the second register must not render them with the first one's value
    project.write("said.j2", "template: {{ said }}\n")
    project.write(
        "indirect.yml",
        """\
        - hosts: web
          vars:
            said: "{{ r.stdout }}"
          tasks:
            - file: {path: "{{ base }}", state: directory}
            - command: echo one
              register: r
            - debug: {msg: "{{ said }}"}
            - command: echo two
              register: r
            - copy: {content: "copy: {{ said }}\\n", dest: "{{ base }}/copy"}
            - template: {src: said.j2, dest: "{{ base }}/template"}
        """,
    )
    # a changed_when that fails on the result fails the task (exit code 0): the program
    # must not go on with the next task
    project.write(
        "changed_when.yml",
        """\
        - hosts: web
          tasks:
            - file: {path: "{{ base }}", state: directory}
            - command: echo not-json
              register: r
              changed_when: (r.stdout | from_json).x
            - copy: {content: "x", dest: "{{ base }}/after"}
        """,
    )
    project.write("facts.j2", "{{ ansible_hostname }} runs {{ ansible_system }}\n")
    project.write(
        "facts.yml",
        """\
        - hosts: web
          tasks:
            - file: {path: "{{ base }}", state: directory}
            - copy: {content: "x", dest: "{{ base }}/x"}
            - template: {src: facts.j2, dest: "{{ base }}/facts.txt"}
            - copy: {content: "{{ ansible_hostname }}", dest: "{{ base }}/name"}
        """,
    )
    return project


def rows(project: Project, run_id: int, base: str) -> list[tuple[Any, ...]]:
    """What a user sees of each task of a run, with the run's folder named alike."""
    found = project.db(
        "select host_id, task, status, message, stdout, stderr, diff from task_results"
        f" where run_id = {run_id} order by host_id, id"
    )
    return [tuple(str(v).replace(base, "BASE") for v in row) for row in found]


def commands(project: Project, run_id: int) -> int:
    return int(project.db(f"select count(*) from audit_log where run_id = {run_id}")[0][0])


def recap(report: Any) -> dict[str, Any]:
    return {host: stats for host, stats in report["stats"].items()}


def test_same_results_as_one_command_per_task_in_fewer_commands(project: Project) -> None:
    seen: dict[str, list[Any]] = {}
    counts: dict[str, list[int]] = {}
    for mode, flags in (("on", ()), ("off", ("--no-programs",))):
        base = f"/srv/mr-programs-{mode}"
        for attempt in ("first", "again", "check"):
            extra = ("--check", "--diff") if attempt == "check" else ("--diff",)
            out, report = project.apply("site.yml", "-e", f"base={base}", *flags, *extra)
            assert out.returncode == 0, out.stderr
            run_id = report["run_id"]
            seen.setdefault(mode, []).append((recap(report), rows(project, run_id, base)))
            counts.setdefault(mode, []).append(commands(project, run_id))
            # a program's audit row keeps every task's output, each under its task's name
            audited = project.db(f"select stdout_tail from audit_log where run_id = {run_id}")
            assert any("from stdin" in row[0] for row in audited)
        assert project.sh("h3", f"cat {base}/echoed {base}/conf {base}/t.txt") == (
            f"from stdin\na=1\nb=2\nhost h3 in {base}\n"
        )
    assert seen["on"] == seen["off"]
    first = seen["on"][0][0]["h3"]
    assert (first["changed"], first["failed"], first["ignored"], first["skipped"]) == (8, 0, 1, 1)
    assert seen["on"][1][0]["h3"]["changed"] == 0
    # 15 tasks, 11 on the host (one, a shell task through sudo's probe... see counts):
    # programs break at the register read, at debug and at assert
    assert counts["on"][1] <= 2 * 4 < counts["off"][1], counts


def test_a_failed_task_stops_its_program_there(project: Project) -> None:
    base = "/srv/mr-programs-failing"
    out, report = project.apply("failing.yml", "-e", f"base={base}")
    assert out.returncode == 2
    assert report["stats"]["h3"]["failed"] == 1
    statuses = [r[2] for r in rows(project, report["run_id"], base) if r[0] == "h3"]
    assert statuses == ["changed", "failed"]
    assert project.sh("h3", f"ls {base}; echo end") == "end\n"  # the copy never ran


def test_a_name_registered_in_the_program_is_read_with_its_new_value(project: Project) -> None:
    base = "/srv/mr-programs-indirect"
    out, _ = project.apply("indirect.yml", "-e", f"base={base}")
    assert out.returncode == 0, out.stderr
    assert project.sh("h3", f"cat {base}/copy {base}/template") == "copy: two\ntemplate: two\n"


def test_a_task_failed_by_its_changed_when_stops_the_program(project: Project) -> None:
    base = "/srv/mr-programs-changed-when"
    out, report = project.apply("changed_when.yml", "-e", f"base={base}")
    assert out.returncode == 2
    statuses = [r[2] for r in rows(project, report["run_id"], base) if r[0] == "h3"]
    assert statuses == ["changed", "failed"]
    assert project.sh("h3", f"ls {base}; echo end") == "end\n"  # the copy never ran


def test_strategy_linear_keeps_one_command_per_task(project: Project) -> None:
    """Lock-step hosts must not run ahead of each other: no programs (test_play_keywords
    checks the lock-step itself)."""
    out, report = project.apply("linear.yml", "-e", "base=/srv/mr-programs-linear")
    assert out.returncode == 0, out.stderr
    assert commands(project, report["run_id"]) == 2 * 3


def test_programs_are_described_in_the_docs() -> None:
    text = Path(__file__).parents[1].joinpath("docs", "playbooks.md").read_text()
    assert "per-host program" in text


def test_facts_go_in_the_first_program_with_the_tasks_that_read_none(project: Project) -> None:
    base = "/srv/mr-programs-facts"
    out, report = project.apply("facts.yml", "-e", f"base={base}")
    assert out.returncode == 0, out.stderr
    # facts + file + copy, then the template and the copy that read facts
    assert commands(project, report["run_id"]) == 2 * 2
    assert project.sh("h4", f"cat {base}/facts.txt {base}/name") == "h4 runs Linux\nh4"
