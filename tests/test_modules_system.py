"""command, shell, apt, package, service, user, group, wait_for, facts, ping on real lab hosts.

Each module: the first run changes, the second changes nothing, check mode changes nothing,
the host is checked with a separate command, and every task costs exactly one remote command
(counted through ConnectOptions.on_command). Hosts: h1 commands/facts, h2 packages, h3 users,
the last host services.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from machineroom.connection import CommandResult, Connection, ConnectOptions, open_connection
from machineroom.executor.step import run_module
from machineroom.inventory.model import Host
from machineroom.lab import Lab
from machineroom.modules import get_module
from machineroom.modules.base import ModuleContext, Outcome

HOSTILE = 'it\'s "quoted"; $(touch /tmp/pwned) `id` | & > /tmp/x\nsecond line \\ end'


class Counted:
    """A lab connection that counts its remote commands."""

    def __init__(self, lab: Lab, index: int) -> None:
        self.calls: list[str] = []
        target = lab.hosts[index]
        host = Host(id=target.name, host=target.address, port=target.port, user="root",
                    ssh_key=lab.key)  # fmt: skip
        options = ConnectOptions(
            known_hosts_files=(lab.known_hosts,), connect_timeout=10, on_command=self._hook
        )
        self.name = target.name
        self.conn: Connection = open_connection(host, options)

    def _hook(self, host: Host, result: CommandResult) -> None:
        self.calls.append(result.command)

    def run(self, module: str, args: dict[str, Any], check: bool = False) -> Outcome:
        """Run a module; assert it cost at most one remote command (zero for local work)."""
        before = len(self.calls)
        mod = get_module(module)
        assert mod is not None
        outcome = run_module(mod, args, ModuleContext(host_id=self.name, check=check), self.conn)
        assert len(self.calls) - before <= 1, self.calls[before:]
        self.last_count = len(self.calls) - before
        return outcome

    def sh(self, command: str) -> CommandResult:
        """A separate command to check the host's state (not counted as a task)."""
        return self.conn.run(command)


@pytest.fixture(scope="module")
def hosts(lab: Lab) -> Iterator[dict[str, Counted]]:
    opened = {
        "cmd": Counted(lab, 0),
        "pkg": Counted(lab, 1),
        "user": Counted(lab, 2),
        "svc": Counted(lab, len(lab.hosts) - 2),  # the last host is the docker test's
    }
    yield opened
    for counted in opened.values():
        counted.conn.close()


# ---------------------------------------------------------------------------- command, shell


def test_command_runs_and_reports(hosts: dict[str, Counted]) -> None:
    h = hosts["cmd"]
    out = h.run("command", {"cmd": "echo hello world"})
    assert h.last_count == 1
    assert out.status == "changed"
    r = out.result
    assert r["rc"] == 0 and r["stdout"] == "hello world" and r["stderr"] == ""
    assert r["stdout_lines"] == ["hello world"] and r["cmd"] == ["echo", "hello", "world"]
    assert r["start"] and r["end"] and r["delta"].startswith("0:00:0")


def test_command_passes_hostile_words_literally(hosts: dict[str, Counted]) -> None:
    h = hosts["cmd"]
    h.sh("rm -f /tmp/pwned /tmp/x")
    words = [HOSTILE, "a;b", "$(id)", "*", "'", '"']
    out = h.run("command", {"argv": ["printf", "%s\\n", *words]})
    assert out.status == "changed"
    assert out.result["stdout"] == "\n".join(words)
    # The same through the free-form string: shlex words, no shell features.
    line = "printf '%s|' " + " ".join(shlex.quote(w) for w in words) + " ; echo $(id) > /tmp/x"
    out = h.run("command", {"cmd": line})
    assert out.result["stdout"] == "|".join(words) + "|;|echo|$(id)|>|/tmp/x|"
    assert h.sh("ls /tmp/pwned /tmp/x 2>/dev/null; true").stdout == ""


def test_command_failure_and_stdin(hosts: dict[str, Counted]) -> None:
    h = hosts["cmd"]
    out = h.run("command", {"cmd": "ls /nonexistent-dir"})
    assert out.status == "failed" and out.result["rc"] == 2
    assert "nonexistent" in out.result["stderr"] and out.msg == "non-zero return code"
    out = h.run("command", {"cmd": "cat", "stdin": HOSTILE})
    assert out.result["stdout"] == HOSTILE
    out = h.run("command", {"cmd": "pwd", "chdir": "/etc"})
    assert out.result["stdout"] == "/etc"
    out = h.run("command", {"cmd": "pwd", "chdir": "/no/such/dir"})
    assert out.status == "failed"


