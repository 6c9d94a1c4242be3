"""Deciding whether a play that does not say `gather_facts` needs facts (pure logic)."""

from __future__ import annotations

from pathlib import Path

from machineroom.executor.facts_needed import play_needs_facts
from machineroom.inventory.model import Host
from machineroom.playbook.model import Block, Play, RoleRef, Stage, Task


def play(*tasks: Task | Block, **fields: object) -> Play:
    return Play(hosts="all", stages=(Stage("main", tuple(tasks)),), **fields)  # type: ignore[arg-type]


def test_no_fact_mentioned_no_gathering(tmp_path: Path) -> None:
    tasks = [
        Task("copy", {"content": "{{ app_port }}", "dest": "/etc/app"}),
        Task("command", {"cmd": "echo {{ ansible_host }} {{ inventory_hostname }}"}),
        Task("debug", {"msg": "x"}, when=("ansible_check_mode",)),
    ]
    assert not play_needs_facts(play(*tasks), [Host("h1", "10.0.0.1")], str(tmp_path))


def test_facts_in_arguments_conditions_vars_and_templates(tmp_path: Path) -> None:
    hosts = [Host("h1", "10.0.0.1")]
    uses = [
        play(Task("debug", {"msg": "{{ ansible_distribution }}"})),
        play(Task("debug", {"msg": "x"}, when=("ansible_facts.os_family == 'Debian'",))),
        play(Task("debug", {"msg": "{{ facts.memory.total_mb }}"})),
        play(Task("debug", {"msg": "{{ mem }}"}), vars={"mem": "{{ ansible_memtotal_mb }}"}),
        play(Block((Task("debug", {"msg": "x"}),), when=("ansible_os_family == 'Debian'",))),
        play(Task("include_tasks", {"file": "x.yml"}, kind="include")),
    ]
    for one in uses:
        assert play_needs_facts(one, hosts, str(tmp_path)), one
    role = tmp_path / "roles" / "web"
    (role / "templates").mkdir(parents=True)
    (role / "templates" / "motd.j2").write_text("{{ ansible_hostname }}\n")
    task = Task("template", {"src": "motd.j2", "dest": "/etc/motd"}, role=RoleRef("web", str(role)))
    assert play_needs_facts(play(task), hosts, str(tmp_path))
    inventory_host = Host("h2", "10.0.0.2", vars={"banner": "{{ ansible_kernel }}"})
    assert play_needs_facts(play(Task("debug", {"msg": "x"})), [inventory_host], str(tmp_path))
