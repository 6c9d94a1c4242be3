"""Loading playbooks and roles: the model built from YAML, and every invalid input's message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from machineroom import modules
from machineroom.errors import InputError, InputErrors
from machineroom.modules.base import Module
from machineroom.playbook.load import iter_tasks, load_include, load_playbook, select_stages
from machineroom.playbook.model import Block, Play, Playbook, Task

DATA = Path(__file__).parent / "data" / "playbooks"
PROJECT = DATA / "project"
INVALID = DATA / "invalid"


def _standin(name: str, schema: dict[str, Any], free_form: str | None = None) -> Module:
    cls = type(f"Standin_{name}", (Module,), {"name": name, "schema": schema})
    cls.free_form = free_form  # type: ignore[attr-defined]
    module: Module = cls()
    return module


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


_STR: dict[str, Any] = {"type": "string"}
_BOOL: dict[str, Any] = {"type": "boolean"}
# Argument schemas shaped like Ansible's, fixed here so that the messages below do not change
# when the real modules' schemas grow.
STANDINS: dict[str, Module] = {
    "apt": _standin(
        "apt",
        _obj(
            {
                "name": {"type": ["string", "array"]},
                "state": {"enum": ["present", "absent", "latest"]},
                "update_cache": _BOOL,
            }
        ),
    ),
    "copy": _standin(
        "copy",
        {
            **_obj(
                {"content": _STR, "src": _STR, "dest": _STR, "mode": _STR, "force": _BOOL},
                ["dest"],
            )
        },
    ),
    "file": _standin(
        "file",
        _obj(
            {
                "path": _STR,
                "state": {"enum": ["file", "directory", "link", "absent", "touch"]},
                "mode": _STR,
                "recurse": _BOOL,
            },
            ["path"],
        ),
    ),
    "command": _standin("command", _obj({"cmd": _STR, "chdir": _STR}, ["cmd"]), "cmd"),
    "shell": _standin("shell", _obj({"cmd": _STR, "chdir": _STR}, ["cmd"]), "cmd"),
    "debug": _standin("debug", _obj({"msg": {}, "var": _STR})),
    "service": _standin("service", _obj({"name": _STR, "state": _STR, "enabled": _BOOL})),
    "user": _standin("user", _obj({"name": _STR, "shell": _STR}, ["name"])),
    "package": _standin("package", _obj({"name": {}, "state": _STR})),
    "template": _standin("template", _obj({"src": _STR, "dest": _STR, "mode": _STR})),
    "facts": _standin("facts", _obj({})),
    "record": _standin("record", _obj({"data": {"type": "object"}})),
}


@pytest.fixture(autouse=True)
def standin_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Modules with the argument schemas above, whatever the real ones are today."""
    for name, module in STANDINS.items():
        monkeypatch.setitem(modules._loaded, name, module)
    yield


@pytest.fixture
def site() -> Playbook:
    return load_playbook(PROJECT / "site.yml")


def test_import_playbook_puts_its_plays_first_with_its_tags(site: Playbook) -> None:
    assert [p.name for p in site.plays] == ["Base", "Fleet"]
    assert site.plays[0].tags == {"base"}
    assert site.plays[0].gather_facts is False


def test_play_keywords(site: Playbook) -> None:
    fleet = site.plays[1]
    assert fleet.hosts == "fleet"
    assert fleet.become is True
    assert fleet.serial == (1, "50%")
    assert fleet.max_fail_percentage == 25.0
    assert fleet.strategy == "linear"
    assert fleet.gather_facts is None  # not written: gathered when a task could read one
    assert site.plays[0].strategy == "free"


def test_vars_files_override_vars_with_provenance(site: Playbook) -> None:
    fleet = site.plays[1]
    assert dict(fleet.vars) == {
        "app_port": 9090,
        "compose_dir": "/opt/app",
        "docker_version": "24.0",
    }
    sources = dict(fleet.vars_sources)
    assert sources["app_port"] == f"{PROJECT / 'vars/common.yml'}:1"
    assert sources["compose_dir"] == f"{PROJECT / 'site.yml'}:13"


