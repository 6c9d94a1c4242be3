"""Ansible INI inventories: the grammar as ansible-core reads it, format detection, errors,
the CLI on an INI file, and a real apply whose inventory says `ansible_become=yes`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from clirun import machineroom

from machineroom.errors import InputError
from machineroom.inventory import (
    Inventory,
    expand_ini_pattern,
    inventory_format,
    load_inventories,
    load_inventory,
    parse_ini_inventory,
    parse_ini_value,
)
from machineroom.lab import Lab

DATA = Path(__file__).parent / "data" / "inventories" / "ini"
TRICKY = DATA / "tricky"
# our fields under the Ansible names ansible-inventory prints
_ANSIBLE_NAME = {
    "host": "ansible_host",
    "user": "ansible_user",
    "port": "ansible_port",
    "ssh_key": "ansible_ssh_private_key_file",
}


def _parse(text: str) -> Inventory:
    return parse_ini_inventory(textwrap.dedent(text), "hosts.ini")


def _error(text: str) -> str:
    with pytest.raises(InputError) as caught:
        _parse(text)
    return str(caught.value)


def _as_ansible_lists(inventory: Inventory) -> dict[str, Any]:
    """Our inventory in the shape of `ansible-inventory --list`."""
    hostvars: dict[str, Any] = {}
    for host in inventory.hosts.values():
        values = dict(host.vars)
        for name in host.field_locations:
            values[_ANSIBLE_NAME[name]] = getattr(host, name)
        hostvars[host.id] = values
    listed: dict[str, Any] = {"_meta": {"hostvars": hostvars}}
    for group in inventory.groups.values():
        body: dict[str, Any] = {}
        if group.children:
            body["children"] = list(group.children)
        if group.hosts:
            body["hosts"] = list(group.hosts)
        if body:
            listed[group.name] = body
    return listed


def test_tricky_sample_matches_ansible_inventory_list() -> None:
    # expected.json is `ansible-inventory -i hosts --list` from ansible-core 2.19
    expected = json.loads((TRICKY / "expected.json").read_text())
    expected["_meta"].pop("profile", None)  # which output profile ansible-inventory used
    assert _as_ansible_lists(load_inventory(TRICKY / "hosts")) == expected


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("5", 5),
        ("1.5", 1.5),
        ("True", True),
        ("yes", "yes"),  # not a literal: the text (Ansible's boolean() reads it later)
        ("true", "true"),
        ("'quoted'", "quoted"),
        ('"two words"', "two words"),
        ("[1, 'a']", [1, "a"]),
        ("(1, 2)", [1, 2]),
        ("{'k': None}", {"k": None}),
        ("/opt/app", "/opt/app"),
        ("{{ other }}", "{{ other }}"),
        ("malformed[list", "malformed[list"),
        ("1+2j", "(1+2j)"),
        ("...", "..."),
        ("", ""),
    ],
)
def test_values_are_read_as_ansible_reads_them(written: str, value: Any) -> None:
    assert parse_ini_value(written) == value


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("web[01:03].lan", ["web01.lan", "web02.lan", "web03.lan"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("n[1:10:4]", ["n1", "n5", "n9"]),
        ("n[:2]", ["n0", "n1", "n2"]),
        ("r[1:2]c[a:b]", ["r1ca", "r1cb", "r2ca", "r2cb"]),
        ("plain.example.com", ["plain.example.com"]),
    ],
)
def test_host_ranges(pattern: str, names: list[str]) -> None:
    assert expand_ini_pattern(pattern) == names


def test_host_line_grammar() -> None:
    inventory = _parse(
        """\
        # before any section: ungrouped
        solo:2201 ansible_user=admin
        v6 ansible_host=::1
        [web]
        web1 ansible_host=10.0.0.1 note="a # inside quotes" # a comment word
        [::1]:2202
        web2   ansible_port=2300  ansible_ssh_private_key_file=~/.ssh/k
        """
    )
    solo = inventory.hosts["solo"]
    assert (solo.user, solo.port, solo.groups) == ("admin", 2201, ("all", "ungrouped"))
    assert inventory.hosts["v6"].host == "::1"
    web1 = inventory.hosts["web1"]
    assert (web1.host, web1.vars["note"]) == ("10.0.0.1", "a # inside quotes")
    assert inventory.hosts["::1"].port == 2202
    web2 = inventory.hosts["web2"]
    assert (web2.port, web2.ssh_key) == (2300, "~/.ssh/k")
    assert web2.var_sources["port"] == "host web2, hosts.ini:7"
    assert web2.field_locations["port"].line == 7


def test_children_vars_and_precedence() -> None:
    inventory = _parse(
        """\
        [prod:children]
        web
        db
        [web]
        w1 role=inline
        [db]
        d1
        [prod:vars]
        role=prod
        tier = 'gold'
        [web:vars]
        role=web
        [all:vars]
        role=all
        ansible_user=deploy
        """
    )
    assert inventory.groups["all"].children == ("ungrouped", "prod")
    assert inventory.groups["prod"].children == ("web", "db")
    w1, d1 = inventory.hosts["w1"], inventory.hosts["d1"]
    assert w1.groups == ("all", "prod", "web")
    assert (w1.vars["role"], d1.vars["role"], d1.vars["tier"]) == ("inline", "prod", "gold")
    assert (w1.user, d1.user) == ("deploy", "deploy")
    assert d1.var_sources["role"] == "group prod, hosts.ini:9"
    assert inventory.groups["ungrouped"].hosts == ()


def test_a_host_in_several_groups_collects_their_vars() -> None:
    inventory = _parse(
        """\
        [a]
        h1 x=1
        [b]
        h1 y=2
        """
    )
    host = inventory.hosts["h1"]
    assert (host.groups, host.vars) == (("all", "a", "b"), {"x": 1, "y": 2})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[web:hostz]\nw1\n", "hosts.ini:1: section [web:hostz] has an unknown type 'hostz'"),
        ("[web server]\n", "hosts.ini:1: invalid section header [web server]"),
        ("[web]\nweb[3:x]\n", "hosts.ini:2: host 'web[3:x]': range [3:x] must be numbers"),
        ("[web]\nweb[01:100]\n", "hosts.ini:2: host 'web[01:100]': range [01:100]: a zero-pad"),
        ("[web]\nweb[c:a]\n", "hosts.ini:2: host 'web[c:a]': range [c:a]: begin must not be"),
        ("[web]\nweb[1:]\n", "hosts.ini:2: host 'web[1:]': range [1:] has no end value"),
        ("[a:children]\na\n[a]\n", "hosts.ini:2: group 'a' is listed as a child of itself"),
        ("[a:children]\nb\n", "hosts.ini:2: section [a:children] names group 'b', which no"),
        ("[x:vars]\nk=v\n", "hosts.ini:1: section [x:vars] is for a group no section defines"),
        ("[web:vars]\njust_a_word\n[web]\n", "hosts.ini:2: [web:vars]: 'just_a_word' is not a"),
        ("w1 oops\n", "hosts.ini:1: host 'w1': 'oops' is not a variable assignment"),
        ('w1 x="open\n', "hosts.ini:1: cannot split the host line"),
        ("w1:\n", "hosts.ini:1: host 'w1:' ends in ':'"),
        ("w1 ansible_port=ssh\n", "hosts.ini:1: host 'w1': ansible_port='ssh' is not a port"),
        ("[a:children]\nb\n[b:children]\na\n[a]\n", "group cycle: a -> b -> a"),
    ],
)
def test_errors_name_the_line_and_what_was_expected(text: str, message: str) -> None:
    assert message in _error(text)


def test_a_child_may_be_defined_after_its_parent_lists_it() -> None:
    inventory = _parse("[top:children]\nmid\n[mid:children]\nleaf\n[leaf]\nh1\n")
    assert inventory.hosts["h1"].groups == ("all", "top", "mid", "leaf")


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("hosts", "[web]\nw1\n", "ini"),
        ("hosts", "# c\n; c\nw1 ansible_host=10.0.0.1\n", "ini"),
        ("hosts", "w1\n", "ini"),
        ("hosts", "web1--10.0.0.1--root\n", "serverlist"),
        ("servers", "#jump--SSH--10.0.0.9--root--\nweb1--10.0.0.1--root\n", "serverlist"),
        ("hosts", "---\nall:\n  hosts:\n", "yaml"),
        ("hosts", "all:\n  hosts:\n", "yaml"),
        ("prod.ini", "w1--10.0.0.1--root\n", "ini"),  # the extension decides
        ("prod.cfg", "w1\n", "ini"),
        ("prod.yml", "[web]\n", "yaml"),
        ("empty", "# nothing\n", "serverlist"),
        ("servers.txt", "w1 ansible_host=10.0.0.1\n", "serverlist"),
    ],
)
def test_format_detection(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert inventory_format(path) == kind


def test_a_folder_with_hosts_ini_and_vars_folders(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("[web]\nw1 ansible_host=10.0.0.1\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("ansible_user: ops\ncolour: blue\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "w1.yml").write_text("colour: red\n")
    host = load_inventory(tmp_path).hosts["w1"]
    assert (host.host, host.user, host.vars["colour"]) == ("10.0.0.1", "ops", "red")


def test_ini_and_yaml_inventories_merge(tmp_path: Path) -> None:
    (tmp_path / "a.ini").write_text("[web]\nw1\n")
    (tmp_path / "b.yml").write_text("web:\n  hosts:\n    w2:\n")
    merged = load_inventories([tmp_path / "a.ini", tmp_path / "b.yml"])
    assert merged.groups["web"].hosts == ("w1", "w2")


def test_cli_validate_ls_and_plan_on_an_ini_file(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text(
        "[web]\nweb[1:2] ansible_host=127.0.0.1 ansible_user=root\n[web:vars]\nport_no=8080\n"
    )
    (tmp_path / "site.yml").write_text(
        "- hosts: web\n  tasks:\n    - name: Say\n      command: echo {{ port_no }}\n"
    )
    valid = machineroom("validate", "-i", "hosts.ini", cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    listed = machineroom("ls", "-i", "hosts.ini", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "web1" in listed.stdout and "web2" in listed.stdout
    plan = machineroom("plan", "site.yml", "-i", "hosts.ini", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "web1" in plan.stdout and "Say" in plan.stdout
    (tmp_path / "bad.ini").write_text("[web:kids]\nw1\n")
    bad = machineroom("validate", "-i", "bad.ini", cwd=tmp_path)
    assert bad.returncode == 4
    assert "bad.ini:1: section [web:kids] has an unknown type 'kids'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_apply_with_an_ini_inventory_and_inventory_become(tmp_path: Path, lab: Lab) -> None:
    first, second = lab.hosts[0], lab.hosts[1]
    key = lab.key
    (tmp_path / "hosts.ini").write_text(
        textwrap.dedent(
            f"""\
            [app]
            {first.name} ansible_host={first.address} ansible_user=root
            {second.name} ansible_host={second.address} ansible_user=deploy ansible_become=yes
            plain ansible_host={second.address} ansible_user=deploy ansible_become=no

            [app:vars]
            ansible_ssh_private_key_file={key}
            greeting = "hello from the group"
            """
        )
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            """\
            - hosts: app
              gather_facts: false
              tasks:
                - name: Who
                  command: id -un
                  register: who
                  changed_when: false
                - name: Who with the keyword
                  become: true
                  command: id -un
                  register: who2
                  changed_when: false
                - name: Greet
                  copy:
                    dest: /tmp/ini-greeting-{{ inventory_hostname }}
                    content: "{{ greeting }} as {{ who.stdout }}/{{ who2.stdout }}\\n"
            """
        )
    )
    out = machineroom("apply", "site.yml", "-i", "hosts.ini", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for host in (first.name, second.name, "plain"):
        tasks = {t["task"]: t for t in report["hosts"][host]["tasks"]}
        assert tasks["Greet"]["status"] == "changed"

    def greeting(target: str, file_of: str) -> str:
        command = f"cat /tmp/ini-greeting-{file_of}"
        out = machineroom("run", target, "-i", "hosts.ini", "--json", "--", command, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return str(next(iter(json.loads(out.stdout)["hosts"].values()))["stdout"]).strip()

    assert greeting(first.name, first.name) == "hello from the group as root/root"
    # deploy became root through the inventory's ansible_become=yes, with no become keyword
    assert greeting(second.name, second.name) == "hello from the group as root/root"
    # ansible_become=no outranks a task's `become: true`, as in Ansible
    assert greeting("plain", "plain") == "hello from the group as deploy/deploy"
