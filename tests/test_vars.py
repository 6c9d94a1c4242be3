"""Variable precedence with provenance, magic variables and `-e` parsing."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from machineroom.errors import InputError, Location
from machineroom.inventory import load_inventory
from machineroom.inventory.model import Host
from machineroom.playbook.model import Block, Play, RoleRef, Task
from machineroom.templating import Templar, Unsafe, Where
from machineroom.vars import (
    VarLayer,
    VarStack,
    build_var_stack,
    inventory_layers,
    magic_vars,
    parse_extra_vars,
)

INVENTORY = """\
all:
  vars:
    level: all
    only_all: 1
  children:
    web:
      vars:
        level: web
      children:
        frontend:
          vars:
            level: frontend
          hosts:
            web1:
              host: 10.0.0.1
              user: deploy
              level: host
            web2:
              host: 10.0.0.2
    db:
      hosts:
        db1: {}
"""


@pytest.fixture
def inventory_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    return path


def test_inventory_layers_follow_group_depth(inventory_file: Path) -> None:
    inventory = load_inventory(inventory_file)
    web2 = inventory.host("web2")
    layers = inventory_layers(web2)
    assert [layer.name for layer in layers] == [
        "group all",
        "group web",
        "group frontend",
        "host web2",
    ]
    stack = VarStack(tuple(layers))
    assert stack.resolve()["level"] == "frontend"
    assert stack.source_of("level") == f"{inventory_file}:12"
    # with the inventory, every group's own value shows, not only the winner
    full = VarStack(tuple(inventory_layers(web2, inventory)))
    assert [(layer.name, value) for layer, value, _ in full.explain("level")] == [
        ("group all", "all"),
        ("group web", "web"),
        ("group frontend", "frontend"),
    ]


def _role() -> RoleRef:
    return RoleRef(
        name="docker",
        path="roles/docker",
        defaults=MappingProxyType({"v": "role defaults", "docker_version": "20.10"}),
        vars=MappingProxyType({"v": "role vars"}),
        params=MappingProxyType({"v": "role params"}),
    )


def _host() -> Host:
    return Host(
        id="web1",
        host="10.0.0.1",
        user="deploy",
        groups=("all", "web"),
        vars=MappingProxyType({"v": "host", "g": "group web", "a": "group all"}),
        var_sources=MappingProxyType(
            {
                "v": "host web1, inv.yml:9",
                "g": "group web, inv.yml:5",
                "a": "group all, inv.yml:2",
            }
        ),
    )


def test_full_precedence_order() -> None:
    role = _role()
    play = Play(
        hosts="web",
        stages=(),
        name="site",
        vars=MappingProxyType({"v": "play"}),
        vars_sources=MappingProxyType({"v": "site.yml:4"}),
        location=Location("site.yml", 1, 3),
    )
    outer = Block(block=(), name="outer", vars=MappingProxyType({"v": "outer block"}))
    inner = Block(block=(), vars=MappingProxyType({"v": "inner block"}))
    task = Task(
        module="debug",
        name="show",
        vars=MappingProxyType({"v": "task"}),
        role=role,
        location=Location("roles/docker/tasks/main.yml", 3, 3),
    )
    stack = build_var_stack(
        _host(),
        play=play,
        blocks=(outer, inner),
        task=task,
        facts={"v": "facts"},
        include_params={"v": "include"},
        registered={"v": "registered"},
        extra_vars={"v": "extra"},
        extra_sources={"v": "-e argument 1 (v=...)"},
        magic={"inventory_hostname": "web1"},
    )
    names = [layer.name for layer, _, _ in stack.explain("v")]
    assert names == [
        "role defaults (docker)",
        "host web1",
        "facts",
        "play vars (site)",
        "role vars (docker)",
        "role params (docker)",
        "block vars (outer)",
        "block vars (block)",
        "task vars (docker : show)",
        "include params",
        "registered and set_fact",
        "extra vars (-e)",
    ]
    assert stack.resolve()["v"] == "extra"
    assert stack.view()["v"] == "extra"
    assert stack.resolve()["g"] == "group web"
    assert stack.resolve()["docker_version"] == "20.10"
    sources = {layer.name: where for layer, _, where in stack.explain("v")}
    assert sources["host web1"] == "inv.yml:9"
    assert sources["play vars (site)"] == "site.yml:4"
    assert sources["role defaults (docker)"] == "roles/docker/defaults/main.yml"
    assert sources["task vars (docker : show)"] == "roles/docker/tasks/main.yml:3"
    assert sources["extra vars (-e)"] == "-e argument 1 (v=...)"
    assert stack.source_of("a") == "inv.yml:2"
    assert stack.source_of("nope") is None


def test_each_layer_wins_over_the_ones_below() -> None:
    host = _host()
    assert build_var_stack(host).resolve()["v"] == "host"
    role = _role()
    assert build_var_stack(host, role=role).resolve()["v"] == "role params"
    play = Play(hosts="all", stages=(), vars=MappingProxyType({"v": "play"}))
    assert build_var_stack(host, play=play).resolve()["v"] == "play"
    assert build_var_stack(host, registered={"v": 1}, extra_vars={"v": 2}).resolve()["v"] == 2


def test_role_defaults_lose_to_inventory() -> None:
    host = Host(
        id="h",
        host="h",
        vars=MappingProxyType({"docker_version": "23.0"}),
        var_sources=MappingProxyType({"docker_version": "group all, inv.yml:3"}),
    )
    stack = build_var_stack(host, role=_role())
    assert stack.resolve()["docker_version"] == "23.0"
    assert [layer.name for layer, _, _ in stack.explain("docker_version")] == [
        "role defaults (docker)",
        "group all",
    ]


def test_host_output_layers_are_unsafe() -> None:
    stack = build_var_stack(
        _host(),
        facts={"ansible_hostname": "{{ evil }}"},
        registered={"out": {"stdout": "{{ evil }}"}},
    )
    values = stack.view()
    assert isinstance(values["ansible_hostname"], Unsafe)
    assert isinstance(values["out"]["stdout"], Unsafe)
    where = Where(None, "t", "web1")
    assert Templar().render("{{ out.stdout }}", values, where) == "{{ evil }}"


def test_templates_in_layers_see_higher_layers() -> None:
    role = RoleRef(
        name="app",
        path="roles/app",
        defaults=MappingProxyType(
            {"url": "http://{{ inventory_hostname }}:{{ port }}", "port": 80}
        ),
    )
    stack = build_var_stack(
        _host(), role=role, extra_vars={"port": "8080"}, magic={"inventory_hostname": "web1"}
    )
    assert Templar().render("{{ url }}", stack.view(), Where()) == "http://web1:8080"


def test_stack_push_and_empty_layers() -> None:
    stack = build_var_stack(_host())
    assert all(layer.values for layer in stack)
    pushed = stack.push(VarLayer("loop", {"item": 1}))
    assert pushed.resolve()["item"] == 1
    assert "item" not in stack.resolve()
    view = stack.view()
    view["x"] = 1  # writes go to a scratch dict on top, never into a layer
    assert "x" not in stack.resolve()


def test_magic_vars(inventory_file: Path) -> None:
    inventory = load_inventory(inventory_file)
    web1 = inventory.host("web1")
    magic = magic_vars(
        web1,
        inventory,
        ["web1", "web2"],
        check_mode=True,
        playbook_dir="/p",
        role_path="/p/roles/app",
    )
    assert magic["inventory_hostname"] == "web1"
    assert magic["inventory_hostname_short"] == "web1"
    assert magic["groups"]["web"] == ["web1", "web2"]
    assert magic["groups"]["frontend"] == ["web1", "web2"]
    assert magic["groups"]["db"] == ["db1"]
    assert magic["groups"]["all"] == ["web1", "web2", "db1"]
    assert magic["group_names"] == ["frontend", "web"]
    assert magic["play_hosts"] == magic["ansible_play_hosts"] == ["web1", "web2"]
    assert magic["ansible_check_mode"] is True
    assert magic["playbook_dir"] == "/p"
    assert magic["role_path"] == "/p/roles/app"
    assert magic["role_name"] == "app"
    assert (magic["ansible_host"], magic["ansible_user"], magic["ansible_port"]) == (
        "10.0.0.1",
        "deploy",
        22,
    )
    hostvars = magic["hostvars"]
    assert len(hostvars) == 3
    assert hostvars["web2"]["ansible_host"] == "10.0.0.2"
    assert hostvars["web2"]["level"] == "frontend"
    rendered = Templar().render("{{ hostvars[groups['web'][1]]['ansible_host'] }}", magic, Where())
    assert rendered == "10.0.0.2"


def test_magic_vars_win_over_everything() -> None:
    stack = build_var_stack(
        _host(), extra_vars={"inventory_hostname": "x"}, magic={"inventory_hostname": "web1"}
    )
    assert stack.resolve()["inventory_hostname"] == "web1"


# --- -e --------------------------------------------------------------------------------------


def test_extra_vars_key_value_pairs() -> None:
    values, sources = parse_extra_vars(["a=1 b='two words'", 'c="x=y" d=', "a=3"])
    assert values == {"a": "3", "b": "two words", "c": "x=y", "d": ""}
    assert sources["a"] == "-e argument 3 (a=...)"
    assert sources["b"] == "-e argument 1 (b=...)"


def test_extra_vars_json_and_yaml_flow() -> None:
    values, sources = parse_extra_vars(['{"n": 1, "l": [1, 2], "d": {"x": true}}', "{m: two}"])
    assert values == {"n": 1, "l": [1, 2], "d": {"x": True}, "m": "two"}
    assert sources["n"] == "-e argument 1 (JSON)"


def test_extra_vars_from_file(tmp_path: Path) -> None:
    (tmp_path / "vars.yml").write_text("# vars\nport: 8080\nnames: [a, b]\n")
    (tmp_path / "vars.json").write_text('{"port": 9090}')
    values, sources = parse_extra_vars([f"@{tmp_path / 'vars.yml'}", f"@{tmp_path / 'vars.json'}"])
    assert values == {"port": 9090, "names": ["a", "b"]}
    assert sources["names"] == f"{tmp_path / 'vars.yml'}:3"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("novalue", "'novalue' is not key=value"),
        ("1x=2", "'1x' is not a valid variable name"),
        ("a='open", "No closing quotation"),
        ("[1, 2]", "is not key=value"),
        ('{"a": ', "invalid YAML"),
        ('{"9": 1}', "'9' is not a valid variable name"),
    ],
)
def test_extra_vars_errors(item: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        parse_extra_vars([item])


def test_extra_vars_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("a: 1\nb: [\n")
    with pytest.raises(InputError, match=rf"{bad}:\d+:\d+: invalid YAML"):
        parse_extra_vars([f"@{bad}"])
    listing = tmp_path / "list.yml"
    listing.write_text("- a\n")
    with pytest.raises(InputError, match="is not a mapping"):
        parse_extra_vars([f"@{listing}"])
    with pytest.raises(InputError, match="file not found"):
        parse_extra_vars([f"@{tmp_path / 'missing.yml'}"])