def test_stages_in_order(site: Playbook) -> None:
    fleet = site.plays[1]
    assert [s.name for s in fleet.stages] == [
        "pre_tasks",
        "cert",
        "docker",
        "env",
        "main",
        "post_tasks",
    ]
    assert [s.role.name if s.role else None for s in fleet.stages] == [
        None,
        "cert",
        "docker",
        "env",
        None,
        None,
    ]


def _ids(items: Any) -> list[str]:
    return [t.id for t in iter_tasks(items)]


def test_role_dependencies_run_first_and_once_per_play(site: Playbook) -> None:
    stages = {s.name: s for s in site.plays[1].stages}
    # common is cert's dependency: it runs in the cert stage, and neither docker's dependency
    # nor `roles: [common]` runs it again
    assert _ids(stages["cert"].items) == [
        "roles/common/tasks/main.yml:1",
        "roles/cert/tasks/main.yml:1",
    ]
    assert _ids(stages["docker"].items) == [
        "roles/docker/tasks/install.yml:1",
        "roles/docker/tasks/install.yml:6",
        "roles/docker/tasks/main.yml:3",
    ]
    assert _ids(stages["main"].items) == ["site.yml:30", "site.yml:32"]


def test_role_ref_carries_defaults_vars_and_params(site: Playbook) -> None:
    env = next(s for s in site.plays[1].stages if s.name == "env")
    role = env.role
    assert role is not None
    assert role.path == str(PROJECT / "roles" / "env")
    assert dict(role.defaults) == {"env_name": "dev", "region": "us"}
    assert dict(role.vars) == {"env_file": "{{ compose_dir }}/.env"}
    assert dict(role.params) == {"env_name": "prod", "region": "eu"}
    assert role.defaults_sources["region"] == f"{PROJECT / 'roles/env/defaults/main.yml'}:2"
    (task,) = env.items
    assert isinstance(task, Task)
    assert task.role is role
    assert task.tags == {"env"}
    assert task.display_name == "env : Environment file"


def test_import_tasks_applies_when_and_tags(site: Playbook) -> None:
    base = site.plays[0].stages[0]
    assert base.name == "main"
    imported = [t for t in iter_tasks(base.items) if t.id.startswith("tasks/")]
    assert [(t.id, t.module, t.when, t.tags) for t in imported] == [
        ("tasks/users.yml:1", "user", ("manage_users",), frozenset({"users"})),
        ("tasks/keys.yml:1", "file", ("manage_users",), frozenset({"users"})),
    ]


def test_docker_role_import_keeps_role_and_tags(site: Playbook) -> None:
    docker = next(s for s in site.plays[1].stages if s.name == "docker")
    first, _, template = iter_tasks(docker.items)
    assert first.role is not None and first.role.name == "docker"
    assert first.tags == {"docker"}
    assert template.tags == frozenset()
    assert dict(first.args)["update_cache"] is True


def _task(play: Play, task_id: str) -> Task:
    for stage in play.stages:
        for task in iter_tasks(stage.items):
            if task.id == task_id:
                return task
    raise AssertionError(task_id)


def test_key_value_and_free_form_arguments(site: Playbook) -> None:
    base = site.plays[0]
    assert dict(_task(base, "base.yml:5").args) == {
        "path": "/opt/app",
        "state": "directory",
        "mode": "0755",
    }
    listing = _task(base, "base.yml:7")
    assert dict(listing.args) == {"cmd": "ls -l /opt/app", "chdir": "/opt"}
    assert listing.register == "listing"
    assert listing.changed_when == (False,)
    debug = _task(site.plays[1], "site.yml:30")
    assert dict(debug.args) == {"msg": "port {{ app_port }}"}