def test_command_creates_removes_and_check(hosts: dict[str, Counted]) -> None:
    h = hosts["cmd"]
    h.sh("rm -rf /tmp/mr-cr && mkdir /tmp/mr-cr")
    args = {"cmd": "touch made.txt", "chdir": "/tmp/mr-cr", "creates": "made*.txt"}
    check = h.run("command", args, check=True)
    assert check.status == "changed" and "would have run" in check.msg
    assert h.sh("ls /tmp/mr-cr").stdout == ""
    first = h.run("command", args)
    assert first.status == "changed" and h.sh("ls /tmp/mr-cr").stdout == "made.txt\n"
    second = h.run("command", args)
    assert second.status == "ok" and "made*.txt exists" in second.msg
    gone = h.run("command", {"cmd": "rm /tmp/mr-cr/made.txt", "removes": "/tmp/mr-cr/made.txt"})
    assert gone.status == "changed"
    again = h.run("command", {"cmd": "rm /tmp/mr-cr/made.txt", "removes": "/tmp/mr-cr/made.txt"})
    assert again.status == "ok" and "does not exist" in again.msg
    # A glob-shaped hostile value is matched, never executed.
    out = h.run("command", {"cmd": "true", "creates": "/tmp/$(touch /tmp/pwned)*"})
    assert out.status == "changed" and h.sh("ls /tmp/pwned 2>/dev/null; true").stdout == ""
    # Check mode without creates/removes: nothing is sent at all.
    skipped = h.run("shell", {"cmd": "touch /tmp/mr-cr/no"}, check=True)
    assert h.last_count == 0 and skipped.status == "ok" and skipped.msg == "skipped in check mode"
    assert h.sh("ls /tmp/mr-cr").stdout == ""


def test_shell_uses_the_shell(hosts: dict[str, Counted]) -> None:
    h = hosts["cmd"]
    out = h.run("shell", {"cmd": "echo one | tr a-z A-Z; echo two >&2\nexit 0"})
    assert out.status == "changed"
    assert out.result["stdout"] == "ONE" and out.result["stderr"] == "two"
    out = h.run("shell", {"cmd": "echo ${BASH_VERSION:+bash}", "executable": "/bin/bash"})
    assert out.result["stdout"] == "bash"
    out = h.run("shell", {"cmd": 'printf "%s" "$(cat)"', "stdin": HOSTILE})
    assert out.result["stdout"] == HOSTILE
    out = h.run("shell", {"cmd": "exit 3"})
    assert out.status == "failed" and out.result["rc"] == 3


# ---------------------------------------------------------------------------- facts, ping


def test_facts_in_one_call(hosts: dict[str, Counted]) -> None:
    h = hosts["cmd"]
    out = h.run("facts", {})
    assert h.last_count == 1 and out.status == "ok"
    f = out.facts
    nested = f["facts"]
    assert f["ansible_hostname"] == h.name == nested["hostname"]
    assert f["ansible_distribution"] == "Debian" and f["ansible_os_family"] == "Debian"
    assert f["ansible_distribution_major_version"] == "12"
    assert f["ansible_memtotal_mb"] > 0 and nested["memory"]["available_mb"] > 0
    assert f["ansible_processor_vcpus"] >= 1
    assert f["ansible_architecture"] == h.sh("uname -m").stdout.strip()
    assert f["ansible_kernel"] == h.sh("uname -r").stdout.strip()
    assert any(d["mount"] == "/" and d["size_mb"] > 0 for d in nested["disks"])
    assert nested["python"] and nested["python"].startswith("3.")
    assert nested["init"] != "systemd" and f["ansible_pkg_mgr"] == "apt"
    assert f["ansible_user_id"] == "root" and f["ansible_user_dir"] == "/root"
    assert out.result == f
    assert h.run("setup", {"filter": "ansible_dist*"}).facts["ansible_distribution"] == "Debian"


def test_ping(hosts: dict[str, Counted]) -> None:
    out = hosts["cmd"].run("ping", {})
    assert hosts["cmd"].last_count == 1 and out.status == "ok" and out.result == {"ping": "pong"}


# ---------------------------------------------------------------------------- wait_for


def test_wait_for_port_and_path(hosts: dict[str, Counted], lab: Lab) -> None:
    h = hosts["cmd"]
    address = lab.hosts[0].address
    out = h.run("wait_for", {"host": address, "port": 22, "timeout": 5})
    assert out.status == "ok" and out.result["elapsed"] == 0
    out = h.run("wait_for", {"host": address, "port": 9, "state": "stopped", "timeout": 5})
    assert out.status == "ok"
    out = h.run("wait_for", {"host": address, "port": 9, "timeout": 2, "sleep": 0.5})
    assert out.status == "failed" and out.result["elapsed"] >= 2 and "Timeout" in out.msg
    h.sh("rm -f /tmp/mr-wf; (sleep 1; echo 'ready: yes' > /tmp/mr-wf) >/dev/null 2>&1 &")
    out = h.run("wait_for", {"path": "/tmp/mr-wf", "search_regex": "ready: y.s", "timeout": 10})
    assert out.status == "ok" and 0 <= out.result["elapsed"] <= 5
    out = h.run("wait_for", {"path": "/tmp/mr-wf-none", "state": "absent", "timeout": 3})
    assert out.status == "ok"


