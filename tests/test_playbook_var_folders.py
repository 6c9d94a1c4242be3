"""group_vars/ and host_vars/ beside the playbook count, as in Ansible, over the inventory's
own; `role_names` lists the play's roles. A real `machineroom apply` (connection local) whose
debug tasks show each variable, read from the --json document.

Ansible's order, lowest first: inventory group_vars/all, playbook group_vars/all, inventory
group_vars/GROUP, playbook group_vars/GROUP, inventory host_vars/HOST, playbook host_vars/HOST.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from tests.clirun import machineroom

LAYERS = {
    "group_vars/all.yml": "inv-all",
    "playbooks/group_vars/all.yml": "pb-all",
    "group_vars/web.yml": "inv-web",
    "playbooks/group_vars/web/main.yml": "pb-web",
    "host_vars/localhost.yml": "inv-host",
    "playbooks/host_vars/localhost.yml": "pb-host",
}


def test_playbook_folders_vars_count_over_the_inventorys(tmp_path: Path) -> None:
    user = os.environ.get("USER") or "root"
    (tmp_path / "inventory.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n"
        f"        localhost: {{connection: local, host: 127.0.0.1, user: {user}}}\n"
    )
    # each layer sets `won` (the highest wins) and a name of its own (every layer is read)
    for number, (path, label) in enumerate(LAYERS.items()):
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"won: {label}\nlayer_{number}: {label}\n")
    # a playbook group_vars file for a group this inventory lacks: no warning, no error
    (tmp_path / "playbooks" / "group_vars" / "db.yml").write_text("won: never\n")
    role = tmp_path / "playbooks" / "roles" / "banner" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text('- debug: {msg: "{{ role_names | to_json }}"}\n')
    (tmp_path / "playbooks" / "site.yml").write_text(
        textwrap.dedent(
            """\
            - hosts: web
              gather_facts: false
              roles: [banner]
              tasks:
                - debug: {msg: "{{ won }}"}
                - debug:
                    msg: "{{ [layer_0, layer_1, layer_2, layer_3, layer_4, layer_5] | join(' ') }}"
            """
        )
    )
    out = machineroom("apply", "playbooks/site.yml", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not used" not in out.stderr
    tasks = json.loads(out.stdout)["hosts"]["localhost"]["tasks"]
    messages = [task["msg"] for task in tasks]
    assert json.loads(messages[0]) == ["banner"]
    assert messages[1] == "pb-host"
    assert messages[2] == " ".join(LAYERS.values())


def test_each_layer_wins_over_the_one_below_it(tmp_path: Path) -> None:
    user = os.environ.get("USER") or "root"
    (tmp_path / "inventory.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n"
        f"        localhost: {{connection: local, host: 127.0.0.1, user: {user}}}\n"
    )
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "site.yml").write_text(
        '- hosts: web\n  gather_facts: false\n  tasks:\n    - debug: {msg: "{{ won }}"}\n'
    )
    written: list[Path] = []
    for path, label in LAYERS.items():  # add the layers from the lowest: each one then wins
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"won: {label}\n")
        written.append(file)
        out = machineroom("apply", "playbooks/site.yml", "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        shown = json.loads(out.stdout)["hosts"]["localhost"]["tasks"][0]["msg"]
        assert shown == label, (path, shown)


def test_ansibles_variable_precedence_between_inline_vars_and_files(tmp_path: Path) -> None:
    """ansible-inventory 2.19 --playbook-dir gives these: a group_vars/all file beats a child
    group's vars in the inventory file, and a parent group's file beside the playbook beats a
    child group's file beside the inventory (every inventory file first, then the playbook's)."""
    user = os.environ.get("USER") or "root"
    (tmp_path / "inventory.yml").write_text(
        "all:\n  children:\n    web:\n      vars: {inline_or_all: web-inline}\n"
        "      children:\n        prod:\n          hosts:\n"
        f"            localhost: {{connection: local, host: 127.0.0.1, user: {user}}}\n"
    )
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("inline_or_all: all-file\n")
    (tmp_path / "group_vars" / "prod.yml").write_text("child_or_parent: inv-prod\n")
    (tmp_path / "playbooks" / "group_vars").mkdir(parents=True)
    (tmp_path / "playbooks" / "group_vars" / "web.yml").write_text("child_or_parent: pb-web\n")
    (tmp_path / "playbooks" / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        '    - debug: {msg: "{{ inline_or_all }} {{ child_or_parent }}"}\n'
    )
    out = machineroom("apply", "playbooks/site.yml", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    shown = json.loads(out.stdout)["hosts"]["localhost"]["tasks"][0]["msg"]
    assert shown == "all-file pb-web"


def test_role_names_as_ansible_lists_them(tmp_path: Path) -> None:
    """role_names: the roles the play names (a vars-only role too), not their dependencies;
    ansible_role_names: both. A template reading role_names passes the check before the run."""
    user = os.environ.get("USER") or "root"
    (tmp_path / "inventory.yml").write_text(
        f"all:\n  hosts:\n    localhost: {{connection: local, host: 127.0.0.1, user: {user}}}\n"
    )
    roles = tmp_path / "roles"
    (roles / "common" / "tasks").mkdir(parents=True)
    (roles / "common" / "tasks" / "main.yml").write_text("- debug: {msg: common}\n")
    (roles / "app" / "meta").mkdir(parents=True)
    (roles / "app" / "meta" / "main.yml").write_text("dependencies: [common]\n")
    (roles / "app" / "tasks").mkdir()
    (roles / "app" / "tasks" / "main.yml").write_text("- debug: {msg: app}\n")
    (roles / "varsonly" / "defaults").mkdir(parents=True)
    (roles / "varsonly" / "defaults" / "main.yml").write_text("quiet: true\n")
    (tmp_path / "names.j2").write_text("{{ role_names | join(',') }}\n")
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  roles: [varsonly, app]\n  tasks:\n"
        "    - debug: {msg: \"{{ role_names | join(',') }} / {{ ansible_role_names | join(',') }}"
        " / {{ ansible_dependent_role_names | join(',') }}\"}\n"
        f"    - template: {{src: names.j2, dest: {tmp_path}/names.txt}}\n"
    )
    out = machineroom("apply", "site.yml", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    messages = [t["msg"] for t in json.loads(out.stdout)["hosts"]["localhost"]["tasks"]]
    assert "varsonly,app / varsonly,app,common / common" in messages
    assert (tmp_path / "names.txt").read_text() == "varsonly,app\n"
