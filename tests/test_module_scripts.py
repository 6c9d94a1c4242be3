"""`sh -n` on every script the registered modules build, over a matrix of arguments.

The data-driven cases (test_module_cases.py) check what a module does with a few chosen
arguments; this file only asks "is it POSIX sh?" of every branch the arguments reach. For each
module: a few base argument sets, each overlaid with one changed argument at a time (every enum
value of the schema, each boolean both ways, a few representative values for modes, owners,
paths and the like), under four contexts (check mode and --diff on and off); then a hostile
value (quotes, $(...), a backslash-newline) in each free-text argument. Conversing modules
are driven with canned answers, so their later steps are built and checked too. Identical
scripts are checked once. Every data-driven case's arguments (tests/data/module_cases) are
base arguments too. A build that refuses its arguments (InputError, ValueError) is not a
syntax question; each module must still yield scripts, and the whole matrix a good number.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import posixpath
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from machineroom.errors import InputError, Location
from machineroom.modules import MODULES, get_module
from machineroom.modules.base import CommandOutput, Module, ModuleContext, RemoteStep
from machineroom.modules.remote_read import DATA_MARKER
from machineroom.playbook.args import prepare_args

# Modules that never build a remote script: they run on the controller only.
CONTROLLER_ONLY = {
    "debug": "prints on the controller",
    "assert": "evaluates conditions on the controller",
    "fail": "fails on the controller",
    "set_fact": "sets variables on the controller",
    "meta": "executor directives",
    "record": "writes the host's record on the controller",
    "include_vars": "reads local files",
    "pause": "waits on the controller",
    "add_host": "changes the in-memory inventory",
    "group_by": "changes the in-memory inventory",
}

# module -> base argument sets; every overlay below is applied to each of them.
BASE_ARGS: dict[str, list[dict[str, Any]]] = {
    "copy": [
        {"dest": "/etc/app.conf", "content": "a=1\n"},
        {"dest": "/etc/app.conf", "src": "app.conf"},
        {"dest": "/etc/app/", "src": "/srv/app.conf", "remote_src": True},
        {"dest": "/etc/app", "src": "conf.d/"},  # a local folder (FOLDER): two steps
        {"dest": "/etc/app", "src": "conf.d", "directory_mode": "0750"},
    ],
    "template": [{"src": "app.conf.j2", "dest": "/etc/app.conf"}],
    "file": [
        {"path": "/srv/app"},
        {"path": "/srv/app", "state": "link", "src": "/srv/real"},
        {"path": "/srv/app", "state": "directory", "recurse": True, "mode": "u+rwX"},
        {"path": "/srv/app", "state": "touch", "modification_time": "now"},
    ],
    "lineinfile": [
        {"path": "/etc/hosts", "line": "10.0.0.1 db"},
        {"path": "/etc/hosts", "regexp": r"^10\.0\.0\.1\s", "line": "10.0.0.1 db"},
        {"path": "/etc/hosts", "search_string": "db", "line": "10.0.0.1 db"},
        {"path": "/etc/hosts", "regexp": r"^(\w+)=", "line": r"\1=2", "backrefs": True},
    ],
    "blockinfile": [
        {"path": "/etc/app.conf", "block": "a=1\nb=2"},
        {"path": "/etc/app.conf", "block": "a=1", "insertafter": "^# end"},
    ],
    "authorized_key": [
        {"user": "deploy", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey deploy@ws"},
        {
            "user": "deploy",
            "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey a\nssh-rsa AAAAB3NzaC1yc2E b",
            "key_options": 'from="10.0.0.1",no-pty',
        },
    ],
    "replace": [
        {"path": "/etc/app.conf", "regexp": "^a=1$", "replace": "a=2"},
        {"path": "/etc/app.conf", "regexp": "a", "replace": "b", "after": "^#", "before": "$"},
    ],
    "find": [
        {"paths": ["/var/log"]},
        {"paths": ["/var/log", "/tmp"], "patterns": ["*.log"], "contains": "error"},
        {"paths": ["/var/log"], "get_checksum": True, "recurse": True, "depth": 2},
    ],
    "slurp": [{"src": "/etc/hostname"}],
    "fetch": [{"src": "/etc/hostname", "dest": "fetched/"}],
    "get_url": [
        {"url": "https://example.com/a.tgz", "dest": "/tmp/a.tgz"},
        {"url": "https://example.com/a.tgz", "dest": "/tmp/", "checksum": "sha256:" + "a" * 64},
    ],
    "unarchive": [
        {"src": "/tmp/a.tgz", "dest": "/srv", "remote_src": True},
        {"src": "a.zip", "dest": "/srv"},
        {"src": "https://example.com/a.tar.gz", "dest": "/srv", "remote_src": True},
    ],
    "tempfile": [{}, {"prefix": "mr", "suffix": ".tmp", "path": "/var/tmp"}],
    "command": [
        {"cmd": "ls -l /"},
        {"argv": ["echo", "$HOME", "~/x"]},
        {"cmd": "touch /tmp/x", "creates": "/tmp/x*", "chdir": "/tmp", "stdin": "data"},
        {"cmd": "rm /tmp/x", "removes": "/tmp/x"},
    ],
    "shell": [
        {"cmd": "echo $HOME | tr a-z A-Z > /tmp/x"},
        {"cmd": "ls", "creates": "/tmp/x", "chdir": "/tmp", "executable": "/bin/bash"},
    ],
    "raw": [{"cmd": "uname -a"}, {"cmd": "uname", "executable": "/bin/bash"}],
    "script": [
        {"cmd": "setup.sh --flag 'a b'"},
        {"cmd": "setup.sh", "creates": "/tmp/x", "chdir": "/srv", "executable": "/bin/bash"},
    ],
    "package": [{"name": "nginx"}, {"name": ["nginx", "curl=7.88*"], "update_cache": True}],
    "apt": [
        {"name": "nginx"},
        {"name": ["nginx", "curl"], "update_cache": True, "cache_valid_time": 3600},
        {"upgrade": "dist"},
        {"deb": "/tmp/pkg.deb"},
        {"autoremove": True},
    ],
    "package_facts": [{}],
    "apt_key": [
        {"url": "https://example.com/key.asc", "id": "0123456789ABCDEF"},
        {"data": "-----BEGIN PGP PUBLIC KEY BLOCK-----\nx\n-----END PGP PUBLIC KEY BLOCK-----"},
        {"id": "0123456789ABCDEF", "keyserver": "keyserver.ubuntu.com"},
        {"file": "/tmp/key.gpg", "keyring": "/etc/apt/trusted.gpg.d/x.gpg"},
    ],
    "apt_repository": [
        {"repo": "deb http://deb.debian.org/debian bookworm-backports main"},
        {"repo": "deb [arch=amd64] http://example.com/apt stable main", "filename": "example"},
    ],
    "deb822_repository": [
        {"name": "example", "uris": ["http://example.com/apt"], "suites": ["stable"]},
        {
            "name": "docker",
            "types": ["deb"],
            "uris": ["https://download.docker.com/linux/debian"],
            "suites": ["bookworm"],
            "components": ["stable"],
            "signed_by": "https://download.docker.com/linux/debian/gpg",
        },
    ],
    "service": [{"name": "nginx", "state": "started"}, {"name": "nginx", "enabled": True}],
    "systemd": [
        {"name": "nginx", "state": "started"},
        {"name": "nginx", "enabled": True, "masked": False},
        {"daemon_reload": True},
    ],
    "service_facts": [{}],
    "sysctl": [
        {"name": "vm.swappiness", "value": "10"},
        {"name": "net.ipv4.ip_forward", "value": 1, "sysctl_file": "/etc/sysctl.d/99-mr.conf"},
    ],
    "cron": [
        {"name": "backup", "job": "/usr/local/bin/backup", "minute": "0", "hour": "3"},
        {"name": "backup", "job": "/bin/true", "cron_file": "backup", "user": "root"},
        {"name": "PATH", "env": True, "job": "/usr/bin:/bin"},
    ],
    "timezone": [{"name": "Europe/Paris"}, {"hwclock": "UTC"}],
    "hostname": [{"name": "web1"}, {"name": "web1.example.com"}],
    "mount": [
        {"path": "/mnt/data", "src": "/dev/sdb1", "fstype": "ext4", "state": "mounted"},
        {
            "path": "/mnt/tmp",
            "src": "tmpfs",
            "fstype": "tmpfs",
            "opts": "size=1g,mode=1777",
            "state": "present",
            "fstab": "/tmp/fstab",
        },
    ],
    "pip": [
        {"name": "requests"},
        {"name": ["requests", "flask>=2"], "virtualenv": "/srv/venv"},
        {"requirements": "/srv/app/requirements.txt", "chdir": "/srv/app"},
    ],
    "reboot": [{}],
    "user": [
        {"name": "deploy"},
        {"name": "deploy", "groups": ["sudo", "docker"], "append": True, "shell": "/bin/bash"},
        {"name": "deploy", "generate_ssh_key": True, "password": "$6$salt$hash"},
    ],
    "group": [{"name": "deploy"}, {"name": "deploy", "gid": 1500}],
    "wait_for": [{"port": 22}, {"path": "/tmp/ready"}, {"timeout": 1}],
    "async_status": [{"jid": "123456.789"}],
    "stat": [{"path": "/etc/passwd"}],
    "facts": [{}, {"gather_subset": ["!all", "network"]}],
    "compose": [
        {"project_src": "/srv/app", "definition": {"services": {"web": {"image": "nginx"}}}},
        {"project_src": "/srv/app", "src": "compose.yml.j2"},
        {"project_src": "/srv/app"},
    ],
    "ping": [{}],
    "docker_containers": [{}],
    "collect": [
        {},
        {
            "collectors": {
                "pop": "printf '{\"a\": 1}'",
                "slow": {"command": "sleep 1", "timeout": 5},
            }
        },
        {"restricted": True},
    ],
    "uri": [
        {"url": "https://example.com/health"},
        {
            "url": "https://example.com/api",
            "method": "POST",
            "body": {"a": 1},
            "body_format": "json",
            "headers": {"X-Token": "t"},
        },
        {"url": "https://example.com/file", "dest": "/tmp/file", "creates": "/tmp/file"},
    ],
    "git": [
        {"repo": "https://example.com/app.git", "dest": "/srv/app"},
        {
            "repo": "git@example.com:app.git",
            "dest": "/srv/app",
            "version": "v1.2",
            "depth": 1,
            "key_file": "/root/.ssh/deploy",
            "accept_hostkey": True,
        },
    ],
    "getent": [{"database": "passwd", "key": "root"}, {"database": "group"}],
}

# argument -> values tried in place of (or in addition to) the base value, when the module
# has that argument. Enums and booleans come from the schema.
VALUES: dict[str, list[Any]] = {
    "mode": ["0644", "u=rw,g=r,o=", "preserve"],
    "owner": ["root"],
    "group": ["adm"],
    "backup": [True],
    "validate": ["visudo -cf %s"],
    "directory_mode": ["0755"],
    "insertafter": ["EOF", "^# after"],
    "insertbefore": ["BOF", "^# before"],
    "marker": ["## {mark} managed"],
    "version": ["1.2.3"],
    "extra_args": ["--no-cache-dir"],
    "default_release": ["bookworm-backports"],
    "dpkg_options": ["force-confold"],
    "uid": [1500],
    "home": ["/srv/deploy"],
    "expires": [1893456000],
    "comment": ["Deploy user"],
    "special_time": ["daily"],
    "weekday": ["1-5"],
    "checksum": ["sha256:" + "b" * 64],
    "headers": [{"Accept": "text/plain"}],
    "url_username": ["u"],
    "url_password": ["p"],
    "timeout": [5],
    "exclude": [["a/*"]],
    "include": [["b/*"]],
    "extra_opts": [["--strip-components=1"]],
    "search_regex": ["ready"],
    "host": ["10.0.0.2"],
    "refspec": ["refs/heads/*:refs/remotes/origin/*"],
    "key": ["root"],
    "split": [":"],
    "env": [{"A": "1"}],
    "access_time": ["202401011200.00"],
    "age": ["2d"],
    "size": ["10m"],
    "contains": ["x"],
    "excludes": [["*.gz"]],
}


HERE = Location("<matrix>")
CASES = Path(__file__).parent / "data" / "module_cases"
# a local folder for copy's `src: conf.d/`
FOLDER = Path(__file__).parent / "data" / "module_case_files" / "conf.d"


class MemoryFiles:
    """fetch's local files, in memory: what it writes it reads back."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def resolve(self, path: str) -> str:
        return posixpath.join("/project", path)

    def digest(self, path: str, algorithm: str = "sha1") -> str | None:
        data = self.files.get(path)
        return None if data is None else hashlib.new(algorithm, data).hexdigest()

    def write(self, path: str, data: bytes) -> None:
        self.files[path] = data


