"""debug, assert, fail, set_fact, meta, record: pure modules, no host; and the pure parts of
the remote modules (check-mode shortcuts, output parsing, schemas)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from machineroom.executor.step import run_module
from machineroom.modules import MODULES, get_module
from machineroom.modules.base import RES_VAR, VERBOSITY_VAR, CommandOutput, ModuleContext, Outcome
from machineroom.modules.facts import parse_facts

MINE = ("command", "shell", "package", "apt", "service", "user", "group", "wait_for", "facts",
        "ping", "debug", "assert", "fail", "set_fact", "meta", "record")  # fmt: skip


def run(name: str, args: dict[str, Any], **ctx: Any) -> Outcome:
    module = get_module(name)
    assert module is not None
    return run_module(module, args, ModuleContext(host_id="h1", **ctx), None)


def test_schemas_are_valid_and_closed() -> None:
    for name in MINE:
        module = get_module(name)
        assert module is not None and module.name == name
        jsonschema.Draft202012Validator.check_schema(module.schema)
        if name not in ("set_fact", "record"):
            assert module.schema.get("additionalProperties") is False, name
        assert module.__doc__, name
    assert set(MINE) <= set(MODULES)


def test_debug() -> None:
    assert run("debug", {"msg": "hi"}).msg == "hi"
    assert run("debug", {}).msg == "Hello world!"
    out = run("debug", {"var": "a.b"}, vars={"a": {"b": [1, 2]}})
    assert out.status == "ok" and out.result == {"a.b": [1, 2]}
    assert run("debug", {"var": "nope"}).result == {"nope": "VARIABLE IS NOT DEFINED!"}
    quiet = run("debug", {"msg": "x", "verbosity": 2}, vars={VERBOSITY_VAR: 1})
    assert quiet.result == {"skipped": True}
    assert run("debug", {"msg": "x", "verbosity": 2}, vars={VERBOSITY_VAR: 2}).msg == "x"


def test_assert() -> None:
    that = [{"expr": "a == 1", "ok": True}, {"expr": "b is defined", "ok": False}]
    out = run("assert", {"that": that})
    assert out.status == "failed" and out.result["assertion"] == "b is defined"
    assert out.msg == "Assertion failed"
    assert run("assert", {"that": that, "fail_msg": "no b"}).msg == "no b"
    ok = run("assert", {"that": [{"expr": "x", "ok": True}], "success_msg": "fine"})
    assert ok.status == "ok" and ok.msg == "fine"
    assert run("assert", {"that": [True, True]}).msg == "All assertions passed"
    assert run("assert", {"that": True, "quiet": True}).msg == ""
    with pytest.raises(TypeError):
        run("assert", {"that": ["x == 1"]})  # the executor forgot to evaluate


def test_fail_and_meta() -> None:
    assert run("fail", {}).status == "failed"
    assert run("fail", {"msg": "stop here"}).msg == "stop here"
    out = run("meta", {"action": "flush_handlers"})
    assert out.status == "ok" and out.result == {"action": "flush_handlers"}
    assert run("meta", {"action": "bogus"}).status == "failed"


def test_set_fact() -> None:
    out = run("set_fact", {"a": 1, "b": {"c": "$(id)"}, "cacheable": True})
    assert out.status == "ok" and out.facts == {"a": 1, "b": {"c": "$(id)"}}
    assert out.result["cacheable"] is True
    # a templated name renders per host; what it renders to must be a variable name
    bad = run("set_fact", {"bad name": 1})
    assert bad.status == "failed" and "The variable name 'bad name' is not valid" in bad.msg


def test_set_fact_templated_names_as_ansible() -> None:
    """`set_fact: "{{ item }}=moo"`: key=value text with a templated name, keys rendered."""
    from machineroom.errors import Location
    from machineroom.playbook.args import parse_kv
    from machineroom.templating import Templar, Where

    args, rest = parse_kv("{{ item }}=moo other=1")
    assert args == {"{{ item }}": "moo", "other": "1"} and rest == ""
    rendered = Templar().render(args, {"item": "a"}, Where(Location("site.yml", 3, 7)))
    assert rendered == {"a": "moo", "other": "1"}


def test_record_changed_only_when_different() -> None:
    res = {"docker_compose_installed": True, "ports": [22, 80]}
    same = run("record", {"ports": [22, 80]}, vars={RES_VAR: res})
    assert same.status == "ok" and same.record == {}
    new = run("record", {"ports": [22], "retired": False}, vars={RES_VAR: res})
    assert new.status == "changed" and new.record == {"ports": [22], "retired": False}
    assert "-ports: [22, 80]" in new.diff and "+retired: false" in new.diff
    check = run("record", {"retired": True}, vars={RES_VAR: res}, check=True)
    assert check.status == "changed" and check.record == {} and "would record" in check.msg
    assert run("record", {"a": 1}).status == "changed"  # no res given: empty


def test_command_check_mode_sends_nothing() -> None:
    module = get_module("command")
    assert module is not None
    assert module.build({"cmd": "rm -rf /"}, ModuleContext("h1", check=True)) is None
    out = run("command", {"cmd": "rm -rf /"}, check=True)
    assert out.status == "ok" and out.msg == "skipped in check mode"
    step = module.build({"argv": ["echo", "$(id)"]}, ModuleContext("h1"))
    assert step is not None and "exec echo '$(id)'" in step.script


def test_command_output_parsing() -> None:
    module = get_module("command")
    assert module is not None
    err = "warn\n\n__machineroom_end__ 1700000000.5 1700000001.75 0\n"
    out = module.interpret({"cmd": "x"}, ModuleContext("h1"), CommandOutput(0, "a\n\n", err))
    assert out.result["stdout"] == "a" and out.result["stderr"] == "warn"
    assert out.result["delta"] == "0:00:01.250000"
    keep = {"cmd": "x", "strip_empty_ends": False}
    out = module.interpret(keep, ModuleContext("h1"), CommandOutput(0, "a\n", err))
    assert out.result["stdout"] == "a\n" and out.result["stderr"] == "warn\n"


def test_parse_facts() -> None:
    text = (
        "nodename\tweb1\nuname\tLinux 5.15.0 aarch64\n"
        '@@mr begin os_release\nID="ubuntu"\nID_LIKE=debian\nVERSION_ID="22.04"\n@@mr end\n'
        "@@mr begin cpuinfo\n" + "".join(f"processor\t: {i}\n" for i in range(4)) + "@@mr end\n"
        "@@mr begin meminfo\nMemTotal: 2048000 kB\nMemAvailable: 1024000 kB\n@@mr end\n"
        "@@mr begin mounts\n/dev/sda1 / ext4 rw 0 0\n@@mr end\n"
        "@@mr begin statfs\n4096 4096 2621440 1310720 1310720 100 50 /\n@@mr end\n"
        "@@mr begin ip\n2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\\ x\n"
        "8.8.8.8 via 10.0.0.1 dev eth0 src 10.0.0.5 uid 0\n@@mr end\n"
        "docker\tDocker version 24.0.7, build afdd53b\n"
        "compose\tDocker Compose version v2.21.0\npython_executable\t/usr/bin/python3\n"
        "python_banner\tPython 3.10.12\nproc_1\tsystemd\n"
    )
    nested, flat = parse_facts(text)
    assert flat["ansible_distribution"] == "Ubuntu" and flat["ansible_os_family"] == "Debian"
    assert flat["ansible_distribution_version"] == "22.04"
    assert flat["ansible_memtotal_mb"] == 2000 and nested["memory"]["available_mb"] == 1000
    assert flat["ansible_processor_vcpus"] == 4 and flat["ansible_architecture"] == "aarch64"
    assert nested["disks"][0] == {
        "mount": "/", "device": "/dev/sda1", "size_mb": 10240, "used_mb": 5120,
        "available_mb": 5120, "use_percent": 50,
    }  # fmt: skip
    assert flat["ansible_mounts"][0]["size_total"] == 10240 * 2**20
    assert nested["docker"] == "24.0.7" and nested["compose"] == "2.21.0"
    assert flat["ansible_default_ipv4"]["gateway"] == "10.0.0.1"
    assert flat["ansible_default_ipv4"]["netmask"] == "255.255.255.0"
    assert flat["ansible_python_version"] == "3.10.12" and flat["ansible_service_mgr"] == "systemd"
    assert flat["ansible_python"]["version"]["minor"] == 10
    empty, _ = parse_facts("")
    assert empty["docker"] is None and empty["python"] is None and empty["compose"] is None
