"""Template errors as a user sees them: `machineroom apply` against real lab hosts.

A template file that cannot work is found before any host is contacted when that can be
known: a syntax error always, an undefined variable when no task of the playbook could set
it. The message names the template file:line (an included file's own), the task's file:line
and the hosts; the exit code is 4 and no run is recorded. A variable the run could still set
(a registered result, a set_fact) is left to the run, whose failure names the file:line and
the variable instead of quoting the template. Lab hosts h14 and h15; the only file written
on them is /tmp/test_template_errors.conf. The last test runs the check alone on cases it
must not call errors (guards, names set later, conditions, includes, lookups).
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from machineroom.errors import InputError
from machineroom.lab import Lab, LabHost
from tests.clirun import machineroom

DEST = "/tmp/test_template_errors.conf"
BEFORE = "left by the test\n"
FOUND_EARLY = "(found before contacting any host)"


def _hosts(lab: Lab) -> list[LabHost]:
    return list(lab.hosts[13:15])  # h14, h15 (tests/conftest.py)


def _ssh(lab: Lab, host: LabHost, command: str) -> str:
    out = subprocess.run(
        ["ssh", "-F", lab.ssh_config, host.name, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def project(tmp_path: Path, lab: Lab) -> Path:
    """A project whose inventory's group `web` is h14 and h15, each with DEST holding BEFORE."""
    root = tmp_path / "project"
    (root / "templates").mkdir(parents=True)
    lines = ["all:", "  vars:", f"    ssh_key: {lab.key}", "  children:", "    web:"]
    lines.append("      hosts:")
    for host in _hosts(lab):
        lines.append(f"        {host.name}: {{host: {host.address}, user: root}}")
        _ssh(lab, host, f"printf '{BEFORE}' > {DEST}")
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return root


def _playbook(root: Path, tasks: str, gather: bool = False, play_vars: str = "") -> None:
    text = (
        "- hosts: web\n"
        f"  gather_facts: {str(gather).lower()}\n"
        "  vars:\n"
        "    app_name: shop\n"
        "    names: [a, b]\n"
        f"{play_vars}"
        "  tasks:\n"
        f"{tasks}"
    )
    (root / "site.yml").write_text(text)


WRITE = f"""\
    - name: Write app.conf
      template: src=app.conf.j2 dest={DEST}
"""


def _db(root: Path, query: str) -> list[tuple[object, ...]]:
    path = root / ".machineroom" / "state.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


def _nothing_contacted(root: Path, lab: Lab) -> None:
    assert _db(root, "SELECT id FROM runs") == []
    assert _db(root, "SELECT * FROM audit_log") == []
    for host in _hosts(lab):
        assert _ssh(lab, host, f"cat {DEST}") == BEFORE


SYNTAX_ERRORS = [
    pytest.param(
        "# shop\n{% for name in names %}\nserver {{ name }}\n{% if name == 'a' %}\nfirst\n"
        "{% endif %}\n",
        "templates/app.conf.j2:2: template syntax error: the 'for' block opened here is not "
        "closed (no '{% endfor %}' before the end of the file)",
        id="unclosed-block",
    ),
    pytest.param(
        "# shop\nname = {{ app_name | uppper }}\n",
        "templates/app.conf.j2:2: template syntax error: unknown filter 'uppper' "
        "(did you mean 'upper'?)",
        id="unknown-filter",
    ),
    pytest.param(
        "# shop\n\n{% if names is sequense %}many{% endif %}\n",
        "templates/app.conf.j2:3: template syntax error: unknown test 'sequense' "
        "(did you mean 'sequence'?)",
        id="unknown-test",
    ),
    pytest.param(
        "# shop\nport = {{ 80 + }}\n",
        "templates/app.conf.j2:2: template syntax error: unexpected 'end of print statement'",
        id="bad-expression",
    ),
]


@pytest.mark.parametrize(("template", "message"), SYNTAX_ERRORS)
def test_syntax_error_is_found_before_any_host(
    project: Path, lab: Lab, template: str, message: str
) -> None:
    (project / "templates" / "app.conf.j2").write_text(template)
    _playbook(project, WRITE)
    out = machineroom("apply", "site.yml", cwd=project)
    assert out.returncode == 4, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f'error: site.yml:7:7: task "Write app.conf": {message} {FOUND_EARLY}'
    ]
    assert "PLAY" not in out.stdout
    _nothing_contacted(project, lab)