# ---------------------------------------------------------------------------- apt, package


def dpkg_version(h: Counted, name: str) -> str:
    return h.sh(f"dpkg-query -W -f='${{db:Status-Abbrev}}${{Version}}' {name} 2>/dev/null").stdout


def test_apt_present_absent(hosts: dict[str, Counted]) -> None:
    h = hosts["pkg"]
    args = {"name": ["sl", "tree=2.1*"], "state": "present"}
    check = h.run("apt", args, check=True)
    assert check.status == "changed" and "would install" in check.msg
    assert dpkg_version(h, "sl") == ""
    first = h.run("apt", args)
    assert first.status == "changed", first
    assert first.result["changes"]["install"] == ["sl", "tree=2.1*"]
    assert dpkg_version(h, "sl").startswith("ii") and dpkg_version(h, "tree").startswith("ii")
    second = h.run("apt", args)
    assert second.status == "ok" and "already" in second.msg
    gone = {"name": "sl", "state": "absent", "purge": True}
    assert h.run("apt", gone, check=True).status == "changed"
    assert dpkg_version(h, "sl").startswith("ii")
    assert h.run("apt", gone).status == "changed" and dpkg_version(h, "sl") == ""
    assert h.run("apt", gone).status == "ok"
    # A fresh cache is left alone (no apt-get update): the lists are newer than a day.
    out = h.run("apt", {"update_cache": True, "cache_valid_time": 10**9})
    assert out.status == "ok" and out.result["cache_updated"] is False


def test_apt_latest_upgrades(hosts: dict[str, Counted]) -> None:
    h = hosts["pkg"]
    sim = h.sh("apt-get -s install jq | awk '$1==\"Inst\"{print $2}'").stdout.split()
    if "jq" not in sim:
        pytest.skip("jq is already the newest version here")
    before = dpkg_version(h, "jq")
    check = h.run("apt", {"name": "jq", "state": "latest"}, check=True)
    assert check.status == "changed" and "jq" in check.result["changes"]["install"]
    assert dpkg_version(h, "jq") == before
    assert h.run("apt", {"name": "jq", "state": "latest"}).status == "changed"
    assert dpkg_version(h, "jq") != before
    assert h.run("apt", {"name": "jq", "state": "latest"}).status == "ok"


def test_package_picks_apt(hosts: dict[str, Counted]) -> None:
    h = hosts["pkg"]
    h.sh("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q tree >/dev/null 2>&1")
    args = {"name": "tree", "state": "absent"}
    assert h.run("package", args).status == "ok"
    args["state"] = "present"
    assert h.run("package", args, check=True).status == "changed"
    assert not dpkg_version(h, "tree").startswith("ii")
    assert h.run("package", args).status == "changed"
    assert dpkg_version(h, "tree").startswith("ii")
    assert h.run("package", args).status == "ok"
    bad = h.run("package", {"name": "no-such-package-xyz"})
    assert bad.status == "failed" and bad.msg


# ---------------------------------------------------------------------------- service

DUMMY = r"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          mrdummy
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: a machineroom test service
### END INIT INFO
PID=/run/mrdummy.pid
case "$1" in
  start) start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PID \
           --exec /bin/sleep -- 100000 ;;
  stop) start-stop-daemon --stop --quiet --pidfile $PID --retry 5 --oknodo; rm -f $PID ;;
  restart) "$0" stop; "$0" start ;;
  reload) echo reload >> /tmp/mrdummy.log ;;
  status) start-stop-daemon --status --pidfile $PID ;;
  *) exit 3 ;;
