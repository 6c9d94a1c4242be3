"""Templating: native types, lazy variables, errors that name the variable, unsafe host output,
the filters, tests and lookups."""

from __future__ import annotations

import subprocess
import sys
from collections import ChainMap
from pathlib import Path
from typing import Any

import pytest

from machineroom.errors import InputError, Location
from machineroom.templating import (
    OMIT,
    Templar,
    TemplateError,
    Unsafe,
    Where,
    is_template,
    mark_unsafe,
)

WHERE = Where(Location("playbooks/site.yml", 14, 7), "Install docker", "web1")


@pytest.fixture
def templar() -> Templar:
    return Templar()


def render(value: Any, **variables: Any) -> Any:
    return Templar().render(value, variables, WHERE)


# --- types and the fast path -----------------------------------------------------------------


def test_plain_strings_and_non_strings_come_back_as_they_are(templar: Templar) -> None:
    text = "no templates here {not one}"
    assert templar.render(text, {}, WHERE) is text
    assert templar.render(42, {}, WHERE) == 42
    assert templar.render(None, {}, WHERE) is None


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ items }}", [1, 2]),
        ("{{ conf }}", {"a": 1}),
        ("{{ port }}", 8080),
        ("{{ flag }}", True),
        ("{{ port + 1 }}", 8081),
        ("{{- port -}}", 8080),
        ("{{ '123' }}", "123"),  # a string stays a string (no literal_eval as NativeEnvironment)
        ("{{ port }} ", "8080 "),
        ("x{{ port }}", "x8080"),
        ("{{ port }}{{ port }}", "80808080"),
        ("{% if flag %}{{ port }}{% endif %}", "8080"),
    ],
)
def test_one_expression_keeps_its_type(template: str, expected: Any) -> None:
    result = render(template, items=[1, 2], conf={"a": 1}, port=8080, flag=True)
    assert result == expected
    assert type(result) is type(expected)


def test_render_is_recursive_over_dicts_lists_and_tuples() -> None:
    value = {"a": ["{{ x }}", {"b": "v={{ x }}"}], "c": ("{{ x }}",), "d": 3}
    assert render(value, x=1) == {"a": [1, {"b": "v=1"}], "c": (1,), "d": 3}


def test_variables_may_refer_to_variables() -> None:
    variables = {
        "host": "db",
        "port": 5432,
        "url": "pg://{{ host }}:{{ port }}",
        "urls": ["{{ url }}"],
    }
    assert render("{{ url }}", **variables) == "pg://db:5432"
    assert render("{{ urls }}", **variables) == ["pg://db:5432"]
    assert render("{{ urls[0] | upper }}", **variables) == "PG://DB:5432"


def test_a_chainmap_view_is_used_without_copying() -> None:
    low = {"a": 1, "b": "{{ a }}"}
    high = {"a": 2}
    assert Templar().render("{{ b }}", ChainMap(high, low), WHERE) == 2


def test_keep_trailing_newline_and_no_autoescape() -> None:
    assert render("{{ x }}\n", x="<b>&") == "<b>&\n"


def test_is_template() -> None:
    assert is_template("{{ x }}")
    assert is_template("{% if x %}{% endif %}")
    assert is_template("{# note #}")
    assert not is_template("a { b }")
    assert not is_template(Unsafe("{{ x }}"))
    assert not is_template(3)


def test_cache_returns_same_result_for_different_variables(templar: Templar) -> None:
    assert templar.render("{{ x }}-", {"x": 1}, WHERE) == "1-"
    assert templar.render("{{ x }}-", {"x": 2}, WHERE) == "2-"


# --- evaluate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (True, True),
        (False, False),
        ("x == 1", True),
        ("x is defined", True),
        ("nope is defined", False),
        ("nope is undefined", True),
        ("nope.deeper is defined", False),
        ("{{ x == 1 }}", True),
        ("x > 1\n or x == 1", True),
        ("items | length", 2),
    ],
)
def test_evaluate(expression: Any, expected: Any) -> None:
    assert Templar().evaluate(expression, {"x": 1, "items": [1, 2]}, WHERE) == expected


def test_evaluate_rejects_delimiters_mixed_with_text() -> None:
    with pytest.raises(TemplateError, match="bare expression"):
        Templar().evaluate("{{ x }} == 1", {"x": 1}, WHERE)