def test_undefined_variable_no_task_sets_is_found_before_any_host(project: Path, lab: Lab) -> None:
    lines = ["# shop", *(f"option_{i} = {i}" for i in range(10))]
    lines += ["port = {{ db_port }}", "name = {{ app_name }}"]  # db_port: line 12
    (project / "templates" / "app.conf.j2").write_text("\n".join(lines) + "\n")
    _playbook(project, WRITE)
    out = machineroom("apply", "site.yml", cwd=project)
    assert out.returncode == 4, out.stdout + out.stderr
    assert out.stderr.strip() == (
        'error: site.yml:7:7: task "Write app.conf" on h14, h15: '
        f"templates/app.conf.j2:12: undefined variable 'db_port' {FOUND_EARLY}"
    )
    assert "option_" not in out.stderr  # the template's text is not quoted
    _nothing_contacted(project, lab)


@pytest.mark.parametrize(
    ("outer", "inner", "message"),
    [
        pytest.param(
            "# {{ ansible_managed }}\n{% include 'parts/inner.j2' %}\n",
            "inner start\nvalue = {{ inner_missing }}\n",
            "templates/parts/inner.j2:2: undefined variable 'inner_missing'",
            id="include-undefined",
        ),
        pytest.param(
            "# shop\n{% include 'parts/inner.j2' %}\n",
            "one\ntwo\n{% if app_name %}\n",
            "templates/parts/inner.j2:3: template syntax error: the 'if' block opened here is "
            "not closed (no '{% endif %}' before the end of the file)",
            id="include-syntax",
        ),
        pytest.param(
            "{% from 'parts/inner.j2' import line %}\n{{ line('x') }}\n",
            "{% macro line(v) %}\nv = {{ v }}\nw = {{ macro_missing }}\n{% endmacro %}\n",
            "templates/parts/inner.j2:3: undefined variable 'macro_missing'",
            id="macro-undefined",
        ),
    ],
)
def test_error_inside_an_included_template_names_the_inner_file(
    project: Path, lab: Lab, outer: str, inner: str, message: str
) -> None:
    (project / "templates" / "parts").mkdir()
    (project / "templates" / "app.conf.j2").write_text(outer)
    (project / "templates" / "parts" / "inner.j2").write_text(inner)
    _playbook(project, WRITE)
    out = machineroom("apply", "site.yml", cwd=project)
    assert out.returncode == 4, out.stdout + out.stderr
    assert 'site.yml:7:7: task "Write app.conf"' in out.stderr
    assert f"{message} {FOUND_EARLY}" in out.stderr
    _nothing_contacted(project, lab)


def test_variable_a_task_could_set_is_left_to_the_run(project: Path, lab: Lab) -> None:
    # `flag` comes from set_fact and `result` from register: the pre-flight cannot know
    # whether line 3 renders, so the run finds flag_value undefined, naming file:line
    template = "out = {{ result.stdout }}\n{% if flag %}\nflag = {{ flag_value }}\n{% endif %}\n"
    (project / "templates" / "app.conf.j2").write_text(template)
    tasks = (
        "    - name: Ask the host\n"
        "      command: echo hello\n"
        "      register: result\n"
        "    - set_fact:\n"
        "        flag: true\n"
        f"{WRITE}"
    )
    _playbook(project, tasks)
    out = machineroom("apply", "site.yml", cwd=project)
    assert out.returncode == 2, out.stdout + out.stderr
    for host in _hosts(lab):
        assert (
            f"failed: [{host.name}]" in out.stdout
            and f'site.yml:12:7: task "Write app.conf" on {host.name}: '
            "templates/app.conf.j2:3: undefined variable 'flag_value'\n"
            in out.stdout
        ), out.stdout
        assert _ssh(lab, host, f"cat {DEST}") == BEFORE
    assert "{{" not in out.stdout  # the template's text is not quoted
    assert _db(project, "SELECT status FROM runs") == [("failed",)]


