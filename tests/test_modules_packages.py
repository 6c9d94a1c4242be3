"""apt's and package's Ansible arguments and package_facts on a real lab host (h27), offline.

The test builds its own packages (`dpkg-deb --build`: mr-hello 1.0 and 2.0, mr-other 1.0)
and serves them from two flat file repositories on the host, suites `stable-a` (1.0) and
`stable-b` (2.0). An apt.conf.d file points apt at those two only (the host's Debian lists
stay, unused), so `apt-get update` and installs need no network; teardown removes it.
Every module call is one remote command; state is checked with separate commands.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from machineroom.connection import Connection, ConnectOptions, open_connection
from machineroom.executor.step import run_module
from machineroom.inventory.model import Host
from machineroom.lab import Lab
from machineroom.modules import get_module
from machineroom.modules.base import ModuleContext, Outcome

APT_CONF = "/etc/apt/apt.conf.d/99mr-packages-test"
REPOS = {"/srv/mr-a": "stable-a", "/srv/mr-b": "stable-b"}


def build_deb(work: Path, name: str, version: str) -> Path:
    """A real, minimal .deb: one file holding its version."""
    root = work / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "share" / name).mkdir(parents=True)
    (root / "usr" / "share" / name / "VERSION").write_text(version + "\n")
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nSection: misc\n"
        "Maintainer: machineroom tests <tests@example.com>\nDescription: test package\n"
    )
    deb = work / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


class H:
    """h27 over one connection: modules (one remote command each) and plain commands."""

    def __init__(self, lab: Lab) -> None:
        target = lab.hosts[26]  # h27: package backends (tests/conftest.py)
        self.commands: list[str] = []
        host = Host(id=target.name, host=target.address, port=target.port, user="root",
                    ssh_key=lab.key)  # fmt: skip
        options = ConnectOptions(
            known_hosts_files=(lab.known_hosts,),
            connect_timeout=10,
            on_command=lambda _host, result: self.commands.append(result.command),
        )
        self.conn: Connection = open_connection(host, options)
        self.debs: dict[str, Path] = {}  # the packages built for the test, by file name

    def run(self, module: str, args: dict[str, Any], check: bool = False, **vars: Any) -> Outcome:
        before = len(self.commands)
        mod = get_module(module)
        assert mod is not None
        ctx = ModuleContext(host_id="h27", check=check, vars=vars)
        outcome = run_module(mod, args, ctx, self.conn)
        assert len(self.commands) - before == 1, self.commands[before:]
        return outcome

    def sh(self, command: str, stdin: bytes | None = None) -> str:
        result = self.conn.run(command, stdin=stdin)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    def version(self, name: str) -> str:
        """The installed version, "" when not installed."""
        out = self.conn.run(f"dpkg-query -W -f='${{db:Status-Abbrev}}${{Version}}' {name}")
        return out.stdout[3:] if out.stdout.startswith("ii") else ""


@pytest.fixture(scope="module")
def h(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[H]:
    work = tmp_path_factory.mktemp("debs")
    debs = {
        "a": [build_deb(work, "mr-hello", "1.0"), build_deb(work, "mr-other", "1.0")],
        "b": [build_deb(work, "mr-hello", "2.0")],
    }
    host = H(lab)
    host.debs = {deb.name: deb for group in debs.values() for deb in group}
    host.sh("dpkg --purge mr-hello mr-other >/dev/null 2>&1; rm -rf /srv/mr-a /srv/mr-b /tmp/mr-*")
    for (path, suite), key in zip(REPOS.items(), "ab", strict=True):
        host.sh(f"mkdir -p {path}")
        for deb in debs[key]:
            host.sh(f"cat > {path}/{deb.name}", stdin=deb.read_bytes())
        host.sh(
            f"cd {path} && dpkg-scanpackages . > Packages 2>/dev/null && "
            f"printf 'Suite: {suite}\\nCodename: {suite}\\n' > Release"
        )
    host.sh("cp /srv/mr-a/mr-hello_1.0_all.deb /tmp/mr-hello_1.0_all.deb")
    host.sh("cp /srv/mr-b/mr-hello_2.0_all.deb /tmp/mr-hello_2.0_all.deb")
    sources = "".join(f"deb [trusted=yes] file:{path} ./\\n" for path in REPOS)
    host.sh(
        f"printf '{sources}' > /etc/apt/mr-packages-test.list && printf '"
        'Dir::Etc::sourcelist "/etc/apt/mr-packages-test.list";\\n'
        'Dir::Etc::sourceparts "/nonexistent";\\nAPT::Get::List-Cleanup "false";\\n'
        f"' > {APT_CONF} && apt-get update -q >/dev/null 2>&1"
    )
    yield host
    host.sh(f"dpkg --purge mr-hello mr-other >/dev/null 2>&1; rm -f {APT_CONF}; true")
    host.conn.close()


def make_stale(h: H) -> int:
    """Lists two hours old; returns that mtime."""
    h.sh("rm -f /var/lib/apt/periodic/update-success-stamp")
    h.sh("touch -d '2 hours ago' /var/lib/apt/lists")
    return int(h.sh("stat -c %Y /var/lib/apt/lists"))


def test_cache_valid_time_and_cache_results(h: H) -> None:
    stale = make_stale(h)
    fresh_enough = {"update_cache": True, "cache_valid_time": 3 * 3600}
    out = h.run("apt", fresh_enough)
    assert out.status == "ok" and out.result["cache_updated"] is False
    assert out.result["cache_update_time"] == stale
    wanted = {"update_cache": True, "cache_valid_time": 3600}
    check = h.run("apt", wanted, check=True)
    assert check.status == "changed" and check.result["cache_updated"] is True
    assert int(h.sh("stat -c %Y /var/lib/apt/lists")) == stale  # check mode: no update
    out = h.run("apt", wanted)
    assert out.status == "changed" and out.result["cache_updated"] is True
    assert out.result["cache_update_time"] > stale
    again = h.run("apt", wanted)
    assert again.status == "ok" and again.result["cache_updated"] is False
    # cache_valid_time alone refreshes stale lists too, as in Ansible
    make_stale(h)
    assert h.run("apt", {"cache_valid_time": 60}).result["cache_updated"] is True


def test_package_passes_apt_arguments(h: H) -> None:
    make_stale(h)
    args = {"name": "mr-hello", "update_cache": True, "cache_valid_time": 600}
    args["default_release"] = "stable-a"
    check = h.run("package", args, check=True)
    assert check.status == "changed" and h.version("mr-hello") == ""
    first = h.run("package", args)
    assert first.status == "changed", first.msg
    assert first.result["cache_updated"] is True and h.version("mr-hello") == "1.0"
    second = h.run("package", args)
    assert second.status == "ok" and second.result["cache_updated"] is False
    # latest under default_release stays on stable-a's 1.0; without it, 2.0 from stable-b
    pinned = {"name": "mr-hello", "state": "latest", "default_release": "stable-a"}
    assert h.run("apt", pinned).status == "ok" and h.version("mr-hello") == "1.0"
    # only_upgrade: a package not installed stays not installed
    only = {"name": ["mr-other"], "state": "latest", "only_upgrade": True}
    assert h.run("apt", only).status == "ok" and h.version("mr-other") == ""
    # dnf's arguments on an apt host: refused on that host, naming them (as Ansible's apt)
    bad = h.run("package", {"name": "mr-hello", "enablerepo": "epel"})
    assert bad.status == "failed" and "unsupported parameters: enablerepo" in bad.msg
    wrong = h.run("package", {"name": "mr-hello", "use": "dnf"})
    assert wrong.status == "failed" and "no supported package manager" in wrong.msg


def test_upgrade_dist_and_autoremove_purge(h: H) -> None:
    h.run("apt", {"name": "mr-hello", "default_release": "stable-a"})
    assert h.version("mr-hello") == "1.0"
    check = h.run("apt", {"upgrade": "dist"}, check=True)
    assert check.status == "changed" and "mr-hello" in check.result["changes"]["upgrade"]
    assert h.version("mr-hello") == "1.0"
    assert h.run("apt", {"upgrade": "dist"}).status == "changed"
    assert h.version("mr-hello") == "2.0"
    assert h.run("apt", {"upgrade": "safe"}).status == "ok"
    gone = {"name": "mr-hello", "state": "absent", "purge": True}
    assert h.run("apt", gone, check=True).status == "changed" and h.version("mr-hello") == "2.0"
    assert h.run("apt", gone).status == "changed" and h.version("mr-hello") == ""
    assert h.run("apt", gone).status == "ok"


def test_deb_file_install_is_idempotent(h: H) -> None:
    one = {"deb": "/tmp/mr-hello_1.0_all.deb", "allow_downgrade": True}
    check = h.run("apt", one, check=True)
    assert check.status == "changed" and check.result["changes"]["install"] == ["mr-hello=1.0"]
    assert h.version("mr-hello") == ""
    assert h.run("apt", one).status == "changed" and h.version("mr-hello") == "1.0"
    assert h.sh("cat /usr/share/mr-hello/VERSION") == "1.0\n"
    assert h.run("apt", one).status == "ok"
    two = {"deb": "/tmp/mr-hello_2.0_all.deb"}
    assert h.run("apt", two).status == "changed" and h.version("mr-hello") == "2.0"
    assert h.run("apt", two).status == "ok"
    missing = h.run("apt", {"deb": "/tmp/mr-none.deb"})
    assert missing.status == "failed" and "deb file not found: /tmp/mr-none.deb" in missing.msg
    refused = h.run("apt", {"deb": "/tmp/mr-hello_2.0_all.deb", "state": "absent"})
    assert refused.status == "failed" and refused.msg == "deb only supports state=present"


def test_deb_from_a_url(h: H, tmp_path: Path) -> None:
    """A URL is downloaded on the host (curl or wget) to a temporary file, removed after."""
    (tmp_path / "mr-hello_1.0_all.deb").write_bytes(h.debs["mr-hello_1.0_all.deb"].read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/mr-hello_1.0_all.deb"
        args = {"deb": url, "allow_downgrade": True}
        check = h.run("apt", args, check=True)
        assert check.status == "changed" and h.version("mr-hello") != "1.0"
        assert h.run("apt", args).status == "changed" and h.version("mr-hello") == "1.0"
        assert h.run("apt", args).status == "ok"
        missing = h.run("apt", {"deb": url.replace("hello_1.0", "nothing")})
        assert missing.status == "failed" and "could not download" in missing.msg
    finally:
        server.shutdown()
        server.server_close()
    assert h.sh("ls /tmp | grep -c '^mr-deb-' || true").strip() == "0"


def test_build_dep_and_fixed_states_are_validated(h: H) -> None:
    # the test's repositories have no sources: apt-get build-dep refuses, and so do we
    out = h.run("apt", {"name": "mr-hello", "state": "build-dep"})
    assert out.status == "failed" and "deb-src" in out.msg, out.msg  # as apt-get says
    assert h.run("apt", {"state": "fixed"}).status == "ok"
    bad = h.run("apt", {"name": "mr-hello=1=2"})
    assert bad.status == "failed" and "invalid package spec" in bad.msg


def test_package_facts(h: H) -> None:
    h.run("apt", {"deb": "/tmp/mr-hello_2.0_all.deb"})
    out = h.run("package_facts", {}, ansible_facts={"distribution": "Debian"})
    assert out.status == "ok"
    packages = out.facts["ansible_facts"]["packages"]
    assert out.facts["ansible_facts"]["distribution"] == "Debian"  # merged, not replaced
    assert out.facts["packages"] is packages and out.result["ansible_facts"]["packages"]
    assert packages["mr-hello"] == [
        {"name": "mr-hello", "version": "2.0", "arch": "all", "category": "misc", "source": "apt"}
    ]
    bash = h.sh("dpkg-query -W -f='${Version} ${Architecture}' bash").split()
    assert [packages["bash"][0][k] for k in ("version", "arch")] == bash
    count = int(h.sh("dpkg-query -W -f='${db:Status-Abbrev}\\n' | grep -c '^.[^nc]'"))
    assert sum(len(v) for v in packages.values()) == count
    assert h.run("package_facts", {"manager": "dpkg"}).facts["packages"] == packages
    none = h.run("package_facts", {"manager": ["rpm"]})
    assert none.status == "failed" and "Could not detect a supported package manager" in none.msg
    bad = h.run("package_facts", {"manager": "yumm"})
    assert bad.status == "failed" and "Unsupported package managers requested: yumm" in bad.msg