def test_evaluate_undefined_is_an_error() -> None:
    with pytest.raises(TemplateError) as info:
        Templar().evaluate("docker_version", {}, WHERE)
    assert info.value.variable == "docker_version"


def test_evaluate_syntax_error() -> None:
    with pytest.raises(TemplateError, match="template syntax error"):
        Templar().evaluate("x ==", {"x": 1}, WHERE)
    with pytest.raises(TemplateError, match="after the expression"):
        Templar().evaluate("x y", {"x": 1}, WHERE)


# --- errors ----------------------------------------------------------------------------------


def test_undefined_variable_message_is_compiler_style() -> None:
    with pytest.raises(TemplateError) as info:
        render("version {{ docker_version }}")
    error = info.value
    assert isinstance(error, InputError)
    assert str(error).startswith(
        'playbooks/site.yml:14:7: task "Install docker" on web1: '
        "undefined variable 'docker_version'"
    )
    assert error.variable == "docker_version"
    assert error.template == "version {{ docker_version }}"
    assert error.location == Location("playbooks/site.yml", 14, 7)


def test_missing_attribute_names_the_path() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ docker.version }}", docker={"edition": "ce"})
    assert info.value.variable == "docker.version"
    assert "undefined variable 'docker.version' ('docker' has no key 'version')" in str(info.value)


def test_missing_item_by_subscript() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ docker['version'] }}", docker={})
    assert info.value.variable == "docker.version"


def test_undefined_inside_a_native_list_is_caught() -> None:
    with pytest.raises(TemplateError, match="'nope'"):
        render("{{ [1, nope] }}")


def test_undefined_inside_a_referenced_variable_says_which() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ url }}", url="http://{{ hostname }}/")
    assert info.value.variable == "hostname"
    assert "(in the value of 'url')" in str(info.value)


def test_variable_loop_is_an_error() -> None:
    with pytest.raises(TemplateError, match="variable loop: a -> b -> a"):
        render("{{ a }}", a="{{ b }}", b="{{ a }}")


def test_syntax_error_shows_the_template() -> None:
    with pytest.raises(TemplateError) as info:
        render("value: {{ x }")
    assert "template syntax error" in str(info.value)
    assert '"value: {{ x }"' in str(info.value)


def test_python_errors_become_template_errors() -> None:
    with pytest.raises(TemplateError, match="TypeError"):
        render("{{ 'a' + 1 }}")


def test_where_without_task_or_host() -> None:
    with pytest.raises(TemplateError) as info:
        Templar().render("{{ x }}", {}, Where(None, None, None))
    assert str(info.value).startswith("undefined variable 'x'")


# --- unsafe host output ----------------------------------------------------------------------


def test_unsafe_string_is_never_rendered(templar: Templar) -> None:
    evil = Unsafe("{{ lookup('env', 'HOME') }}")
    assert templar.render(evil, {}, WHERE) is evil
    assert templar.render({"k": [evil]}, {}, WHERE) == {"k": [evil]}