def test_valid_template_with_facts_defaults_and_guards_runs(project: Path, lab: Lab) -> None:
    template = (
        "# {{ ansible_managed }}\n"
        "host = {{ inventory_hostname }}\n"
        "os = {{ ansible_facts.os_family | default('unknown') }}\n"
        "{% if maybe is defined %}maybe = {{ maybe }}\n{% endif %}"
        "{% if optional_port is not defined %}port = {{ opt_port | default(8080) }}\n{% endif %}"
        "said = {{ result.stdout }}\n"
        "{% include 'parts/inner.j2' %}\n"
    )
    (project / "templates" / "parts").mkdir()
    (project / "templates" / "app.conf.j2").write_text(template)
    (project / "templates" / "parts" / "inner.j2").write_text(
        "name = {{ app_name | upper }}{% if tier | default('') %} ({{ tier }}){% endif %}\n"
    )
    tasks = (
        "    - command: echo hello\n"
        "      register: result\n"
        "    - set_fact:\n"
        "        tier: gold\n"
        "      when: inventory_hostname == 'h15'\n"
        f"{WRITE}"
    )
    _playbook(project, tasks, gather=True)
    out = machineroom("apply", "site.yml", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr
    h14, h15 = _hosts(lab)
    assert _ssh(lab, h14, f"cat {DEST}") == (
        "# Ansible managed\nhost = h14\nos = Debian\nport = 8080\nsaid = hello\nname = SHOP\n"
    )
    assert _ssh(lab, h15, f"cat {DEST}").endswith("said = hello\nname = SHOP (gold)\n")


def test_delimiters_a_task_or_the_file_sets_are_used(project: Path, lab: Lab) -> None:
    # a Go template's own {{ }} stays text: the task's variable_start_string or the file's
    # `#jinja2:` first line says what Jinja reads (both as Ansible's template module)
    (project / "templates" / "app.conf.j2").write_text(
        "{{ .Values.name }} [[ app_name ]]\n[% if names %]x[% endif %]\n"
    )
    (project / "templates" / "head.j2").write_text(
        "#jinja2: variable_start_string:'<<', variable_end_string:'>>'\n{{ .Go }} << app_name >>\n"
    )
    tasks = (
        "    - template:\n        src: app.conf.j2\n        dest: " + DEST + "\n"
        "        variable_start_string: '[['\n        variable_end_string: ']]'\n"
        "        block_start_string: '[%'\n        block_end_string: '%]'\n"
        "    - template: {src: head.j2, dest: " + DEST + ".2}\n"
    )
    _playbook(project, tasks)
    assert machineroom("validate", "site.yml", cwd=project).returncode == 0
    out = machineroom("apply", "site.yml", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr
    for host in _hosts(lab):
        assert _ssh(lab, host, f"cat {DEST}") == "{{ .Values.name }} shop\nx\n"
        assert _ssh(lab, host, f"cat {DEST}.2; rm {DEST}.2") == "{{ .Go }} shop\n"


def test_validate_and_syntax_check_compile_template_files(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "app.conf.j2").write_text("# shop\n\n{{ app_name | uppper }}\n")
    (tmp_path / "site.yml").write_text(f"- hosts: localhost\n  tasks:\n{WRITE}")
    message = (
        'site.yml:3:7: task "Write app.conf": templates/app.conf.j2:3: template syntax error: '
        "unknown filter 'uppper' (did you mean 'upper'?)"
    )
    validate = machineroom("validate", "site.yml", cwd=tmp_path)
    assert validate.returncode == 4, validate.stdout + validate.stderr
    assert validate.stderr.strip() == f"error: {message}"
    syntax = machineroom("apply", "--syntax-check", "site.yml", cwd=tmp_path)
    assert syntax.returncode == 4, syntax.stdout + syntax.stderr
    assert syntax.stderr.strip() == f"error: {message}"
    # a task written to fail (its block rescues it) is the playbook's business, as in apply
    rescued = WRITE.replace("    - name", "        - name").replace("\n      ", "\n          ")
    (tmp_path / "site.yml").write_text(
        f"- hosts: localhost\n  tasks:\n    - block:\n{rescued}      rescue:\n"
        "        - debug: {msg: rescued}\n"
    )
    for command in (["validate"], ["apply", "--syntax-check"]):
        out = machineroom(*command, "site.yml", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr


# --- the check alone: what it must not call an error --------------------------------------

CHECK_CASES = [
    # (tasks before the template task, template, the error or "" for none)
    ("", "{{ nowhere }}\n", "templates/t.j2:1: undefined variable 'nowhere'"),
    ("- set_fact: {flag: x}\n", "{{ nowhere }}\n", ""),  # when: flag is defined
    ("- {command: id, register: r}\n", "{{ nowhere }}\n", ""),  # when: false
    ("", "{{ db.port }}\n", "templates/t.j2:1: undefined variable 'db.port'"),
    ("", "{{ nowhere | default(1) }} {% if nowhere is defined %}{{ nowhere }}{% endif %}\n", ""),
    ("- {command: id, register: r}\n", "{% if r is not defined %}{{ nowhere }}{% endif %}\n", ""),
    ("- set_fact: {flag: x}\n", "{% if flag == 'y' %}{{ nowhere }}{% endif %}\n", ""),
    ("- set_fact: {flag: x}\n", "{{ flag | default(nowhere) }}\n", ""),
    ("", "{% if ansible_facts.os_family == 'RedHat' %}{{ nowhere }}{% endif %}\n", ""),
    ("", "{{ hostvars[inventory_hostname].nowhere }}\n", ""),
    ("- {add_host: {name: '{{ inventory_hostname }}', nowhere: 1}}\n", "{{ nowhere }}\n", ""),
    ("- include_tasks: more.yml\n", "{{ nowhere }}\n", ""),
    ("- include_vars: {file: more.yml}\n", "{{ nowhere }}\n", ""),
    ("- meta: end_host\n  when: inventory_hostname == 'x'\n", "{{ nowhere }}\n", ""),
    ("- {command: id, register: nowhere}\n", "{{ nowhere.stdout }}\n", ""),
    ("", "{{ lookup('pipe', 'touch " + "{marker}" + "') }}{{ nowhere }}\n", ""),
    ("", "{% set x = db.name %}{{ x }} {{ item | default('') }} {{ omit is string }}\n", ""),
    ("", "{% for n in names %}{{ n }}{{ loop.index }}{% endfor %}{{ nowhere2 }}\n", "nowhere2"),
    # a `#jinja2:` first line changes the delimiters: `{{ .Values }}` is text, [% %] Jinja
    ("", "#jinja2: variable_start_string:'[%', variable_end_string:'%]'\n{{ .Values }}\n", ""),
    (
        "",
        "#jinja2: variable_start_string: '[%', variable_end_string: '%]'\n[% nowhere %]\n",
        "t.j2:2:",
    ),
    # a collection's filter or test in a branch never taken: Ansible does not need it either
    ("", "{% if names | length > 5 %}{{ names | ansible.utils.ipaddr }}{% endif %}\n", ""),
    (
        "",
        "{% if names %}{% else %}{% if x is community.general.a_module %}{% endif %}{% endif %}\n",
        "",
    ),
    ("", "{{ (names | ipaddr) if names | length > 5 else 'none' }}\n", ""),
    ("", "{% if db.ip is defined and db.ip | ipaddr %}x{% endif %}\n", ""),
    ("", "{% if names | nope_filter %}x{% endif %}\n", "unknown filter 'nope_filter'"),
    # ansible-core's filters by their full names; the variables the template module adds
    ("", "{{ db | ansible.builtin.to_nice_json }}{{ 'a' is ansible.builtin.match('a') }}\n", ""),
    ("", "{{ template_destpath }} {{ template_path }} {{ template_fullpath }}\n", ""),
    # run_once: only the first host renders it (w1 has `first_only`, w2 not)
    ("- debug: {msg: hi}\n", "{{ first_only }}\n", ""),
    ("- debug: {msg: ignored}\n", "{{ nowhere }}\n", ""),  # ignore_errors: "{{ x }}"
    # an include Jinja looks for only if its branch or loop runs: the file need not be there
    ("", "{% if names | length > 5 %}{% include 'extra.j2' %}{% endif %}\n", ""),
    ("", "{% for n in [] %}{% include 'extra.j2' %}{% endfor %}\n", ""),
    ("", "{% include 'extra.j2' %}\n", "template 'extra.j2' not found"),
    # Ansible's globals: now() and undef()
    ("", "{{ now(utc=true, fmt='%Y') }} {{ now().year }} {{ undef() | default(1) }}\n", ""),
]
# the template task's `when`, per case when not "true"
WHEN = {
    ("- set_fact: {flag: x}\n", "{{ nowhere }}\n"): "flag is defined",  # the run decides
    ("- {command: id, register: r}\n", "{{ nowhere }}\n"): "nowhere is defined",  # false
}
RUN_ONCE = ("- debug: {msg: hi}\n", "{{ first_only }}\n")
IGNORED = ("- debug: {msg: ignored}\n", "{{ nowhere }}\n")


def test_check_leaves_a_handler_to_the_change_that_notifies_it(tmp_path: Path) -> None:
    # nothing may ever notify it: Ansible runs this playbook fine; a syntax error is still said
    from machineroom.executor.template_check import check_templates
    from machineroom.inventory import load_inventory
    from machineroom.playbook.load import load_playbook

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("{{ nowhere }}\n")
    (tmp_path / "templates" / "bad.j2").write_text("{% if x %}\n")
    (tmp_path / "inventory.yml").write_text("web:\n  hosts:\n    w1: {host: 192.0.2.1}\n")
    site = tmp_path / "site.yml"
    site.write_text(
        "- hosts: web\n  handlers:\n    - name: write\n      template: {src: t.j2, dest: /t}\n"
        "  tasks:\n    - {debug: {msg: hi}, notify: write}\n"
    )
    inventory = load_inventory(str(tmp_path / "inventory.yml"))
    hosts = [list(inventory.hosts.values())]
    check_templates(
        load_playbook(str(site)), inventory, hosts, playbook_dir=str(tmp_path), extra_vars={}
    )
    site.write_text(site.read_text().replace("t.j2", "bad.j2"))
    with pytest.raises(InputError, match=r"bad\.j2:1: template syntax error"):
        check_templates(
            load_playbook(str(site)), inventory, hosts, playbook_dir=str(tmp_path), extra_vars={}
        )


@pytest.mark.parametrize(("before", "template", "error"), CHECK_CASES)
def test_check_reports_only_what_cannot_come_later(
    tmp_path: Path, before: str, template: str, error: str
) -> None:
    from machineroom.executor.template_check import check_templates
    from machineroom.inventory import load_inventory
    from machineroom.playbook.load import load_playbook

    marker = tmp_path / "touched"
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text(template.replace("{marker}", str(marker)))
    (tmp_path / "more.yml").write_text("- debug: {msg: hi}\n")
    (tmp_path / "inventory.yml").write_text(
        "web:\n  hosts:\n    w1: {host: 192.0.2.1, first_only: 1}\n    w2: {host: 192.0.2.2}\n"
    )
    when = WHEN.get((before, template), "true")
    once = ", run_once: true" if (before, template) == RUN_ONCE else ""
    once += ", ignore_errors: '{{ names | length > 1 }}'" if (before, template) == IGNORED else ""
    task = f"- {{template: {{src: t.j2, dest: /tmp/t}}, when: {when}{once}}}\n"
    tasks = "".join("    " + line + "\n" for line in (before + task).splitlines())
    (tmp_path / "site.yml").write_text(
        "- hosts: web\n  vars: {db: {name: shop}, names: [a, b]}\n  tasks:\n" + tasks
    )
    playbook = load_playbook(str(tmp_path / "site.yml"))
    inventory = load_inventory(str(tmp_path / "inventory.yml"))
    hosts = [list(inventory.hosts.values())]
    if not error:
        check_templates(playbook, inventory, hosts, playbook_dir=str(tmp_path), extra_vars={})
        assert not marker.exists()  # a lookup is never run by the check
        return
    with pytest.raises(InputError) as raised:
        check_templates(playbook, inventory, hosts, playbook_dir=str(tmp_path), extra_vars={})
    assert error in str(raised.value)
    assert "on w1" in str(raised.value) or "unknown filter" in error or "not found" in error


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        (
            "#jinja2: variable_start_string:'[%', variable_end_string:'%]'\n{{ x }}=[% db %]\n",
            "{{ x }}=shop\n",
        ),
        ("#jinja2: trim_blocks: False\n{% if db %}\nx\n{% endif %}\n", "\nx\n"),
        ("#jinja2: lstrip_blocks: True\n\n  {% if db %}\nx\n  {% endif %}\n", "\nx\n"),
        ('#jinja2: line_statement_prefix:":"\n: if db\nfoo\n: endif\n', "foo\n"),
    ],
)
def test_jinja2_header_sets_how_the_file_is_read(
    tmp_path: Path, template: str, rendered: str
) -> None:
    # as Ansible's template module: the first line is dropped, its settings apply to the file
    from machineroom.templating import Templar, TemplateError, Where

    templar = Templar()
    assert templar.render_file(template, {"db": "shop"}, Where(), path="t.j2") == rendered
    templar.compile_file(template, str(tmp_path / "t.j2"), Where())
    with pytest.raises(TemplateError) as raised:  # lines are the file's own
        templar.render_file(
            template + "[% nowhere %]{{ nowhere }}\n", {"db": "x"}, Where(), path="t.j2"
        )
    assert "t.j2:" in str(raised.value)