def test_with_items_keeps_its_terms_for_the_lookup_and_notify_is_a_tuple(site: Playbook) -> None:
    packages = _task(site.plays[0], "base.yml:11")
    # the items lookup flattens them one level when the task runs (tests/test_loops.py)
    assert (packages.loop_with, packages.loop) == ("items", [["curl", "jq"], "git"])
    assert packages.notify == ("apt changed",)
    assert dict(packages.args) == {"name": "{{ item }}", "state": "present"}


def test_includes_stay_dynamic(site: Playbook) -> None:
    include = _task(site.plays[0], "base.yml:22")
    assert (include.kind, include.module) == ("include", "include_tasks")
    assert dict(include.args) == {"file": "tasks/{{ ansible_os_family }}.yml"}
    role = _task(site.plays[1], "site.yml:32")
    assert (role.kind, role.module, dict(role.args)) == (
        "include",
        "include_role",
        {"name": "proxy"},
    )
    assert role.when == ("proxy_enabled | default(false)",)


def test_blocks_keep_rescue_always_and_push_down_environment(site: Playbook) -> None:
    block = site.plays[0].stages[0].items[-1]
    assert isinstance(block, Block)
    assert block.name == "Deploy safely"
    assert block.when == ("deploy | default(true)",)
    assert block.become is True
    (write,) = block.block
    assert isinstance(write, Task)
    assert write.notify == ("restart app",)
    assert dict(write.environment) == {"LANG": "C"}
    (say,) = block.rescue
    assert isinstance(say, Task) and say.module == "debug"
    (flush,) = block.always
    assert isinstance(flush, Task)
    assert (flush.kind, dict(flush.args)) == ("meta", {"action": "flush_handlers"})


def test_handlers_roles_first_then_play_with_listen(site: Playbook) -> None:
    fleet = site.plays[1]
    assert [(h.display_name, h.listen) for h in fleet.handlers] == [
        ("common : common updated", ()),
        ("docker : restart docker", ()),
        ("reload app", ("app changed",)),
    ]
    assert [h.name for h in site.plays[0].handlers] == ["restart app", "refresh apt"]


def test_ids_are_unique_and_locations_are_absolute_lines(site: Playbook) -> None:
    tasks = [t for p in site.plays for s in p.stages for t in iter_tasks(s.items)]
    ids = [t.id for t in tasks]
    assert len(ids) == len(set(ids))
    pre = _task(site.plays[1], "site.yml:17")
    assert pre.module == "facts" or pre.module == "ping"
    assert pre.location is not None and pre.location.line == 17


def test_select_stages_keeps_only_named_stages(site: Playbook) -> None:
    only = select_stages(site, ["docker", "env"])
    assert [p.name for p in only.plays] == ["Fleet"]
    assert [s.name for s in only.plays[0].stages] == ["docker", "env"]


def test_select_stages_unknown_name_lists_the_stages(site: Playbook) -> None:
    with pytest.raises(InputError) as caught:
        select_stages(site, frozenset({"dokcer"}))
    assert str(caught.value) == (
        f"{PROJECT / 'site.yml'}: unknown stage 'dokcer' (did you mean 'docker'?); "
        "expected one of: main, pre_tasks, cert, docker, env, post_tasks"
    )