def test_unsafe_value_inserted_into_a_template_is_not_rerendered(
    templar: Templar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_THING", "leaked")
    result = mark_unsafe({"stdout": "{{ lookup('env', 'SECRET_THING') }}", "rc": 0})
    variables = {"result": result}
    direct = templar.render("{{ result.stdout }}", variables, WHERE)
    assert direct == "{{ lookup('env', 'SECRET_THING') }}"
    assert isinstance(direct, Unsafe)
    mixed = templar.render("out: {{ result.stdout }}", variables, WHERE)
    assert mixed == "out: {{ lookup('env', 'SECRET_THING') }}"
    assert isinstance(mixed, Unsafe)  # tainted, so rendering the result again changes nothing
    assert templar.render(mixed, variables, WHERE) == mixed
    assert templar.evaluate("result.rc == 0", variables, WHERE) is True


def test_unsafe_variable_is_not_expanded_lazily(templar: Templar) -> None:
    variables = {"fact": Unsafe("{{ 7 * 7 }}"), "wrapped": "x{{ fact }}"}
    assert templar.render("{{ fact }}", variables, WHERE) == "{{ 7 * 7 }}"
    assert templar.render("{{ wrapped }}", variables, WHERE) == "x{{ 7 * 7 }}"


def test_mark_unsafe_is_recursive_and_idempotent() -> None:
    marked = mark_unsafe({"a": ["x", {"b": "y"}], "n": 1, "t": ("z",)})
    assert isinstance(marked["a"][0], Unsafe)
    assert isinstance(marked["a"][1]["b"], Unsafe)
    assert isinstance(marked["t"][0], Unsafe)
    assert marked["n"] == 1
    assert mark_unsafe(marked) is marked


def test_unsafe_output_in_a_template_file_taints_the_result(templar: Templar) -> None:
    out = templar.render_file("a={{ x }}\n", {"x": Unsafe("{{ y }}")}, WHERE)
    assert out == "a={{ y }}\n"
    assert isinstance(out, Unsafe)


# --- render_file -----------------------------------------------------------------------------


def test_render_file_trims_blocks_as_ansible(templar: Templar) -> None:
    text = "[app]\n{% for p in ports %}\nport={{ p }}\n{% endfor %}\nend\n"
    assert templar.render_file(text, {"ports": [1, 2]}, WHERE) == "[app]\nport=1\nport=2\nend\n"


def test_render_file_error_names_the_file_line(templar: Templar) -> None:
    text = "line one\n{% if true %}\nvalue={{ missing_var }}\n{% endif %}\n"
    with pytest.raises(TemplateError) as info:
        templar.render_file(text, {}, WHERE, path="roles/app/templates/app.conf.j2")
    message = str(info.value)
    assert "roles/app/templates/app.conf.j2:3: undefined variable 'missing_var'" in message
    assert message.startswith('playbooks/site.yml:14:7: task "Install docker" on web1: ')


def test_render_file_syntax_error_line(templar: Templar) -> None:
    with pytest.raises(TemplateError, match=r"app.j2:2: template syntax error"):
        templar.render_file("ok\n{% if %}\n", {}, WHERE, path="app.j2")


def test_render_file_always_text(templar: Templar) -> None:
    assert templar.render_file("{{ n }}", {"n": 5}, WHERE) == "5"
    assert templar.render_file("plain", {}, WHERE) == "plain"


# --- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ nope | default('d') }}", "d"),
        ("{{ nope | d('d') }}", "d"),
        ("{{ '' | default('d', true) }}", "d"),
        ("{{ '' | default('d') }}", ""),
        ("{{ nope.x | default(1) }}", 1),
        ("{{ 'yes' | bool }}", True),
        ("{{ 'off' | bool }}", False),
        ("{{ '42' | int }}", 42),
        ("{{ '1.5' | float }}", 1.5),
        ("{{ 5 | string }}", "5"),
        ("{{ 'Ab' | lower }}{{ 'c' | upper }}", "abC"),
        ("{{ {'b': 1, 'a': [1]} | to_json }}", '{"b": 1, "a": [1]}'),
        ("{{ {'b': 1} | to_nice_json }}", '{\n    "b": 1\n}'),
        ("{{ '{\"a\": [1]}' | from_json }}", {"a": [1]}),
        ("{{ {'a': 1} | to_yaml }}", "{a: 1}\n"),
        ("{{ {'a': {'b': 1}} | to_nice_yaml }}", "a:\n    b: 1\n"),
        ("{{ 'a: [1, 2]' | from_yaml }}", {"a": [1, 2]}),
        ("{{ 'hi' | b64encode }}", "aGk="),
        ("{{ 'aGk=' | b64decode }}", "hi"),
        ("{{ '/etc/app/x.conf' | basename }}", "x.conf"),
        ("{{ '/etc/app/x.conf' | dirname }}", "/etc/app"),
        ("{{ 'x.tar.gz' | splitext }}", ["x.tar", ".gz"]),
        ("{{ 'abc123' | regex_replace('[0-9]+', '-') }}", "abc-"),
        # inside {{ }} a string literal keeps its backslashes, as in Ansible (one is enough)
        ("{{ 'v=12' | regex_replace('v=(\\d+)', '\\1') }}", "12"),
        ("{{ 'Docker version 24.0.7, build' | regex_search('[0-9.]+') }}", "24.0.7"),
        ("{{ 'k=v' | regex_search('(\\w)=(\\w)', '\\2') }}", ["v"]),
        ("{{ 'nothing' | regex_search('[0-9]') }}", None),
        ("{{ 'a1b22' | regex_findall('[0-9]+') }}", ["1", "22"]),
        ('{{ "it\'s; $(x)" | quote }}', "'it'\"'\"'s; $(x)'"),
        ("{{ ['a', 'b'] | join(',') }}", "a,b"),
        ("{{ [1, 1, 2] | unique | list }}", [1, 2]),
        ("{{ [1, 2] | union([2, 3]) }}", [1, 2, 3]),
        ("{{ [1, 2] | intersect([2, 3]) }}", [2]),
        ("{{ [1, 2] | difference([2, 3]) }}", [1]),
        ("{{ [1, [2, [3, None]]] | flatten }}", [1, 2, 3]),
        ("{{ [1, [2, [3]]] | flatten(levels=1) }}", [1, 2, [3]]),
        ("{{ {'a': 1} | dict2items }}", [{"key": "a", "value": 1}]),
        ("{{ [{'key': 'a', 'value': 1}] | items2dict }}", {"a": 1}),
        ("{{ {'a': {'x': 1}} | combine({'a': {'y': 2}}) }}", {"a": {"y": 2}}),
        (
            "{{ {'a': {'x': 1}} | combine({'a': {'y': 2}}, recursive=True) }}",
            {"a": {"x": 1, "y": 2}},
        ),
        ("{{ 5 | mandatory }}", 5),
        ("{{ true | ternary('on', 'off') }}", "on"),
        (
            "{{ 'abc' | hash('sha256') }}",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        ("{{ 'abc' | md5 }}", "900150983cd24fb0d6963f7d28e17f72"),
        ("{{ 'abc' | checksum }}", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("{{ [1, 2] | zip(['a', 'b']) }}", [[1, "a"], [2, "b"]]),
        ("{{ 'a b' | split }}", ["a", "b"]),
    ],
)
def test_filters(template: str, expected: Any) -> None:
    assert render(template) == expected


def test_expanduser_and_realpath(tmp_path: Path) -> None:
    assert render("{{ '~/x' | expanduser }}") == str(Path.home() / "x")
    assert render("{{ p | realpath }}", p=str(tmp_path / "a" / ".." / "b")) == str(
        (tmp_path / "b").resolve()
    )


def test_mandatory_names_the_variable() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ app_secret | mandatory }}")
    assert info.value.variable == "app_secret"


