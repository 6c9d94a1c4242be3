"""vars_files chosen per host, as ansible-core 2.19 reads them: a templated name rendered with
the host's facts and vars, a list of candidates of which the first found is read, a name
needing an undefined variable failing the first task after facts, none found failing with
the candidates named. Real `machineroom apply` runs on this machine (connection: local)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from clirun import machineroom


def _project(tmp_path: Path, vars_files: str) -> Path:
    (tmp_path / "vars").mkdir()
    (tmp_path / "vars" / "Debian.yml").write_text("os_var: from-Debian\n")
    (tmp_path / "vars" / "default.yml").write_text("os_var: from-default\n")
    (tmp_path / "vars" / "web.yml").write_text("role_var: web-settings\n")
    (tmp_path / "inventory.yml").write_text(
        "all:\n  hosts:\n    here: {host: 127.0.0.1, user: root, connection: local}\n"
    )
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  vars: {kind: web}\n  vars_files:\n"
        + textwrap.indent(vars_files, "    ")
        + "  tasks:\n"
        + "    - debug: {msg: \"{{ os_var }} {{ role_var | default('-') }}\"}\n"
    )
    return tmp_path


def _messages(out: str) -> list[str]:
    report = json.loads(out)
    return [t.get("msg", "") for t in report["hosts"]["here"]["tasks"]]


def test_templated_names_and_candidates(tmp_path: Path) -> None:
    _project(
        tmp_path,
        '- ["vars/{{ ansible_facts.os_family }}-none.yml", vars/default.yml]\n'
        '- ["vars/{{ ansible_os_family }}.yml", vars/default.yml]\n'
        '- "vars/{{ kind }}.yml"\n',
    )
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "from-Debian web-settings" in _messages(out.stdout)


def test_undefined_and_missing_fail_the_task_with_the_line(tmp_path: Path) -> None:
    _project(tmp_path, '- "vars/{{ nope }}.yml"\n')
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", cwd=tmp_path)
    assert out.returncode != 0
    assert "site.yml:4:7: vars_files: undefined variable 'nope'" in out.stdout
    (tmp_path / "site.yml").write_text(
        (tmp_path / "site.yml").read_text().replace('"vars/{{ nope }}.yml"', "[vars/a.yml, b.yml]")
    )
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", cwd=tmp_path)
    assert out.returncode != 0
    assert "vars_files: no file found among 'vars/a.yml', 'b.yml'" in out.stdout
