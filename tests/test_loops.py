"""Loops as ansible-core's: every `with_*` keyword, the lookups behind them (also through
`lookup()`/`query()` in `loop:`), `loop_control`, `when` per item and `set_fact` in a loop.

Each case is a task of a real `machineroom apply` (connection local) that registers its
result; a `debug` task then shows what a user would check, as JSON. Every expected value was
produced by ansible-core 2.19 running the same playbook (`ansible-playbook` with connection
local: `playbook_text()` writes it), except `with_flattened`/`with_cartesian`, which live in
community.general and follow its documentation. The last test runs a role's
`with_first_found` on a lab host.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from tests.clirun import machineroom

ITEMS = "{{ r.results | map(attribute='item') | list | to_json }}"
MSGS = "{{ r.results | map(attribute='msg') | list | to_json }}"
NAMES = "{{ r.results | map(attribute='item') | map('basename') | list | to_json }}"

# (case name, the task's loop keywords as YAML, what to show, what ansible-core showed)
CASES: list[tuple[str, str, str, Any]] = [
    ("items flattens one level", "with_items: [1, [2, [3]], x]", ITEMS, [1, 2, [3], "x"]),
    ("items from a variable", 'with_items: "{{ nested }}"', ITEMS, ["a", "b", "c"]),
    ("items of a scalar", "with_items: one", ITEMS, ["one"]),
    ("list keeps lists", "with_list: [[1, 2], 3]", ITEMS, [[1, 2], 3]),
    (
        "dict gives key and value",
        "with_dict: {x: 1, y: {z: 2}}",
        ITEMS,
        [{"key": "x", "value": 1}, {"key": "y", "value": {"z": 2}}],
    ),
    (
        "dict from a variable",
        'with_dict: "{{ ports }}"',
        ITEMS,
        [{"key": "http", "value": 80}, {"key": "ssh", "value": 22}],
    ),
    (
        "together pads with null",
        "with_together: [[1, 2, 3], [a, b]]",
        ITEMS,
        [[1, "a"], [2, "b"], [3, None]],
    ),
    (
        "subelements",
        "with_subelements: ['{{ keyed }}', keys]",
        ITEMS,
        [[{"name": "a"}, "k1"], [{"name": "a"}, "k2"], [{"name": "b"}, "k3"]],
    ),
    (
        "subelements skip_missing",
        "with_subelements: ['{{ users }}', keys, {skip_missing: true}]",
        ITEMS,
        [[{"name": "a"}, "k1"], [{"name": "a"}, "k2"]],
    ),
    (
        "subelements of a deeper key",
        "with_subelements: ['{{ deep }}', auth.keys]",
        ITEMS,
        [[{"name": "d", "auth": {}}, "k9"]],
    ),
    (
        "nested",
        "with_nested: [[1, 2], [a, b]]",
        ITEMS,
        [[1, "a"], [1, "b"], [2, "a"], [2, "b"]],
    ),
    (
        "nested of three",
        "with_nested: [[1], [a, b], [x]]",
        ITEMS,
        [[1, "a", "x"], [1, "b", "x"]],
    ),
    (
        "sequence with a format",
        "with_sequence: start=1 end=5 format=x%02d",
        ITEMS,
        ["x01", "x02", "x03", "x04", "x05"],
    ),
    ("sequence count", "with_sequence: count=3", ITEMS, ["1", "2", "3"]),
    (
        "sequence backwards",
        "with_sequence: start=10 end=0 stride=-5",
        ITEMS,
        ["10", "5", "0"],
    ),
    (
        "sequence shortcut",
        "with_sequence: '4:host%02d'",
        ITEMS,
        ["host01", "host02", "host03", "host04"],
    ),
    (
        "sequence count format",
        "with_sequence: start=8 count=3 format=%04x",
        ITEMS,
        ["0008", "0009", "000a"],
    ),
    (
        "sequence from a variable",
        'with_sequence: start=2 end="{{ last }}" stride=2',
        ITEMS,
        ["2", "4", "6"],
    ),
    (
        "indexed items",
        "with_indexed_items: [a, [b, c]]",
        ITEMS,
        [[0, "a"], [1, "b"], [2, "c"]],
    ),
    ("random choice of one", "with_random_choice: [only]", ITEMS, ["only"]),
    ("lines", "with_lines: printf 'a\\nb\\n'", ITEMS, ["a", "b"]),
    ("env", "with_env: [MR_LOOP_TEST]", ITEMS, ["hello"]),
    ("file from files/", "with_file: [a.txt]", ITEMS, ["alpha"]),
    ("fileglob in files/", "with_fileglob: ['*.txt']", NAMES, ["a.txt"]),
    ("first found in files/", "with_first_found: [nope.txt, a.txt, c.txt]", NAMES, ["a.txt"]),
    (
        "first found drops undefined names",
        "with_first_found: ['{{ nowhere }}.txt', {files: ['{{ nowhere }}', c.txt]}]",
        NAMES,
        ["c.txt"],
    ),
    (
        "first found with paths",
        "with_first_found: [{files: [nope.yml, b.yml], paths: [vars]}]",
        NAMES,
        ["b.yml"],
    ),
    (
        "first found skip",
        "with_first_found: [{files: [nope.yml], skip: true}]",
        "{{ r.skipped }}",
        True,
    ),
    (
        "query in loop",
        "loop: \"{{ query('sequence', 'start=1 end=3') }}\"",
        ITEMS,
        ["1", "2", "3"],
    ),
    (
        "lookup wantlist in loop",
        "loop: \"{{ lookup('sequence', 'start=1 end=3', wantlist=True) }}\"",
        ITEMS,
        ["1", "2", "3"],
    ),
    (
        "query first_found in loop",
        "loop: \"{{ query('first_found', ['nope.txt', 'c.txt']) }}\"",
        NAMES,
        ["c.txt"],
    ),
    (
        "query dict",
        "loop: \"{{ query('dict', ports) }}\"",
        ITEMS,
        [{"key": "http", "value": 80}, {"key": "ssh", "value": 22}],
    ),
    (
        "loop_var and index_var",
        "loop: [a, b]\n  loop_control: {loop_var: thing, index_var: i}",
        "{{ r.results | map(attribute='thing') | list | to_json }}",
        ["a", "b"],
    ),
    (
        "when per item",
        "loop: [1, 2, 3]\n  when: item > 1",
        "{{ r.results | rejectattr('skipped', 'defined') | map(attribute='item') | list"
        " | to_json }}",
        [2, 3],
    ),
    (
        "undefined loop, when false",
        'loop: "{{ nowhere }}"\n  when: nowhere is defined',
        "{{ r.skipped }}",
        True,
    ),
    (
        "undefined with_items, when false",
        'with_items: "{{ nowhere }}"\n  when: false',
        "{{ r.skipped }}",
        True,
    ),
    ("empty loop skips", "loop: []", "{{ [r.skipped, r.results] | to_json }}", [True, []]),
]

# cases whose message is the item's own `msg` (debug msg set by the case)
MSG_CASES: list[tuple[str, str, str, Any]] = [
    (
        "extended",
        "loop: [a, b, c]\n  loop_control: {extended: true, extended_allitems: false}",
        "{{ ansible_loop.index }}/{{ ansible_loop.revindex0 }}/{{ ansible_loop.first }}/"
        "{{ ansible_loop.last }}/{{ ansible_loop.previtem | default('-') }}/"
        "{{ ansible_loop.nextitem | default('-') }}/{{ ansible_loop.allitems | default('no') }}",
        ["1/2/True/False/-/b/no", "2/1/False/False/a/c/no", "3/0/False/True/b/-/no"],
    ),
    (
        "index var names",
        "loop: [a, b]\n  loop_control: {index_var: n}",
        "{{ n }}-{{ ansible_index_var }}-{{ ansible_loop_var }}",
        ["0-n-item", "1-n-item"],
    ),
]

VARS = {
    "nested": [["a", "b"], "c"],
    "ports": {"http": 80, "ssh": 22},
    "keyed": [{"name": "a", "keys": ["k1", "k2"]}, {"name": "b", "keys": ["k3"]}],
    "users": [{"name": "a", "keys": ["k1", "k2"]}, {"name": "b"}],
    "deep": [{"name": "d", "auth": {"keys": ["k9"]}}],
    "last": 6,
}


def playbook_text() -> str:
    """The playbook of every case, for machineroom and for ansible-playbook alike."""
    tasks: list[str] = []
    for index, (name, keywords, show, _) in enumerate(CASES):
        tasks.append(
            f"- name: case {index} {name}\n  debug: {{msg: '{{{{ 1 }}}}'}}\n"
            f"  {keywords}\n  register: r\n"
            f"- name: show {index}\n  debug:\n    msg: {json.dumps(show)}\n"
        )
    for index, (name, keywords, msg, _) in enumerate(MSG_CASES):
        tasks.append(
            f"- name: mcase {index} {name}\n  debug:\n    msg: {json.dumps(msg)}\n"
            f"  {keywords}\n  register: r\n"
            f"- name: mshow {index}\n  debug:\n    msg: {json.dumps(MSGS)}\n"
        )
    tasks.append(
        "- set_fact: {acc: \"{{ (acc | default([])) + [item] }}\", last_item: '{{ item }}'}\n"
        "  loop: [1, 2, 3]\n"
        '- name: show acc\n  debug: {msg: "{{ [acc, last_item] | to_json }}"}\n'
    )
    tasks.append(
        "- include_tasks: inc.yml\n  loop: [p, q]\n"
        "- include_tasks: '{{ item }}'\n  with_first_found: [nope.yml, inc2.yml]\n"
        '- name: show includes\n  debug: {msg: "{{ [incs, inc2] | to_json }}"}\n'
    )
    body = textwrap.indent("".join(tasks), "    ")
    return (
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        f"  vars: {json.dumps(VARS)}\n  tasks:\n{body}"
    )


def write_project(folder: Path) -> None:
    """The playbook and the files the cases look for."""
    (folder / "files").mkdir()
    (folder / "files" / "a.txt").write_text("alpha\n")
    (folder / "vars").mkdir()
    (folder / "vars" / "b.yml").write_text("b: 1\n")
    (folder / "c.txt").write_text("c\n")
    (folder / "inc.yml").write_text("- set_fact: {incs: '{{ (incs | default([])) + [item] }}'}\n")
    (folder / "inc2.yml").write_text("- set_fact: {inc2: found}\n")
    (folder / "site.yml").write_text(playbook_text())


def _messages(report: dict[str, Any]) -> dict[str, Any]:
    tasks = report["hosts"]["localhost"]["tasks"]
    return {t["task"]: t["msg"] for t in tasks}


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("loops")
    write_project(folder)
    user = os.environ.get("USER") or "root"
    (folder / "inventory.yml").write_text(
        f"all:\n  hosts:\n    localhost: {{connection: local, host: 127.0.0.1, user: {user}}}\n"
    )
    out = machineroom(
        "apply", "site.yml", "--json", cwd=folder, env={"MR_LOOP_TEST": "hello"}, timeout=180
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return _messages(json.loads(out.stdout))


def _value(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return {"True": True, "False": False}.get(str(text), text)


@pytest.mark.parametrize(
    ("index", "expected"),
    [(i, c[3]) for i, c in enumerate(CASES)],
    ids=[c[0] for c in CASES],
)
def test_with_loops_and_lookups_give_ansibles_items(
    shown: dict[str, Any], index: int, expected: Any
) -> None:
    assert _value(shown[f"show {index}"]) == expected


@pytest.mark.parametrize(
    ("index", "expected"),
    [(i, c[3]) for i, c in enumerate(MSG_CASES)],
    ids=[c[0] for c in MSG_CASES],
)
def test_loop_control_variables_as_ansibles(
    shown: dict[str, Any], index: int, expected: Any
) -> None:
    assert _value(shown[f"mshow {index}"]) == expected


def test_set_fact_in_a_loop_accumulates(shown: dict[str, Any]) -> None:
    # each item sees the facts the items before it set; the last item's value wins
    assert _value(shown["show acc"]) == [[1, 2, 3], 3]


def test_an_undefined_loop_fails_unless_when_is_false(tmp_path: Path) -> None:
    # ansible-core 2.19 runs `when` without the item first: false skips the task (A); an error
    # there (B, `item` is undefined too) or a true one (C) leaves the loop's own error standing
    user = os.environ.get("USER") or "root"
    (tmp_path / "inventory.yml").write_text(
        f"all:\n  hosts:\n    localhost: {{connection: local, host: 127.0.0.1, user: {user}}}\n"
    )
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            """
            - hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - name: A
                  debug: {msg: "{{ item }}"}
                  with_items: "{{ nowhere }}"
                  when: item is defined
                - name: B
                  debug: {msg: "{{ item }}"}
                  with_items: "{{ nowhere }}"
                  when: item > 1
                  ignore_errors: true
                - name: C
                  debug: {msg: "{{ item }}"}
                  loop: "{{ nowhere }}"
            """
        )
    )
    out = machineroom("apply", "site.yml", "--json", cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    tasks = {t["task"]: t for t in json.loads(out.stdout)["hosts"]["localhost"]["tasks"]}
    assert tasks["A"]["status"] == "skipped"
    assert (tasks["B"]["status"], tasks["B"]["ignored"]) == ("failed", True)
    assert tasks["C"]["status"] == "failed"
    for name in "BC":
        assert "undefined variable 'nowhere'" in tasks[name]["msg"], tasks[name]["msg"]


def test_with_first_found_in_a_role_picks_the_os_family_file(tmp_path: Path, lab: Lab) -> None:
    host = next(h for h in lab.hosts if h.name == "h15")
    (tmp_path / "inventory.yml").write_text(
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n  hosts:\n"
        f"    h15: {{host: {host.address}, user: root}}\n"
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    role = tmp_path / "roles" / "osvars"
    for folder in ("tasks", "vars", "templates"):
        (role / folder).mkdir(parents=True)
    (role / "vars" / "Debian.yml").write_text("picked: debian\n")
    (role / "vars" / "default.yml").write_text("picked: default\n")
    (role / "templates" / "default.conf.j2").write_text("role template for {{ picked }}\n")
    (role / "tasks" / "main.yml").write_text(
        textwrap.dedent(
            """
            - include_vars: "{{ item }}"
              with_first_found:
                - "{{ ansible_os_family }}.yml"
                - default.yml
            - name: show family
              debug: {msg: "{{ ansible_os_family }} {{ picked }}"}
            - include_vars: "{{ item }}"
              with_first_found: [Nope.yml, default.yml]
            - name: show fallback
              debug: {msg: "{{ picked }}"}
            - template: {src: "{{ item }}", dest: /tmp/mr-loops.conf}
              with_first_found: ["{{ inventory_hostname }}.conf.j2", default.conf.j2]
            - command: cat /tmp/mr-loops.conf
              register: conf
            - name: show conf
              debug: {msg: "{{ conf.stdout }}"}
            """
        )
    )
    (tmp_path / "site.yml").write_text("- hosts: h15\n  roles: [osvars]\n")
    out = machineroom("apply", "site.yml", "--json", cwd=tmp_path, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = json.loads(out.stdout)["hosts"]["h15"]["tasks"]
    shown = {t["task"].removeprefix("osvars : "): t["msg"] for t in tasks}
    family = shown["show family"].split()[0]
    assert shown["show family"] == f"{family} {'debian' if family == 'Debian' else 'default'}"
    assert family == "Debian"  # the lab's hosts run this machine's Debian
    assert shown["show fallback"] == "default"
    assert shown["show conf"] == "role template for default"


def test_looped_includes_run_once_per_item(shown: dict[str, Any]) -> None:
    # include_tasks with loop: the file's tasks see each item; with_first_found picks the file
    assert _value(shown["show includes"]) == [["p", "q"], "found"]