def context(check: bool, diff: bool) -> ModuleContext:
    """A module context for building only: local files and templates have fixed content."""
    return ModuleContext(
        host_id="web1",
        check=check,
        diff=diff,
        vars={"inventory_hostname": "web1", "ansible_facts": {}},
        read_file=lambda src: b"#!/bin/sh\necho local file\n",
        local_folder=lambda src: str(FOLDER) if src.rstrip("/") == "conf.d" else None,
        render_template=lambda src, **options: "rendered = 1\n",
        local_files=MemoryFiles(),
    )


# Canned answers for conversing modules, in order; the conversation ends when they run out.
_FILE = b"a=1\n# x\nb=2\n"
_READ = CommandOutput(
    0,
    f"exists=1\nsize={len(_FILE)}\nmode=644\nowner=root\ngroup=root\n"
    f"sha1={hashlib.sha1(_FILE).hexdigest()}\n{DATA_MARKER}\n{base64.b64encode(_FILE).decode()}\n",
    "",
)
ANSWERS: dict[str, list[CommandOutput]] = {
    "replace": [_READ],
    "slurp": [_READ],
    "fetch": [_READ],
    "copy": [CommandOutput(0, "D 0 1 1\nD 1 1 1\nF 0 1 1\nF 1 0 1\n", "")],  # a folder
    "find": [],  # the walk's format is find-specific: its first step is checked
}


