"""The YAML inventory: Ansible's shape and names, group_vars/host_vars, precedence, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from machineroom.errors import InputError
from machineroom.inventory import (
    load_inventories,
    load_inventory,
    load_yaml_inventory,
    parse_server_list,
    render_yaml_inventory,
)
from machineroom.inventory.yaml_inventory import expand_host_range, parse_yaml_inventory
from machineroom.yamlio import parse_yaml

DATA = Path(__file__).parent / "data" / "inventory"
INVALID = DATA / "invalid"
ANSIBLE = DATA / "ansible" / "hosts.yml"


def _cases(prefix: str) -> list[str]:
    return sorted(
        p.name
        for p in INVALID.iterdir()
        if p.name.startswith(prefix) and not p.name.endswith(".expected")
    )


def test_ansible_inventory_hosts_and_fields() -> None:
    inventory = load_inventory(ANSIBLE)
    assert list(inventory.hosts) == [
        "lonely",
        "web1",
        "web2",
        "db1",
        "app01.example.com",
        "app02.example.com",
        "app03.example.com",
    ]
    web1 = inventory.hosts["web1"]
    assert (web1.host, web1.port, web1.user, web1.description) == (
        "10.0.0.1",
        2201,
        "web-admin",
        "front end",
    )
    assert web1.password is not None and web1.password.reference() == "env:WEB1_PASS"
    web2 = inventory.hosts["web2"]
    assert (web2.host, web2.port, web2.user) == ("10.0.0.2", 22, "deploy")
    assert web2.become_password is not None and web2.become_password.kind == "vault"
    assert web2.become_password.value == "$MACHINEROOM_VAULT;1;c2FsdA==;Y2lwaGVy"
    db1 = inventory.hosts["db1"]
    assert (db1.host, db1.tunnel) == ("10.0.1.1", "bastion")
    assert db1.password is not None and db1.password.reference() == "env:DB1_PASSWORD"
    assert inventory.hosts["lonely"].host == "10.0.0.9"
    assert inventory.hosts["app02.example.com"].connection == "local"
    assert inventory.hosts["app02.example.com"].host == "app02.example.com"
    bastion = inventory.tunnels["bastion"]
    assert (bastion.server, bastion.user, bastion.port) == ("bastion.example.com", "jump", 2222)
    assert inventory.warnings == ()


def test_groups_nest_and_order_by_depth_then_name() -> None:
    inventory = load_inventory(ANSIBLE)
    assert inventory.hosts["web1"].groups == ("all", "alpha", "monitoring", "prod", "web")
    assert inventory.hosts["db1"].groups == ("all", "prod", "db")
    assert inventory.hosts["lonely"].groups == ("all",)
    assert inventory.groups["prod"].children == ("web", "db")
    assert inventory.groups["web"].hosts == ("web1", "web2")
    assert inventory.groups["all"].children == ("prod", "monitoring", "alpha", "app")
    assert inventory.groups["all"].hosts == ("lonely",)


def test_variable_precedence_and_provenance() -> None:
    inventory = load_inventory(ANSIBLE)
    web1 = inventory.hosts["web1"]
    source = str(ANSIBLE)
    folder = str(ANSIBLE.parent)
    # all < parent group < child group
    assert web1.vars["level"] == "web"
    assert web1.var_sources["level"] == f"group web, {source}:23"
    assert inventory.hosts["db1"].vars["level"] == "prod"
    assert inventory.hosts["lonely"].vars["level"] == "all"
    # siblings of one depth: alphabetical, the later wins (monitoring after alpha)
    assert web1.vars["color"] == "blue"
    assert web1.var_sources["color"] == f"group monitoring, {source}:42"
    # group_vars/ files beat the group's vars in the inventory file
    assert web1.vars["http_port"] == 8080
    assert web1.var_sources["http_port"] == f"group web, {folder}/group_vars/web/10-http.yml:1"
    assert web1.vars["web_root"] == "/srv/www"
    assert web1.vars["ntp_server"] == "ntp.example.com"
    # host_vars/ beat everything; fields have provenance too
    assert web1.var_sources["user"] == f"host web1, {folder}/host_vars/web1.yml:2"
    assert inventory.hosts["web2"].var_sources["user"] == f"group all, {source}:11"
    # fields are not variables
    assert "ansible_host" not in web1.vars and "host" not in web1.vars
    assert web1.field_locations["port"].line == 28


def test_same_field_in_parent_group_and_host() -> None:
    text = (
        "all:\n  vars: {port: 2200, user: a}\n  children:\n    g:\n"
        "      vars: {port: 2300}\n      hosts:\n        h1: {port: 2400}\n        h2:\n"
    )
    inventory = parse_yaml_inventory(parse_yaml(text, "i.yml"), "i.yml")
    assert inventory.hosts["h1"].port == 2400
    assert inventory.hosts["h2"].port == 2300
    assert inventory.hosts["h2"].user == "a"


def test_plaintext_password_and_field_typo_warn() -> None:
    text = "all:\n  hosts:\n    web1:\n      password: hunter2\n      prot: 2222\n"
    inventory = parse_yaml_inventory(parse_yaml(text, "i.yml"), "i.yml")
    assert [str(w) for w in inventory.warnings] == [
        "i.yml:4:17: host 'web1': plaintext password; write ${VARIABLE} (an environment variable)"
        " or a vault value (machineroom vault encrypt-string) instead",
        "i.yml:5:7: host 'web1': 'prot' is not a field, so it is a variable (did you mean 'port'?)",
    ]
    assert inventory.hosts["web1"].vars["prot"] == 2222


def test_env_reference_spellings_agree() -> None:
    text = (
        "all:\n  hosts:\n    a: {password: !env PW}\n    b: {password: {env: PW}}\n"
        "    c: {password: '${PW}'}\n"
    )
    inventory = parse_yaml_inventory(parse_yaml(text, "i.yml"), "i.yml")
    assert {h.password.reference() for h in inventory.hosts.values() if h.password} == {"env:PW"}
    assert inventory.warnings == ()


def test_host_ranges() -> None:
    assert expand_host_range("web[01:03].lan") == ["web01.lan", "web02.lan", "web03.lan"]
    assert expand_host_range("db[a:c]") == ["dba", "dbb", "dbc"]
    assert expand_host_range("n[1:5:2]") == ["n1", "n3", "n5"]
    assert expand_host_range("plain") == ["plain"]


def test_render_yaml_round_trip(tmp_path: Path) -> None:
    original = load_inventory(ANSIBLE)
    written = tmp_path / "copy.yml"
    written.write_text(render_yaml_inventory(original))
    again = load_yaml_inventory(written)
    assert list(again.hosts) == list(original.hosts)
    for host_id, host in original.hosts.items():
        other = again.hosts[host_id]
        for attr in (
            "host",
            "user",
            "port",
            "ssh_key",
            "description",
            "tunnel",
            "connection",
            "groups",
        ):
            assert getattr(other, attr) == getattr(host, attr), (host_id, attr)
        for attr in ("password", "become_password"):
            mine, theirs = getattr(host, attr), getattr(other, attr)
            assert (mine and (mine.kind, mine.value)) == (theirs and (theirs.kind, theirs.value))
        assert dict(other.vars) == dict(host.vars)
    assert set(again.groups) == set(original.groups)
    assert again.tunnels["bastion"].server == "bastion.example.com"


def test_import_server_list_emits_yaml(tmp_path: Path) -> None:
    servers = parse_server_list((DATA / "document_examples.txt").read_text(), "s.txt")
    text = render_yaml_inventory(servers)
    assert "kansas-server:\n      host: 203.0.113.100\n      user: admin\n      port: 22\n" in text
    written = tmp_path / "hosts.yml"
    written.write_text(text)
    again = load_inventory(written, check_key_files=False)
    assert again.hosts["kansas-server"].ssh_key == "/Users/yourusername/.ssh/custom_key"
    assert again.hosts["db-server-01"].port == 2222
    assert again.tunnels["tunnel-profile-name"].user == "username"


def test_vault_values_render_as_vault_tags() -> None:
    text = render_yaml_inventory(load_inventory(ANSIBLE))
    assert "become_password: !vault |-\n        $MACHINEROOM_VAULT;1;c2FsdA==;Y2lwaGVy\n" in text
    assert "password:\n        env: WEB1_PASS\n" in text


def test_several_inventories_merge(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("extra--10.9.9.9--root\n")
    inventory = load_inventories([ANSIBLE, tmp_path / "more.txt"])
    assert list(inventory.hosts)[-1] == "extra"
    assert "extra" in inventory.groups["all"].hosts


def test_duplicate_host_across_files(tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    second = tmp_path / "b.txt"
    first.write_text("web1--10.0.0.1--root\n")
    second.write_text("# another list\nweb1--10.0.0.2--root\n")
    with pytest.raises(InputError) as caught:
        load_inventories([first, second])
    assert str(caught.value) == (
        f"{second}:2: duplicate server id 'web1' (first at {first}:1); expected each server id once"
    )


def test_folder_without_inventory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no inventory in this folder; expected one of: hosts"):
        load_inventory(tmp_path)


@pytest.mark.parametrize("name", _cases("y_"))
def test_invalid_yaml_inventory(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    expected = (INVALID / name).with_suffix(".expected")
    if (INVALID / name).is_dir():
        expected = INVALID / f"{name}.expected"
    with pytest.raises(InputError) as caught:
        load_inventory(name)
    assert str(caught.value) == expected.read_text().rstrip("\n")


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('a: 1\nb: 2\nc: 3\nd: 4\ne: [1, "two\nf: 6\n', "inv.yml:5:8:", "a quoted string"),
        ("a: 1\nb: [1, 2\n", "inv.yml:2:4:", "a [ list"),
        ("a: {x: 1\n", "inv.yml:1:4:", "a { mapping"),
    ],
)
def test_an_unclosed_quote_or_bracket_is_reported_where_it_opens(
    text: str, where: str, what: str
) -> None:
    with pytest.raises(InputError) as caught:
        parse_yaml(text, "inv.yml")
    message = str(caught.value)
    assert message.startswith(f"{where} invalid YAML: {what} that starts here is not closed")


def test_other_yaml_errors_keep_their_place() -> None:
    with pytest.raises(InputError) as caught:
        parse_yaml("a: b: c\n", "inv.yml")
    assert str(caught.value) == (
        "inv.yml:1:5: invalid YAML: mapping values are not allowed in this context"
    )