def test_bad_filter_input_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="from_json: invalid JSON"):
        render("{{ 'nope' | from_json }}")
    with pytest.raises(TemplateError, match="unknown algorithm"):
        render("{{ 'x' | hash('nope') }}")


def test_default_omit() -> None:
    assert render("{{ mode | default(omit) }}") == OMIT


def test_to_json_of_unsafe_and_located_values() -> None:
    from machineroom.yamlio import parse_yaml

    data = parse_yaml("a: [x, {b: c}]\n", "v.yml")
    assert render("{{ data | to_json }}", data=mark_unsafe(data)) == '{"a": ["x", {"b": "c"}]}'
    assert render("{{ data | to_yaml }}", data=data) == "a:\n- x\n- {b: c}\n"


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("x is defined", True),
        ("nope is undefined", True),
        ("none_value is none", True),
        ("'abc' is match('a')", True),
        ("'abc' is match('b')", False),
        ("'abc' is search('b')", True),
        ("'abc' is regex('^a.c$')", True),
        ("'ABC' is search('b', ignorecase=true)", True),
        ("'20.10.7' is version('2.0', '>=')", True),
        ("'20.10.7' is version('20.10.10', 'lt')", True),
        ("'v1.2.3' is version('1.2.3', '==')", True),
        ("'1.10' is version('1.9', '>')", True),
        ("ok is succeeded and ok is success and ok is not failed", True),
        ("bad is failed and bad is failure", True),
        ("ch is changed and ok is not changed", True),
        ("sk is skipped", True),
        ("loop is changed", True),
        ("'x' is truthy and '' is falsy", True),
        ("'no' is truthy(convert_bool=true)", False),
    ],
)
def test_tests(expression: str, expected: bool) -> None:
    variables = {
        "x": 1,
        "none_value": None,
        "ok": {"changed": False, "failed": False, "rc": 0},
        "bad": {"failed": True, "rc": 1},
        "ch": {"changed": True},
        "sk": {"skipped": True, "changed": False},
        "loop": {"results": [{"changed": False}, {"changed": True}]},
    }
    assert Templar().evaluate(expression, variables, WHERE) is expected