def overlays(module: Module) -> Iterator[dict[str, Any]]:
    """One changed argument at a time: the schema's enums, booleans both ways, VALUES."""
    yield {}
    for key, prop in module.schema.get("properties", {}).items():
        if not isinstance(prop, Mapping):
            continue
        kinds = prop.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        for value in prop.get("enum", []):
            yield {key: value}
        if "boolean" in kinds:
            yield {key: True}
            yield {key: False}
        for value in VALUES.get(key, []):
            yield {key: value}


# A value that breaks any script that does not quote it: quotes, $(...), `...`, a backslash
# before a newline, sh operators, glob and brace characters, %s, a tilde.
HOSTILE = "a'b\"c$(touch /tmp/pwned)`id`\\\n;|&*?[x] {y} %s ~z"
# Arguments that are shell code by design: the user's line reaches sh as written.
SHELL_CODE = {("raw", "cmd")}


def hostile_overlays(module: Module) -> Iterator[dict[str, Any]]:
    """HOSTILE in each free-text argument, one at a time: every user value goes through
    quote(), so the script must still parse."""
    for key, prop in module.schema.get("properties", {}).items():
        if not isinstance(prop, Mapping) or "enum" in prop or (module.name, key) in SHELL_CODE:
            continue
        kinds = prop.get("type")
        if "string" in (kinds if isinstance(kinds, list) else [kinds]):
            yield {key: HOSTILE}