def test_roles_path_is_searched_after_the_playbook_roles(tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "ntp" / "tasks"
    shared.mkdir(parents=True)
    (shared / "main.yaml").write_text("- debug: msg=ntp\n")
    book = tmp_path / "playbooks" / "site.yml"
    book.parent.mkdir()
    book.write_text("- hosts: all\n  roles: [ntp]\n")
    loaded = load_playbook(book, roles_path=[str(tmp_path / "shared")])
    (task,) = loaded.plays[0].stages[0].items
    assert isinstance(task, Task)
    assert task.id == "../shared/ntp/tasks/main.yaml:1"
    assert task.role is not None and task.role.name == "ntp"


def test_allow_duplicates_and_different_params_run_twice(tmp_path: Path) -> None:
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text("- debug: msg=r\n")
    book = tmp_path / "site.yml"
    book.write_text("- hosts: all\n  roles: [r, r, {role: r, x: 1}]\n")
    items = load_playbook(book).plays[0].stages[0].items
    assert [t.id for t in iter_tasks(items)] == [
        "roles/r/tasks/main.yml:1",
        "roles/r/tasks/main.yml:1#2",
    ]


def test_import_role_is_static_with_tasks_from(tmp_path: Path) -> None:
    tasks = tmp_path / "roles" / "web" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text("- debug: msg=main\n")
    (tasks / "extra.yml").write_text("- debug: msg=extra\n")
    book = tmp_path / "site.yml"
    book.write_text(
        "- hosts: all\n  tasks:\n    - import_role:\n        name: web\n        tasks_from: extra\n"
        "      tags: [web]\n"
    )
    (task,) = load_playbook(book).plays[0].stages[0].items
    assert isinstance(task, Task)
    assert (task.id, dict(task.args), task.tags) == (
        "roles/web/tasks/extra.yml:1",
        {"msg": "extra"},
        frozenset({"web"}),
    )


def test_load_include_at_run_time(site: Playbook) -> None:
    include = _task(site.plays[0], "base.yml:22")
    items, role = load_include(include, {"file": "tasks/Debian.yml"})
    assert role is None
    assert [t.id for t in iter_tasks(items)] == ["tasks/Debian.yml:1"]
    proxy = _task(site.plays[1], "site.yml:32")
    items, role = load_include(proxy, {"name": "proxy"})
    assert role is not None and role.name == "proxy"
    assert [t.display_name for t in iter_tasks(items)] == ["proxy : Proxy config"]
    with pytest.raises(InputError, match=r"include_tasks: file 'tasks/RedHat\.yml' not found"):
        load_include(include, {"file": "tasks/RedHat.yml"})


def _cases() -> list[str]:
    return sorted(p.stem for p in INVALID.glob("*.expected"))


@pytest.mark.parametrize("name", _cases())
def test_invalid_playbook(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    target = f"{name}/site.yml" if (INVALID / name).is_dir() else f"{name}.yml"
    with pytest.raises(InputErrors) as caught:
        load_playbook(target)
    expected = (INVALID / f"{name}.expected").read_text().rstrip("\n")
    assert str(caught.value) == expected


def test_every_invalid_input_has_its_message() -> None:
    inputs = {p.stem for p in INVALID.iterdir() if p.suffix != ".expected"}
    assert inputs == set(_cases())


def test_project_loads_with_the_real_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    # the modules other files implement: whichever exist today check their own arguments
    monkeypatch.setattr(modules, "_loaded", {})
    loaded = load_playbook(PROJECT / "site.yml")
    assert len(loaded.plays) == 2


def test_strategy_host_pinned_and_templated(tmp_path: Path) -> None:
    """host_pinned runs as free (hosts keep their worker); a template renders with play vars."""
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  strategy: host_pinned\n  tasks: [{debug: {msg: a}}]\n"
        '- hosts: all\n  vars: {s: linear}\n  strategy: "{{ s }}"\n  tasks: [{debug: {msg: b}}]\n'
        "- hosts: all\n  strategy: \"{{ t | default('free') }}\"\n  tasks: [{debug: {msg: c}}]\n"
    )
    plays = load_playbook(tmp_path / "site.yml").plays
    assert [p.strategy for p in plays] == ["free", "linear", "free"]


def test_an_include_in_role_handlers_finds_its_file_in_tasks(tmp_path: Path) -> None:
    """roles/r/handlers/main.yml: `include_tasks: restart.yml` is roles/r/tasks/restart.yml."""
    role = tmp_path / "roles" / "r"
    (role / "tasks").mkdir(parents=True)
    (role / "handlers").mkdir()
    (role / "tasks" / "main.yml").write_text("- command: 'true'\n  notify: restart\n")
    (role / "tasks" / "restart.yml").write_text("- command: 'true'\n")
    (role / "handlers" / "main.yml").write_text("- name: restart\n  include_tasks: restart.yml\n")
    (tmp_path / "site.yml").write_text("- hosts: all\n  roles: [r]\n")
    play = load_playbook(tmp_path / "site.yml").plays[0]
    assert [h.name for h in play.handlers] == ["restart"]


def test_module_defaults_and_fqcn_imports(tmp_path: Path) -> None:
    """module_defaults of the play, a block and a task (FQCN or short names; the task's own
    arguments win), and ansible.builtin.import_tasks / include_tasks, as Ansible reads them."""
    (tmp_path / "inc.yml").write_text("- file: {path: /srv/inc}\n")
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n"
        "  module_defaults:\n"
        "    ansible.builtin.file: {state: directory, mode: '0750'}\n"
        "  tasks:\n"
        "    - file: {path: /srv/a}\n"
        "    - block:\n"
        "        - file: {path: /srv/b}\n"
        "      module_defaults: {file: {mode: '0700'}}\n"
        "    - file: {path: /srv/c, mode: '0755'}\n"
        "    - ansible.builtin.import_tasks: inc.yml\n"
        "    - ansible.builtin.include_tasks: inc.yml\n"
        "      module_defaults: {file: {mode: '0711'}}\n"
    )
    play = load_playbook(tmp_path / "site.yml").plays[0]
    tasks = list(iter_tasks(play.stages[0].items))
    args = [dict(t.args) for t in tasks if t.module == "file"]
    assert args == [
        {"path": "/srv/a", "state": "directory", "mode": "0750"},
        {"path": "/srv/b", "state": "directory", "mode": "0700"},
        {"path": "/srv/c", "state": "directory", "mode": "0755"},
        {"path": "/srv/inc", "state": "directory", "mode": "0750"},
    ]
    include = tasks[-1]
    assert include.module == "include_tasks"
    items, _ = load_include(include, {"file": "inc.yml"})
    assert [dict(t.args) for t in iter_tasks(items)] == [
        {"path": "/srv/inc", "state": "directory", "mode": "0711"}
    ]


