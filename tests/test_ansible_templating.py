"""Templating as ansible-core's: the same YAML text gives the same value, the same .j2 file the
same bytes.

Every expected value below was produced by ansible-core 2.19 (`ansible-playbook` with
connection local, debug and template tasks); the comments name the rule. The last test applies
a playbook to a lab host and reads the written files back byte for byte.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from machineroom.filters import comment
from machineroom.lab import Lab
from machineroom.templating import (
    ANSIBLE_MANAGED,
    BASE_DIR_VAR,
    Templar,
    TemplateError,
    Where,
    template_variables,
)
from machineroom.yamlio import parse_yaml

WHERE = Where(task="t", host="h")
VARIABLES: dict[str, Any] = {"x": "ab", "e": "", "n": 5}

# (the YAML text of a playbook value, the value Ansible gives). Inside `{{ }}` a string
# literal keeps its backslashes (ansible-core's lexer doubles them before Jinja unescapes), so
# only YAML's own escaping applies: `"\1"` in a single-quoted YAML string is the group.
VALUES = [
    # the role bug: a group reference from a YAML single-quoted string
    (r"""'{{ x | regex_replace("^(a)b$", "\1") }}'""", "a"),
    (r"""'{{ x | regex_replace(''^(a)b$'', ''\1'') }}'""", "a"),
    (r"""'{{ x | regex_replace("^(a)b$", "\\1") }}'""", r"\1"),
    # double-quoted YAML: YAML turns \\1 into \1, which Jinja then leaves alone
    (r'''"{{ x | regex_replace('^(a)b$', '\\1') }}"''', "a"),
    (r'''"{{ x | regex_replace('^(a)b$', '\\\\1') }}"''', r"\1"),
    # plain scalars
    (r"""v={{ x | regex_replace('^(a)b$', '\1') }}""", "v=a"),
    (r"""v={{ x | regex_replace("^(a)b$", "\1") }}""", "v=a"),
    (r"""v={{ x | regex_replace('^(a)b$', '\\1') }}""", r"v=\1"),
    # regex classes and named groups need no doubling
    (r"""'{{ "a1" | regex_replace("\d", "X") }}'""", "aX"),
    (r"""'{{ "a1" | regex_replace("\\d", "X") }}'""", "a1"),
    (r"""'{{ x | regex_replace("^(?P<f>a)b$", "\g<f>") }}'""", "a"),
    (r"""'{{ "k=v" | regex_search("k=(\w)", "\1") }}'""", ["v"]),
    # no escape sequences at all inside {{ }} string literals
    (r"""'{{ "a\nb" }}'""", r"a\nb"),
    (r"""'{{ "a\tb" }}'""", r"a\tb"),
    (r"""'{{ "\x41" }}'""", r"\x41"),
    (r"""'{{ "\u00e9" }}'""", r"\u00e9"),
    (r"""'{{ "it\"s" }}'""", r"it\"s"),
    # outside {{ }} the text is left as YAML gave it
    (r"""'pre\1 {{ x }}'""", r"pre\1 ab"),
    # trailing newlines: Jinja drops the last one, Ansible puts back as many as the text had
    (r'''"{{ n }}\n"''', 5),
    (r'''"{{ 'x' }}\n"''', "x\n"),
    (r'''"a{{ e }}\n"''', "a\n"),
    (r'''"a\n{{ e }}\n"''', "a\n"),
    (r'''"{{ e }}\n\n"''', "\n\n"),
    # trim_blocks is on for values too
    (r'''"{% if true %}\nyes{% endif %}"''', "yes"),
]


@pytest.mark.parametrize(("yaml_text", "expected"), VALUES, ids=[v[0] for v in VALUES])
def test_playbook_values_render_as_ansible_renders_them(yaml_text: str, expected: Any) -> None:
    value = parse_yaml(f"v: {yaml_text}\n", "site.yml")["v"]
    assert Templar().render(value, VARIABLES, WHERE) == expected


def test_conditions_keep_jinja_escapes_as_ansible_does() -> None:
    # ansible-core evaluates conditionals without the backslash escaping
    templar = Templar()
    assert templar.evaluate(r'"a\tb" == x', {"x": "a\tb"}, WHERE) is True
    assert templar.evaluate(r'x is match("a\\d")', {"x": "a1"}, WHERE) is True


def test_statements_keep_jinja_escapes() -> None:
    # only `{{ }}` literals are left raw; `{% set %}` unescapes as Jinja does
    assert Templar().render(r'{% set s = "a\tb" %}{{ s }}', {}, WHERE) == "a\tb"


# (template file bytes, the bytes ansible's template module wrote). Files keep Jinja's own
# escapes (the template module renders without the backslash escaping) and trim_blocks.
FILES = [
    ("a\n", "a\n"),
    ("a", "a"),
    ("a\n{% if false %}\nx\n{% endif %}\n", "a\n"),
    ("a\n{{ e }}\n", "a\n"),  # the last line renders empty: no extra newline
    ("a\n{{ e }}", "a\n"),
    ("a\n{{ e }}\n\n", "a\n\n"),
    ("a\n\n\n", "a\n\n\n"),
    (
        '  {% if true %}\nb\n  {% endif %}\nc {{ "\\1" }} {{ "\\\\1" }} {{ "a\\tb" }}\n',
        "  b\n  c \x01 \\1 a\tb\n",
    ),
    ('{{ "x\\ny" | comment("cblock") }}\n', "/*\n *\n * x\n * y\n *\n */\n"),
]


@pytest.mark.parametrize(("text", "expected"), FILES, ids=[f[0] for f in FILES])
def test_template_files_render_to_ansibles_bytes(text: str, expected: str) -> None:
    assert Templar().render_file(text, VARIABLES, WHERE) == expected


LSTRIP = '  {% if true %}\nb\n  {% endif %}\nc {{ "\\1" }} {{ "a\\tb" }}\n'
NEWLINES = "a\n{{ e }}\nb\n{% if true %}\nc\n{% endif %}\n\n"

# (template, the template module's options, the bytes ansible-core wrote)
FILE_OPTIONS = [
    (LSTRIP, {"lstrip_blocks": True}, "b\nc \x01 a\tb\n"),
    (LSTRIP, {"trim_blocks": False}, "  \nb\n  \nc \x01 a\tb\n"),
    (NEWLINES, {"newline_sequence": "\r\n"}, "a\r\n\r\nb\r\nc\r\n\r\n"),
    (NEWLINES, {"newline_sequence": "\r"}, "a\r\rb\rc\r\r\r"),
]


@pytest.mark.parametrize(("text", "options", "expected"), FILE_OPTIONS)
def test_template_module_options_as_ansibles(
    text: str, options: dict[str, Any], expected: str
) -> None:
    assert Templar().render_file(text, VARIABLES, WHERE, **options) == expected


# --- ansible_managed and comment -------------------------------------------------------------

COMMENTS = [
    (("Ansible managed",), {}, "#\n# Ansible managed\n#"),
    (("x",), {"style": "c"}, "//\n// x\n//"),
    (("x\ny",), {"style": "cblock"}, "/*\n *\n * x\n * y\n *\n */"),
    (("x",), {"style": "erlang"}, "%\n% x\n%"),
    (("x",), {"style": "xml"}, "<!--\n -\n - x\n -\n-->"),
    (("x",), {"decoration": "; "}, ";\n; x\n;"),
    (
        ("x", "plain"),
        {"prefix": "#!", "postfix": "#", "prefix_count": 2, "postfix_count": 2},
        "#!\n#!\n# x\n#\n#",
    ),
    (("",), {}, "#\n# \n#"),
    (("a\n\nb", "c"), {"decoration": "** "}, "**\n** a\n**\n** b\n**"),
    (("x",), {"prefix": "", "postfix": ""}, "# x\n"),
]


@pytest.mark.parametrize(("args", "kwargs", "expected"), COMMENTS)
def test_comment_filter_as_ansibles(
    args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    assert comment(*args, **kwargs) == expected


def test_comment_filter_refuses_an_unknown_style() -> None:
    with pytest.raises(
        TemplateError, match=r"unknown style 'shell'.*plain, erlang, c, cblock, xml"
    ):
        Templar().render("{{ 'x' | comment('shell') }}", {}, WHERE)


def test_ansible_managed_is_defined_in_templates_and_a_variable_overrides_it(
    tmp_path: Path,
) -> None:
    src = tmp_path / "motd.j2"
    src.write_text("{{ ansible_managed | comment }}\n{{ template_path }} {{ template_uid }}\n")
    templar = Templar()
    text = src.read_text()
    variables = template_variables({}, "motd.j2", src)
    assert variables["ansible_managed"] == ANSIBLE_MANAGED == "Ansible managed"
    assert isinstance(variables["template_mtime"], datetime.datetime)
    assert variables["template_fullpath"] == str(src.resolve())
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    assert templar.render_file(text, variables, WHERE) == (
        f"#\n# Ansible managed\n#\nmotd.j2 {user}\n"
    )
    mine = template_variables({"ansible_managed": "Managed by {{ team }}", "team": "ops"}, "m", src)
    assert templar.render_file(text, mine, WHERE).startswith("#\n# Managed by ops\n#\n")


# --- end to end ------------------------------------------------------------------------------


def test_apply_writes_the_bytes_ansible_writes(tmp_path: Path, lab: Lab) -> None:
    host = next(h for h in lab.hosts if h.name == "h14")
    (tmp_path / "inventory.yml").write_text(
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n  hosts:\n"
        f"    h14: {{host: {host.address}, user: root}}\n"
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "app.conf.j2").write_text(
        "{{ ansible_managed | comment }}\nname = {{ name }}\n"
        "{% if extra %}\nextra = 1\n{% endif %}\n{{ tail }}\n"
    )
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            r"""
            - hosts: h14
              gather_facts: false
              vars: {version: "nginx-1.24.0", name: app, extra: false, tail: ""}
              tasks:
                - file: {path: /srv/ansible-templating, state: directory}
                - template: {src: app.conf.j2, dest: /srv/ansible-templating/app.conf}
                - template:
                    src: app.conf.j2
                    dest: /srv/ansible-templating/crlf.conf
                    newline_sequence: '\r\n'
                    lstrip_blocks: true
                - copy:
                    content: '{{ version | regex_replace("^nginx-(\d+)\.(\d+).*$", "\1.\2") }}'
                    dest: /srv/ansible-templating/version
            """
        )
    )
    run = [sys.executable, "-m", "machineroom"]
    folder = "/srv/ansible-templating"
    out = subprocess.run(
        [*run, "apply", "site.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stdout + out.stderr
    again = subprocess.run(
        [*run, "apply", "site.yml", "--json"], cwd=tmp_path, capture_output=True, timeout=180
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["stats"]["h14"]["changed"] == 0
    read = subprocess.run(
        [
            *run,
            "run",
            "h14",
            "--json",
            "--",
            f"od -An -tx1 {folder}/crlf.conf {folder}/app.conf {folder}/version",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert read.returncode == 0, read.stdout + read.stderr
    dump = json.loads(read.stdout)["hosts"]["h14"]["stdout"]
    written = bytes.fromhex("".join(dump.split()))
    # the template's last line renders empty: no extra newline; the group, not \x01
    # newline_sequence changes the template's own line ends, not a filter's output (Ansible's)
    crlf = b"#\n# Ansible managed\n#\r\nname = app\r\n"
    assert written == crlf + b"#\n# Ansible managed\n#\nname = app\n1.24", read.stdout


# --- more of ansible.builtin's filters and tests ---------------------------------------------

FILTER_VARIABLES: dict[str, Any] = {
    "users": [
        {"name": "alice", "groups": ["wheel", "dev"]},
        {"name": "bob", "groups": ["dev"]},
        {"name": "carol"},
    ],
    "hv": {"a": {"ip": "1.1.1.1"}, "b": {"ip": "2.2.2.2"}},
}

# (expression, what ansible-core 2.19 gave for it)
FILTER_CASES = [
    (
        "users | subelements('groups', skip_missing=True) | map('last') | list",
        ["wheel", "dev", "dev"],
    ),
    (
        "users | subelements('groups', skip_missing=True) | map('first') | map(attribute='name')"
        " | list",
        ["alice", "alice", "bob"],
    ),
    ("[1, 2] | product(['a', 'b']) | list", [[1, "a"], [1, "b"], [2, "a"], [2, "b"]]),
    ("[1, 2, 3] | permutations(2) | list", [[1, 2], [1, 3], [2, 1], [2, 3], [3, 1], [3, 2]]),
    ("[1, 2, 3] | combinations(2) | list", [[1, 2], [1, 3], [2, 3]]),
    ("['a', 'b'] | map('extract', hv, 'ip') | list", ["1.1.1.1", "2.2.2.2"]),
    ("60 | random(seed='web1')", 52),
    ("60 | random(seed='web2')", 22),
    ("['x', 'y', 'z'] | random(seed='web1')", "y"),
    ("[1, 2, 3, 4, 5] | shuffle(seed='web1')", [4, 1, 2, 5, 3]),
    ("100 | log(10)", 2.0),
    ("2 | pow(10)", 1024.0),
    ("27 | root(3)", 3.0),
    ("'web1' | to_uuid", "4ebc6093-8026-5090-bb95-a592e5a6aec3"),
    (
        "'secret' | password_hash('sha512', 'mysalt')",
        "$6$rounds=656000$mysalt$cDA0t8lm/qt.LT6DzpoHxJ.NwTpx.WTkOPwhseSva8pRixDSH2./ffedCjAMbTX1Uo1"
        "QNT7jJPJ6FIzU2i59K/",
    ),
    (
        "'secret' | password_hash('sha256', 'mysalt', rounds=5000)",
        "$5$mysalt$I2SNajjJ3Gc5gIR/tkrLOGngF8wqv59buJCqxh.o9s8",
    ),
    ("'%Y-%m-%d' | strftime(0, utc=True)", "1970-01-01"),
    ("(('2024-03-01 00:00:00' | to_datetime) - ('2024-02-01 00:00:00' | to_datetime)).days", 29),
    ("1048576 | human_readable", "1.00 MB"),
    ("1048576 | human_readable(isbits=True)", "1.00 Mb"),
    ("1500 | human_readable(unit='K')", "1.46 KB"),
    ("10 | human_readable", "10.00 Bytes"),
    ("'10M' | human_to_bytes", 10485760),
    ("'1.5 KB' | human_to_bytes", 1536),
    ("'2 kilobyte' | human_to_bytes", 2048),
    ("'1Mb' | human_to_bytes(isbits=True)", 1048576),
    ("10 | human_to_bytes('G')", 10737418240),
    ("'100' | human_to_bytes", 100),
    (
        "'https://u:p@example.com:8443/x?y=1#f' | urlsplit",
        {
            "fragment": "f",
            "hostname": "example.com",
            "netloc": "u:p@example.com:8443",
            "password": "p",
            "path": "/x",
            "port": 8443,
            "query": "y=1",
            "scheme": "https",
            "username": "u",
        },
    ),
    ("'https://example.com:8443/x' | urlsplit('port')", 8443),
    ("['/etc', 'app', 'a.conf'] | path_join", "/etc/app/a.conf"),
    ("'a//b/../c' | normpath", "a/c"),
    ("[1, 2] is contains(2)", True),
    ("[1] is subset([1, 2])", True),
    ("[1, 2] is superset([2])", True),
    ("[0, 1] is any", True),
    ("[0, 1] is all", False),
    ("'/etc/passwd' is file", True),
    ("'/etc' is directory", True),
    ("'/nonexistent' is exists", False),
    ("'a/b' is abs", False),
    ("1.0 is nan", False),
    (
        "users | selectattr('groups', 'defined') | selectattr('groups', 'contains', 'wheel')"
        " | map(attribute='name') | list",
        ["alice"],
    ),
]


@pytest.mark.parametrize(("expression", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_builtin_filters_and_tests_as_ansibles(expression: str, expected: Any) -> None:
    rendered = Templar().render("{{ " + expression + " }}", FILTER_VARIABLES, WHERE)
    assert rendered == expected


def test_sha_crypt_matches_the_specifications_vectors() -> None:
    from machineroom.filters_more import sha_crypt

    assert sha_crypt("Hello world!", "saltstring", None, 512) == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEd"
        "FCoEOfaS35inz1"
    )
    assert sha_crypt("Hello world!", "saltstringsaltstring", 10000, 512) == (
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8"
        "vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
    )
    assert sha_crypt("Hello world!", "saltstring", None, 256) == (
        "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
    )


def test_human_to_bytes_names_what_it_expected() -> None:
    with pytest.raises(TemplateError, match="'1MB': expected Mb or M"):
        Templar().render("{{ '1MB' | human_to_bytes(isbits=True) }}", {}, WHERE)
    with pytest.raises(TemplateError, match="cannot read 'lots' as a size"):
        Templar().render("{{ 'lots' | human_to_bytes }}", {}, WHERE)


def test_password_hash_refuses_what_it_cannot_do() -> None:
    with pytest.raises(TemplateError, match="unsupported hash type 'md4'"):
        Templar().render("{{ 'x' | password_hash('md4') }}", {}, WHERE)
    with pytest.raises(TemplateError, match=r"salt holds only \[\./0-9A-Za-z\]"):
        Templar().render("{{ 'x' | password_hash('sha512', 'bad salt') }}", {}, WHERE)


def test_lookup_template_renders_as_ansibles(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "lk.j2").write_text(
        'x={{ x }}\n{% if true %}\ny{{ "\\t" }}z\n{% endif %}\n{{ e }}\n'
    )
    variables = {"x": 1, "e": "", BASE_DIR_VAR: str(tmp_path)}
    templar = Templar()
    # what ansible-core 2.19 gave for each
    assert templar.render("{{ lookup('template', 'lk.j2') }}", variables, WHERE) == "x=1\ny\tz\n"
    assert templar.render(
        "{{ lookup('template', 'lk.j2', template_vars={'x': 2}) }}", variables, WHERE
    ) == ("x=2\ny\tz\n")
    assert templar.render(
        "{{ lookup('template', 'lk.j2', trim_blocks=False) }}", variables, WHERE
    ) == ("x=1\n\ny\tz\n\n")
    with pytest.raises(TemplateError, match=r"lookup\('template'\): nope.j2 not found"):
        templar.render("{{ lookup('template', 'nope.j2') }}", variables, WHERE)