esac
"""


def test_service_state_and_enabled(hosts: dict[str, Counted]) -> None:
    h = hosts["svc"]
    h.conn.run(
        "cat > /etc/init.d/mrdummy && chmod 755 /etc/init.d/mrdummy && rm -f /tmp/mrdummy.log",
        stdin=DUMMY.encode(),
    )

    def running() -> bool:
        return h.sh("/etc/init.d/mrdummy status").exit_code == 0

    started = {"name": "mrdummy", "state": "started", "enabled": True}
    check = h.run("service", started, check=True)
    assert check.status == "changed" and "would" in check.msg and not running()
    assert h.sh("ls /etc/rc2.d").stdout.count("mrdummy") == 0
    first = h.run("service", started)
    assert first.status == "changed" and running(), first
    assert "S01mrdummy" in h.sh("ls /etc/rc2.d").stdout
    second = h.run("service", started)
    assert second.status == "ok" and "already running" in second.msg
    reload = h.run("service", {"name": "mrdummy", "state": "reloaded"})
    assert reload.status == "changed" and h.sh("cat /tmp/mrdummy.log").stdout == "reload\n"
    pid = h.sh("cat /run/mrdummy.pid").stdout
    assert h.run("service", {"name": "mrdummy", "state": "restarted"}).status == "changed"
    assert running() and h.sh("cat /run/mrdummy.pid").stdout != pid
    stopped = {"name": "mrdummy", "state": "stopped", "enabled": False}
    assert h.run("service", stopped, check=True).status == "changed" and running()
    assert h.run("service", stopped).status == "changed" and not running()
    assert "K01mrdummy" in h.sh("ls /etc/rc2.d").stdout
    assert h.run("service", stopped).status == "ok"
    # sshd of the host is seen as running: nothing to do, and it keeps running.
    assert h.run("service", {"name": "ssh", "state": "started"}).status == "ok"
    missing = h.run("service", {"name": "no-such-svc", "state": "started"})
    assert missing.status == "failed" and "could not find" in missing.msg


# ---------------------------------------------------------------------------- user, group


def test_user_and_group(hosts: dict[str, Counted]) -> None:
    h = hosts["user"]
    comment = 'it\'s "Mr"; $(touch /tmp/pwned) `id` & \\ back'
    assert h.run("group", {"name": "mrteam", "gid": 4100}).status == "changed"
    assert h.sh("getent group mrteam").stdout == "mrteam:x:4100:\n"
    assert h.run("group", {"name": "mrteam", "gid": 4100}).status == "ok"
    assert h.run("group", {"name": "mrteam", "gid": 4101}, check=True).status == "changed"
    assert h.run("group", {"name": "mrteam", "gid": 4101}).status == "changed"
    assert h.sh("getent group mrteam").stdout == "mrteam:x:4101:\n"

    user = {
        "name": "mruser",
        "uid": 4200,
        "comment": comment,
        "shell": "/bin/bash",
        "groups": ["mrteam"],
        "password": "$6$salt$hashhashhash",
    }
    check = h.run("user", user, check=True)
    assert check.status == "changed" and "would be created" in check.msg
    assert h.sh("getent passwd mruser").exit_code == 2
    first = h.run("user", user)
    assert first.status == "changed", first
    entry = h.sh("getent passwd mruser").stdout.strip().split(":")
    assert entry[2] == "4200" and entry[4] == comment and entry[6] == "/bin/bash"
    assert h.sh("test -d /home/mruser").exit_code == 0
    assert h.sh("id -Gn mruser").stdout.split() == ["mruser", "mrteam"]
    assert h.sh("getent shadow mruser | cut -d: -f2").stdout.strip() == "$6$salt$hashhashhash"
    assert h.sh("ls /tmp/pwned 2>/dev/null; true").stdout == ""
    second = h.run("user", user)
    assert second.status == "ok" and "already" in second.msg

    changed = {**user, "shell": "/bin/sh", "groups": ["users"], "append": True}
    check = h.run("user", changed, check=True)
    assert check.status == "changed" and "groups" in check.msg and "shell" in check.msg
    assert h.sh("getent passwd mruser | cut -d: -f7").stdout == "/bin/bash\n"
    assert h.run("user", changed).status == "changed"
    assert h.sh("getent passwd mruser | cut -d: -f7").stdout == "/bin/sh\n"
    assert sorted(h.sh("id -Gn mruser").stdout.split()) == ["mrteam", "mruser", "users"]
    assert h.run("user", changed).status == "ok"
    # Without append the supplementary groups are replaced.
    replace = {"name": "mruser", "groups": ["users"]}
    assert h.run("user", replace).status == "changed"
    assert sorted(h.sh("id -Gn mruser").stdout.split()) == ["mruser", "users"]
    assert h.run("user", replace).status == "ok"
    # A newline cannot live in /etc/passwd: useradd refuses it, nothing else happens.
    bad = h.run("user", {"name": "mruser", "comment": "two\nlines"})
    assert bad.status == "failed"
    assert h.sh("getent passwd mruser").stdout.strip().split(":")[4] == comment

    gone = {"name": "mruser", "state": "absent", "remove": True}
    assert h.run("user", gone, check=True).status == "changed"
    assert h.sh("getent passwd mruser").exit_code == 0
    assert h.run("user", gone).status == "changed"
    assert h.sh("getent passwd mruser").exit_code == 2
    assert h.sh("test -d /home/mruser").exit_code == 1
    assert h.run("user", gone).status == "ok"
    assert h.run("group", {"name": "mrteam", "state": "absent"}).status == "changed"
    assert h.run("group", {"name": "mrteam", "state": "absent"}).status == "ok"