def test_import_keywords_reach_the_imported_tasks(tmp_path: Path) -> None:
    """notify, ignore_errors and environment on an import_tasks reach each imported task."""
    (tmp_path / "inc.yml").write_text("- command: 'true'\n- command: 'false'\n  notify: b\n")
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  tasks:\n"
        "    - import_tasks: inc.yml\n      notify: a\n      ignore_errors: true\n"
        "      environment: {LANG: C}\n"
        "  handlers:\n    - {name: a, command: 'true'}\n    - {name: b, command: 'true'}\n"
    )
    tasks = list(iter_tasks(load_playbook(tmp_path / "site.yml").plays[0].stages[0].items))
    assert [t.notify for t in tasks] == [("a",), ("b", "a")]
    assert all(t.ignore_errors and dict(t.environment) == {"LANG": "C"} for t in tasks)


def test_retries_and_delay_as_templates_and_text(tmp_path: Path) -> None:
    """`retries: "{{ n }}"` is evaluated per host; `delay: "0.5"` is a number, as Ansible."""
    from machineroom.playbook.keywords import resolve_flags

    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  tasks:\n"
        "    - {command: 'true', register: r, until: r.rc == 0, retries: '{{ n }}', delay: '0.5'}\n"
        "    - {command: 'true', register: s, until: s.rc == 0, retries: '3'}\n"
    )
    first, second = iter_tasks(load_playbook(tmp_path / "site.yml").plays[0].stages[0].items)
    assert first.delay == 0.5 and second.retries == 3
    assert resolve_flags(first, lambda template: "4").retries == 4
    with pytest.raises(InputError, match=r"retries: \{\{ n \}\} gave 'x', which is not a number"):
        resolve_flags(first, lambda template: "x")
