"""The connection registry and the wrapper every connection type shares (become, timeouts,
stop, auditing, no_log hiding): through the local transport, a tiny test transport, and SSH
on one lab host (h7, a connection-test host: nothing on it is changed but a marker file of
this test's own name in /tmp)."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from machineroom.connection import (
    Become,
    CommandResult,
    ConnectionPool,
    ConnectOptions,
    LocalConnection,
    ShellConnection,
    UnknownConnectionType,
    connection_types,
    hidden_output,
    open_connection,
    register,
    unregister,
)
from machineroom.connection.command import (
    HIDDEN,
    DeadlinePassed,
    Exited,
    hide_output,
    show_output,
)
from machineroom.connection.output import Stdin
from machineroom.connection.registry import connection_factory, resolve_type
from machineroom.errors import CommandTimeout, InputError, Interrupted, Location
from machineroom.inventory.model import Host, TunnelProfile
from machineroom.lab import Lab
from tests.clirun import machineroom

LAB_HOST = 6  # h7


class Audit:
    """An on_command hook that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, CommandResult]] = []

    def __call__(self, host: Host, result: CommandResult) -> None:
        self.seen.append((host.id, result))

    def commands(self) -> list[str]:
        return [result.command for _, result in self.seen]


class PipeConnection(ShellConnection):
    """A test transport: `sh -c` through subprocess.run, nothing else. Everything else
    (become, tags, timeouts, the audit) is the shared wrapper's."""

    opened = 0

    def open(self) -> None:
        PipeConnection.opened += 1

    def is_alive(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def exec_command(
        self, wire: str, prefix: bytes, stdin: Stdin, timeout: float | None, tag: str | None
    ) -> Exited:
        assert stdin is None or isinstance(stdin, bytes)
        data = prefix + (stdin or b"")
        try:
            done = subprocess.run(
                ["sh", "-c", wire], input=data, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise DeadlinePassed from None
        return Exited(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture
def pipe_type() -> Iterator[str]:
    def make(host: Host, options: ConnectOptions, tunnels: Mapping[str, TunnelProfile]) -> Any:
        return PipeConnection(host, options)

    register("pipe", make, aliases=("pipe-alias",))
    try:
        yield "pipe"
    finally:
        unregister("pipe")


def local_host(**kw: Any) -> Host:
    return Host(id="workstation", host="localhost", connection="local", **kw)


# ---------------------------------------------------------------------------- registry


def test_registry_resolves_ssh_local_and_ansible_aliases() -> None:
    assert {"ssh", "local", "paramiko", "smart"} <= set(connection_types())
    assert resolve_type("ssh") == "ssh" and resolve_type("local") == "local"
    assert resolve_type("paramiko") == "ssh" and resolve_type("smart") == "ssh"
    assert resolve_type("docker") is None
    made = connection_factory(local_host())(local_host(), ConnectOptions(), {})
    assert isinstance(made, LocalConnection)
    from machineroom.connection.ssh import SSHConnection

    ssh_host = Host(id="web", host="192.0.2.1", connection="smart")
    assert isinstance(connection_factory(ssh_host)(ssh_host, ConnectOptions(), {}), SSHConnection)


def test_unknown_type_names_host_value_and_known_types() -> None:
    where = Location("inventory.yml", 4, 7)
    host = Host(
        id="box", host="192.0.2.1", connection="telnet", field_locations={"connection": where}
    )
    with pytest.raises(UnknownConnectionType) as caught:
        open_connection(host)
    error = caught.value
    assert isinstance(error, InputError)
    message = str(error)
    assert message.startswith("inventory.yml:4:7: host box: unknown connection type 'telnet'")
    assert "expected one of local, sim, ssh, paramiko, smart" in message
    with ConnectionPool() as pool, pytest.raises(UnknownConnectionType, match="'telnet'"):
        pool.run(host, "true")


def test_a_registered_type_is_used_by_the_pool(pipe_type: str) -> None:
    audit = Audit()
    host = Host(id="p1", host="nowhere", connection=pipe_type)
    aliased = Host(id="p2", host="nowhere", connection="pipe-alias")
    with ConnectionPool(ConnectOptions(on_command=audit)) as pool:
        result = pool.run(host, "cat; echo $MACHINEROOM_RUN | wc -c", stdin=b"in\n")
        assert (result.exit_code, result.stdout) == (0, "in\n17\n")  # tagged: 16 hex + \n
        assert isinstance(pool.get(aliased), PipeConnection)
        assert pool.run(aliased, "exit 3").exit_code == 3
        with pytest.raises(CommandTimeout):
            pool.run(host, "sleep 5", timeout=0.2)
    assert "pipe" in connection_types()
    # the wrapper reported every command, the timeout and its kill too
    assert audit.commands()[:2] == ["cat; echo $MACHINEROOM_RUN | wc -c", "exit 3"]
    assert audit.seen[2][1].stderr == "timed out after 0.2s"
    assert audit.commands()[3] == "(kill the timed-out command)"
    unregister(pipe_type)
    with pytest.raises(UnknownConnectionType):
        open_connection(host)


def test_a_fake_factory_needs_no_shell_connection() -> None:
    """Anything with the Connection protocol registers (the executor tests' fake)."""
    ran: list[str] = []

    class Fake:
        def __init__(self, host: Host) -> None:
            self.host = host

        def open(self) -> None:
            pass

        def run(self, command: str, **kw: Any) -> CommandResult:
            ran.append(command)
            return CommandResult(command, 0, "faked\n", "", 0.0)

        def is_alive(self) -> bool:
            return True

        def close(self) -> None:
            pass

    register("fake", lambda host, options, tunnels: Fake(host))
    try:
        with ConnectionPool() as pool:
            host = Host(id="f", host="f", connection="fake")
            assert pool.run(host, "uptime").stdout == "faked\n"
    finally:
        unregister("fake")
    assert ran == ["uptime"]


# ---------------------------------------------------------------------------- the wrapper, local


def test_local_timeout_kills_the_group_and_is_audited(tmp_path: Path) -> None:
    audit = Audit()
    conn = open_connection(local_host(), ConnectOptions(on_command=audit, command_timeout=0.3))
    marker = tmp_path / "survived"
    start = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"timed out after 0.3s"):
        conn.run(f"(sleep 1; touch {marker}) & sleep 30")  # the options' timeout applies
    assert time.monotonic() - start < 2
    time.sleep(1.2)
    assert not marker.exists()
    assert audit.seen[0][1].exit_code == -1
    assert audit.seen[0][1].stderr == "timed out after 0.3s"


def test_local_host_command_timeout_var_applies() -> None:
    conn = open_connection(local_host(vars={"command_timeout": "0.2"}), ConnectOptions())
    with pytest.raises(CommandTimeout, match=r"after 0.2s"):
        conn.run("sleep 5")


@pytest.mark.skipif(os.geteuid() != 0, reason="become to another user needs root here")
def test_local_become_runs_as_the_user_with_the_real_stdin() -> None:
    audit = Audit()
    conn = open_connection(local_host(), ConnectOptions(on_command=audit))
    result = conn.run("id -un; cat", stdin=b"data\n", become=Become("nobody"))
    assert result.stdout == "nobody\ndata\n"
    assert result.become_user == "nobody"
    # the probe ran once, as the login user, and is audited like any command
    assert any("sudo -k -n -u nobody -- true" in c for c in audit.commands())
    assert audit.seen[-1][1].command == "id -un; cat"


def test_local_stop_kills_running_commands_and_refuses_new_ones() -> None:
    conn = open_connection(local_host(), ConnectOptions())
    caught: list[BaseException] = []

    def long() -> None:
        try:
            conn.run("sleep 30")
        except Interrupted as e:
            caught.append(e)

    worker = threading.Thread(target=long)
    worker.start()
    time.sleep(0.3)
    start = time.monotonic()
    assert isinstance(conn, ShellConnection)
    conn.stop_commands()
    worker.join(5)
    assert time.monotonic() - start < 3
    assert caught and "command killed" in str(caught[0])
    with pytest.raises(Interrupted, match="not started"):
        conn.run("true")


def test_no_log_commands_are_audited_as_hidden() -> None:
    audit = Audit()
    host = local_host()
    with ConnectionPool(ConnectOptions(on_command=audit)) as pool:
        hidden = pool.run(host, "echo secret-output; echo err >&2", no_log=True)
        assert hidden.stdout == "secret-output\n"  # the caller gets the real result
        pool.hide_output(host.id)  # what the executor does around a no_log task
        try:
            pool.get(host).run("echo also-hidden")
            other: list[bool] = []  # another worker thread is not hidden
            thread = threading.Thread(target=lambda: other.append(_audited_plain(pool, audit)))
            thread.start()
            thread.join()
        finally:
            pool.show_output(host.id)
        pool.run(host, "echo shown")
        with hidden_output():
            pool.run(host, "echo in-block")
    assert other == [True]
    rows = {r.command: r for _, r in audit.seen}
    assert [r.stdout for _, r in audit.seen if r.command == HIDDEN] == [HIDDEN, HIDDEN, HIDDEN]
    assert all(r.stderr == "" for _, r in audit.seen if r.command == HIDDEN)
    assert rows["echo shown"].stdout == "shown\n"
    assert not any("secret-output" in r.stdout or "also-hidden" in r.stdout for r in rows.values())
    show_output("never-hidden")  # harmless
    hide_output("x")
    show_output("x")


def _audited_plain(pool: ConnectionPool, audit: Audit) -> bool:
    pool.run(local_host(), "echo other-thread")
    return audit.seen[-1][1].command == "echo other-thread"


# ---------------------------------------------------------------------------- the wrapper, ssh


@pytest.fixture
def ssh_host(lab: Lab) -> Host:
    target = lab.hosts[LAB_HOST]
    return Host(
        id=target.name,
        host=target.address,
        port=target.port,
        user="deploy",
        ssh_key=lab.key,
        vars={"command_timeout": 20},
    )


def test_ssh_become_and_timeout_through_the_wrapper(lab: Lab, ssh_host: Host) -> None:
    audit = Audit()
    options = ConnectOptions(known_hosts_files=(lab.known_hosts,), on_command=audit)
    conn = open_connection(ssh_host, options)
    marker = "/tmp/mr-test-connection-registry"
    try:
        assert conn.run("id -un").stdout == "deploy\n"
        became = conn.run("id -un; cat", stdin=b"in\n", become=Become("root"))
        assert (became.stdout, became.become_user) == ("root\nin\n", "root")
        conn.run(f"rm -f {marker}", become=Become("root"))
        with pytest.raises(CommandTimeout, match=r"after 0.5s"):
            conn.run(
                f"(sleep 2; touch {shlex.quote(marker)}) & sleep 30",
                timeout=0.5,
                become=Become("root"),
            )
        time.sleep(2.5)  # the tag killed the backgrounded child too, as root
        assert conn.run(f"test -e {marker}; echo $?").stdout == "1\n"
        with hidden_output():
            conn.run("echo hidden-on-ssh")
    finally:
        conn.close()
    commands = audit.commands()
    assert commands[0] == "id -un"
    assert "(kill the timed-out command)" in commands
    assert commands[-1] == HIDDEN and audit.seen[-1][1].stdout == HIDDEN


def test_ssh_connection_settings_reach_the_transport(lab: Lab, ssh_host: Host) -> None:
    host = Host(
        id=ssh_host.id,
        host=ssh_host.host,
        port=ssh_host.port,
        user="deploy",
        ssh_key=lab.key,
        vars={"connect_timeout": "7", "ansible_ssh_extra_args": "-o X=1", "other": 1},
    )
    settings = host.connection_settings
    assert (settings.type, settings.address, settings.connect_timeout) == ("ssh", host.host, 7.0)
    assert settings.for_transport("ssh") == {"extra_args": "-o X=1"}
    assert "other" not in settings.vars
    from machineroom.connection.ssh import SSHConnection

    conn = SSHConnection(host, ConnectOptions(known_hosts_files=(lab.known_hosts,)))
    assert conn.connect_timeout == 7.0


def test_apply_audits_a_no_log_task_as_hidden(tmp_path: Path) -> None:
    """End to end: the executor hides a no_log task's commands in the audit log (the
    wrapper does it, not the CLI), and only that task's."""
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / "inventory.yml").write_text(
        "all:\n  hosts:\n    here: {host: localhost, user: root, connection: local}\n"
    )
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - shell: echo hush-{{ 6 * 7 }}\n      no_log: true\n"
        "    - shell: echo said-aloud\n"
    )
    out = machineroom("apply", "site.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    with sqlite3.connect(tmp_path / ".machineroom" / "state.db") as db:
        rows = db.execute(
            "SELECT command, stdout_tail, stderr_tail FROM audit_log ORDER BY id"
        ).fetchall()
    assert (HIDDEN, HIDDEN, "") in rows
    assert not any("hush-42" in str(row) for row in rows)
    assert any("said-aloud" in row[0] and row[1] == "said-aloud\n" for row in rows)