def test_version_test_rejects_unknown_operator() -> None:
    with pytest.raises(TemplateError, match="unknown operator"):
        Templar().evaluate("'1' is version('2', '=>')", {}, WHERE)


def test_result_tests_need_a_mapping() -> None:
    with pytest.raises(TemplateError, match="expects a registered result"):
        Templar().evaluate("'x' is failed", {}, WHERE)


# --- lookups ---------------------------------------------------------------------------------


def test_lookup_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MR_TEST_VALUE", "v1")
    monkeypatch.delenv("MR_TEST_UNSET", raising=False)
    assert render("{{ lookup('env', 'MR_TEST_VALUE') }}") == "v1"
    assert render("{{ lookup('env', 'MR_TEST_UNSET') }}") == ""
    assert render("{{ lookup('env', 'MR_TEST_UNSET', default='d') }}") == "d"
    assert render("{{ query('env', 'MR_TEST_VALUE', 'MR_TEST_UNSET') }}") == ["v1", ""]


def test_lookup_file_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAA me\n")
    assert Templar(base_dir=tmp_path).render("{{ lookup('file', 'key.pub') }}", {}, WHERE) == (
        "ssh-ed25519 AAAA me"
    )
    variables = {"__mr_base_dir__": str(tmp_path)}
    assert Templar().render("{{ lookup('file', 'key.pub') }}", variables, WHERE) == (
        "ssh-ed25519 AAAA me"
    )
    with pytest.raises(TemplateError, match="cannot read"):
        Templar(base_dir=tmp_path).render("{{ lookup('file', 'nope') }}", {}, WHERE)


def test_lookup_vars_and_unknown_lookup() -> None:
    assert render("{{ lookup('vars', 'a') }}", a=[1]) == [1]
    with pytest.raises(TemplateError, match="unknown lookup 'enf' \\(did you mean 'env'\\?\\)"):
        render("{{ lookup('enf', 'X') }}")


# --- weight ----------------------------------------------------------------------------------


def test_import_pulls_in_only_jinja2() -> None:
    code = (
        "import sys, machineroom.templating; "
        "print(','.join(m for m in ('yaml', 'click', 'jsonschema', 'paramiko', 'fabric')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_render_is_cheap_for_plain_values(templar: Templar) -> None:
    import time

    args = {f"k{i}": f"plain value {i}" for i in range(50)}
    start = time.perf_counter()
    for _ in range(2000):
        templar.render(args, {}, WHERE)
    assert time.perf_counter() - start < 2.0


def test_from_yaml_refuses_an_alias_bomb_quickly() -> None:
    """A host's output fed through from_yaml has the limits of every YAML file."""
    import time

    from jinja2.exceptions import FilterArgumentError

    from machineroom.filters import from_yaml

    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        name, previous = chr(97 + level), chr(96 + level)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    started = time.monotonic()
    with pytest.raises(FilterArgumentError, match="alias"):
        from_yaml("\n".join(lines))
    assert time.monotonic() - started < 2


def test_unsafe_tag_is_never_templated() -> None:
    """Ansible's `!unsafe`: the text stays as written wherever the value goes."""
    from machineroom.yamlio import parse_yaml, to_plain

    data = to_plain(parse_yaml("u: !unsafe \"{{ lookup('env', 'HOME') }}\"\n", "vars.yml"))
    assert isinstance(data["u"], Unsafe)
    assert render("{{ u }}!", u=data["u"]) == "{{ lookup('env', 'HOME') }}!"
    assert render(data["u"]) == "{{ lookup('env', 'HOME') }}"


def test_lookup_of_several_values_that_are_not_text_is_a_list() -> None:
    """ansible-core 2.19: texts are joined with commas, anything else stays a list."""
    users = {"alice": {"age": 21}, "bob": {"age": 22}}
    got = render(
        "{{ lookup('dict', users) | sort(attribute='key') | map(attribute='key') }}", users=users
    )
    assert list(got) == ["alice", "bob"]
    assert render("{{ lookup('items', ['a', 'b']) }}") == "a,b"