def steps(module: Module, args: Mapping[str, Any], ctx: ModuleContext) -> Iterator[RemoteStep]:
    """Every step the module builds for these arguments, conversations driven by ANSWERS."""
    conversation = module.converse(args, ctx)
    if conversation is None:
        step = module.build(args, ctx)
        if step is not None:
            yield step
        return
    answers = list(ANSWERS.get(module.name, []))
    try:
        step = next(conversation)
        while True:
            yield step
            if not answers:
                return
            step = conversation.send(answers.pop(0))
    except StopIteration:
        return


def bases(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(arguments, host vars) the matrix starts from: BASE_ARGS, then every data-driven
    case of the module (tests/data/module_cases), so a module with cases is in the matrix."""
    found: list[tuple[dict[str, Any], dict[str, Any]]] = [(a, {}) for a in BASE_ARGS.get(name, [])]
    for path in sorted((CASES / name).glob("*.json")):
        case = json.loads(path.read_text())
        found.append((case["args"], case.get("context", {}).get("vars", {})))
    return found


def all_scripts() -> tuple[dict[str, tuple[str, str]], dict[str, int]]:
    """{sha1 of script: (where it came from, script)} and scripts per module."""
    found: dict[str, tuple[str, str]] = {}
    per_module: dict[str, int] = {}
    for name in MODULES:
        if name in CONTROLLER_ONLY:
            continue
        module = get_module(name)
        assert module is not None
        count = 0
        for base, host_vars in bases(name):
            contexts = [
                replace(context(check, diff), vars={**context(check, diff).vars, **host_vars})
                for check in (False, True)
                for diff in (False, True)
            ]
            # hostile values under one context (check off, --diff on): it is the quoting
            # that is tested, and that does not change with the context
            runs = [(overlay, contexts) for overlay in overlays(module)]
            runs += [(overlay, contexts[1:2]) for overlay in hostile_overlays(module)]
            for overlay, some_contexts in runs:
                try:
                    args = prepare_args(name, {**base, **overlay}, module.schema, HERE)
                except InputError:
                    continue  # a combination the schema refuses
                for ctx in some_contexts:
                    try:
                        built = list(steps(module, args, ctx))
                    except (InputError, ValueError):
                        continue  # arguments the module refuses: no script to check
                    for step in built:
                        count += 1
                        digest = hashlib.sha1(step.script.encode()).hexdigest()
                        where = f"{name} {args} check={ctx.check} diff={ctx.diff}"
                        found.setdefault(digest, (where, step.script))
        per_module[name] = count
    return found, per_module


def sh_syntax_error(script: str, shell: str = "sh") -> str:
    """`sh -n`'s complaint about a script given on stdin, or "" when it parses."""
    done = subprocess.run(
        [shell, "-n"], input=script, capture_output=True, text=True, timeout=30, check=False
    )
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def test_every_remote_module_is_in_the_matrix() -> None:
    remote = {name for name in MODULES if name not in CONTROLLER_ONLY}
    assert sorted(name for name in remote if not bases(name)) == []
    assert sorted(set(BASE_ARGS) - remote) == []
    for name in CONTROLLER_ONLY:
        module = get_module(name)
        assert module is not None and module.local, f"{name} is not a controller-only module"


def test_every_built_script_is_posix_sh() -> None:
    scripts, per_module = all_scripts()
    assert [name for name, count in per_module.items() if count == 0] == []
    assert len(scripts) > 1000, f"only {len(scripts)} distinct scripts built"
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        errors = list(pool.map(lambda item: (item[0], sh_syntax_error(item[1])), scripts.values()))
    bad = [f"{where}: {error}" for where, error in errors if error]
    assert bad == []


if __name__ == "__main__":  # pragma: no cover - a helper to look at the matrix by hand
    found, counts = all_scripts()
    print(len(found), counts)
    pytest.main([__file__, "-q"])
