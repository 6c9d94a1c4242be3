"""validate(): jsonschema errors reported like a compiler, at the failing node's line."""

from __future__ import annotations

import pytest

from machineroom.errors import InputErrors
from machineroom.schema import load_schema, validate
from machineroom.yamlio import parse_yaml


def messages(text: str, schema: str = "inventory") -> list[str]:
    with pytest.raises(InputErrors) as caught:
        validate(parse_yaml(text, "inv.yml"), schema, "inv.yml")
    return [e.message for e in caught.value.errors]


def test_schema_file_is_a_valid_2020_12_schema() -> None:
    assert load_schema("inventory")["$schema"].endswith("/2020-12/schema")


def test_valid_document_passes() -> None:
    validate(parse_yaml("all:\n  hosts:\n    web1: {port: 22}\n", "i.yml"), "inventory", "i.yml")


def test_wrong_type_names_host_field_line_and_expectation() -> None:
    text = "all:\n  children:\n    web:\n      hosts:\n        web1:\n          port: abc\n"
    assert messages(text) == [
        "inv.yml:6:17: host 'web1': port: 'abc' is not an integer; expected an integer 1-65535"
    ]


def test_unknown_key_gets_did_you_mean_at_the_key() -> None:
    text = "tunnels:\n  j:\n    type: SSH\n    server: s\n    prot: 22\n"
    assert messages(text) == [
        "inv.yml:5:5: tunnel 'j': unknown key 'prot' (did you mean 'port'?); "
        "expected one of: type, server, user, password, port, ssh_key"
    ]


def test_missing_required_key_at_the_mapping() -> None:
    assert messages("tunnels:\n  j:\n    type: SSH\n") == [
        "inv.yml:3:5: tunnel 'j': missing required key 'server'; "
        "expected a mapping with type, server, user, password, port, ssh_key"
    ]


def test_secrets_are_never_quoted() -> None:
    text = "all:\n  hosts:\n    h:\n      password: [hunter2]\n      become_password: 4242\n"
    found = messages(text)
    assert found == [
        "inv.yml:4:17: host 'h': password: a list is not valid; "
        "expected a string, !env NAME, {env: NAME} or a !vault value",
        "inv.yml:5:24: host 'h': become_password: a number is not valid; "
        "expected a string, !env NAME, {env: NAME} or a !vault value",
    ]
    assert not any("hunter2" in m or "4242" in m for m in found)


def test_errors_come_in_file_order_all_at_once() -> None:
    text = "all:\n  hosts:\n    a: {port: 0}\n    b: {port: 70000}\n    c: {user: 5}\n"
    assert messages(text) == [
        "inv.yml:3:15: host 'a': port: 0 is out of range; expected an integer 1-65535",
        "inv.yml:4:15: host 'b': port: 70000 is out of range; expected an integer 1-65535",
        "inv.yml:5:15: host 'c': user: 5 is not a string; expected a user name",
    ]


def test_boolean_is_not_an_integer() -> None:
    assert messages("all:\n  hosts:\n    a: {ansible_port: yes}\n") == [
        "inv.yml:3:23: host 'a': ansible_port: true is not an integer; expected an integer 1-65535"
    ]


def test_part_of_a_schema_validates_vars_files() -> None:
    assert messages("ansible_port: abc\n", "inventory#vars") == [
        "inv.yml:1:15: ansible_port: 'abc' is not an integer; expected an integer 1-65535"
    ]


def test_enum_suggests() -> None:
    assert messages("all:\n  vars:\n    connection: sh\n") == [
        "inv.yml:3:17: group 'all': vars.connection: 'sh' is not allowed "
        "(did you mean 'ssh'?); expected ssh or local (sim: a simulated host, for capacity "
        "planning)"
    ]


def test_every_schema_file_is_a_valid_json_schema() -> None:
    """load_schema skips the metaschema check at run time for speed; it is checked here."""
    from importlib import resources

    import jsonschema

    from machineroom.schema import load_schema

    names = [
        entry.name.removesuffix(".json")
        for entry in resources.files("machineroom.schema").iterdir()
        if entry.name.endswith(".json")
    ]
    assert "inventory" in names and "playbook" in names
    for name in names:
        jsonschema.Draft202012Validator.check_schema(load_schema(name))
