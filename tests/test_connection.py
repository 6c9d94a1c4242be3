"""SSH and local connections, host keys and the pool, against the lab's real sshd hosts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from machineroom.connection import (
    Become,
    BecomeFailed,
    CommandResult,
    ConnectionPool,
    ConnectOptions,
    LocalConnection,
    SessionDropped,
    SSHConnection,
    open_connection,
)
from machineroom.connection.hostkeys import KnownHosts, fingerprint, parse_known_hosts
from machineroom.connection.output import OUTPUT_HEAD, OUTPUT_TAIL
from machineroom.errors import AuthFailed, CommandTimeout, HostKeyError, Unreachable
from machineroom.inventory.model import Host, Secret, TunnelProfile, TunnelType
from machineroom.lab import Lab, LabHost

# ---------------------------------------------------------------------------- helpers


def make_host(lab: Lab, index: int, user: str = "root", **kw: object) -> Host:
    """Inventory host for lab host `index` (0-based): root by key, others by password."""
    target: LabHost = lab.hosts[index]
    password = lab.users[user]
    fields: dict[str, object] = {
        "id": target.name,
        "host": target.address,
        "port": target.port,
        "user": user,
    }
    if password is None:
        fields["ssh_key"] = lab.key
    else:
        fields["password"] = Secret("plain", password)
    fields.update(kw)
    return Host(**fields)  # type: ignore[arg-type]


@pytest.fixture
def options(lab: Lab) -> ConnectOptions:
    """Options that trust exactly the lab's host keys."""
    return ConnectOptions(known_hosts_files=(lab.known_hosts,), connect_timeout=10)


def lab_key_blob(lab: Lab, address: str) -> tuple[str, bytes]:
    """(key type, key blob) of a lab host, from the lab's known_hosts."""
    for entry in parse_known_hosts(Path(lab.known_hosts).read_text(), lab.known_hosts):
        if entry.matches(address):
            return entry.key_type, entry.blob
    raise AssertionError(f"{address} not in {lab.known_hosts}")


def client_port(result: CommandResult) -> int:
    """The controller-side TCP port, from `echo $SSH_CLIENT` on the host."""
    return int(result.stdout.split()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- login


def test_key_login(lab: Lab, options: ConnectOptions) -> None:
    conn = open_connection(make_host(lab, 0), options)
    try:
        result = conn.run("id -un; hostname; echo err >&2; exit 3")
    finally:
        conn.close()
    assert result.stdout == f"root\n{lab.hosts[0].name}\n"
    assert result.stderr == "err\n"
    assert result.exit_code == 3 and not result.ok
    assert not conn.is_alive()
    conn.close()  # twice is fine


def test_password_login(lab: Lab, options: ConnectOptions) -> None:
    conn = open_connection(make_host(lab, 1, "deploy"), options)
    try:
        assert conn.run("id -un").stdout == "deploy\n"
    finally:
        conn.close()


def test_wrong_password_is_one_clear_line(lab: Lab, options: ConnectOptions) -> None:
    secret = "Wr0ng-Secret-xyz"
    host = make_host(lab, 1, "deploy", password=Secret("plain", secret))
    start = time.monotonic()
    with pytest.raises(AuthFailed) as caught:
        open_connection(host, options)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert message == f"{lab.hosts[1].name}: user deploy: password rejected"
    assert secret not in message and secret not in repr(caught.value)


def test_no_key_accepted_names_the_key(lab: Lab, options: ConnectOptions, tmp_path: Path) -> None:
    key = tmp_path / "stranger_key"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    host = make_host(lab, 0, ssh_key=str(key))
    with pytest.raises(AuthFailed, match=r"user root: no key accepted \(tried: .*stranger_key\)"):
        open_connection(host, options)


def test_unreachable_port(options: ConnectOptions) -> None:
    port = free_port()
    host = Host(id="ghost", host="127.0.0.1", port=port, user="root")
    start = time.monotonic()
    with pytest.raises(Unreachable) as caught:
        open_connection(host, options)
    assert time.monotonic() - start < 2
    assert str(caught.value) == f"ghost: cannot connect to 127.0.0.1:{port}: connection refused"


# ---------------------------------------------------------------------------- host keys


def test_unknown_host_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    project = tmp_path / ".machineroom" / "known_hosts"
    options = ConnectOptions(known_hosts_files=(str(project),), project_known_hosts=str(project))
    target = lab.hosts[0]
    blob = lab_key_blob(lab, target.address)[1]
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    with pytest.raises(HostKeyError) as caught:
        open_connection(make_host(lab, 0), options)
    message = str(caught.value)
    assert expected in message
    assert "--accept-new-host-keys" in message
    assert f"ssh-keyscan -t ed25519 {target.address} >> {project}" in message
    assert "\n" not in message
    assert not project.exists()  # nothing recorded without being asked


def test_accept_new_records_keys_in_parallel(lab: Lab, tmp_path: Path) -> None:
    project = tmp_path / "repo" / ".machineroom" / "known_hosts"
    accepting = ConnectOptions(
        known_hosts_files=(str(project),),
        project_known_hosts=str(project),
        accept_new_host_keys=True,
    )
    hosts = [make_host(lab, i) for i in range(min(4, len(lab.hosts)))]

    def connect(host: Host) -> str:
        conn = open_connection(host, accepting)
        try:
            return conn.run("hostname").stdout.strip()
        finally:
            conn.close()

    with ThreadPoolExecutor(12) as pool:
        names = list(pool.map(connect, hosts * 3))
    assert names == [h.id for h in hosts] * 3
    assert stat.S_IMODE(project.stat().st_mode) == 0o600
    assert stat.S_IMODE(project.parent.stat().st_mode) == 0o700
    lines = project.read_text().splitlines()
    assert len(lines) == len(hosts)  # each host once, although it connected three times
    for host in hosts:
        key_type, blob = lab_key_blob(lab, host.host)
        assert f"{host.host} {key_type} {base64.b64encode(blob).decode()}" in lines
    # Recorded keys are trusted afterwards without accepting anything new.
    strict = replace(accepting, accept_new_host_keys=False)
    assert connect_and_run(hosts[0], strict) == hosts[0].id


def connect_and_run(host: Host, options: ConnectOptions) -> str:
    conn = open_connection(host, options)
    try:
        return conn.run("hostname").stdout.strip()
    finally:
        conn.close()


def test_changed_key_refused_even_with_accept_new(lab: Lab, tmp_path: Path) -> None:
    first, second = lab.hosts[0], lab.hosts[1]
    key_type, other_blob = lab_key_blob(lab, second.address)
    project = tmp_path / "known_hosts"
    project.write_text(
        f"# a comment\n{first.address} {key_type} {base64.b64encode(other_blob).decode()}\n"
    )
    options = ConnectOptions(
        known_hosts_files=(str(project),),
        project_known_hosts=str(project),
        accept_new_host_keys=True,
    )
    with pytest.raises(HostKeyError) as caught:
        open_connection(make_host(lab, 0), options)
    message = str(caught.value)
    assert "HOST KEY CHANGED" in message
    assert f"{project}:2" in message
    assert fingerprint(other_blob) in message
    assert fingerprint(lab_key_blob(lab, first.address)[1]) in message
    assert project.read_text().count("\n") == 2  # not "fixed" behind the user's back


def test_hashed_known_hosts_entry(lab: Lab, tmp_path: Path) -> None:
    target = lab.hosts[0]
    key_type, blob = lab_key_blob(lab, target.address)
    salt = os.urandom(20)
    digest = hmac.new(salt, target.address.encode(), hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    user_file = tmp_path / "home_known_hosts"
    user_file.write_text(f"{hashed} {key_type} {base64.b64encode(blob).decode()}\n")
    options = ConnectOptions(known_hosts_files=(str(user_file),))
    assert connect_and_run(make_host(lab, 0), options) == target.name


def test_known_hosts_syntax() -> None:
    blob = b"\x00\x00\x00\x0bssh-ed25519" + bytes(36)
    b64 = base64.b64encode(blob).decode()
    entries = parse_known_hosts(
        f"[10.0.0.1]:2222 ssh-ed25519 {b64}\n"
        f"web*.example.com,!web9.example.com ssh-ed25519 {b64}\n"
        f"@revoked bad.example.com ssh-ed25519 {b64}\n"
        "broken line\n",
        "kh",
    )
    assert len(entries) == 3
    assert entries[0].matches("[10.0.0.1]:2222")
    assert not entries[0].matches("10.0.0.1")
    assert entries[1].matches("web1.example.com") and not entries[1].matches("web9.example.com")


def test_known_hosts_check_port_and_revoked(tmp_path: Path) -> None:
    blob = b"\x00\x00\x00\x0bssh-ed25519" + bytes(36)
    other = b"\x00\x00\x00\x0bssh-ed25519" + bytes(range(36))
    path = tmp_path / "kh"
    path.write_text(
        f"[10.0.0.1]:2222 ssh-ed25519 {base64.b64encode(blob).decode()}\n"
        f"@revoked * ssh-ed25519 {base64.b64encode(other).decode()}\n"
    )
    known = KnownHosts([str(path)])
    known.check("h", "[10.0.0.1]:2222", "ssh-ed25519", blob)
    with pytest.raises(HostKeyError, match=r"unknown host key for 10\.0\.0\.1"):
        known.check("h", "10.0.0.1", "ssh-ed25519", blob)
    with pytest.raises(HostKeyError, match=rf"REVOKED .* \(revoked in {path}:2\)"):
        known.check("h", "10.0.0.9", "ssh-ed25519", other)


# ---------------------------------------------------------------------------- jump hosts


def jump_profile(lab: Lab, index: int = 0) -> dict[str, TunnelProfile]:
    jump = lab.hosts[index]
    return {
        "j1": TunnelProfile(
            name="j1",
            type=TunnelType.SSH,
            server=f"{jump.address}:{jump.port}",
            user="root",
            ssh_key=lab.key,
        )
    }


def test_jump_host_carries_the_connection(lab: Lab, options: ConnectOptions) -> None:
    tunnels = jump_profile(lab, 0)
    conn = SSHConnection(make_host(lab, 1, "deploy", tunnel="j1"), options, tunnels)
    conn.open()
    direct = open_connection(make_host(lab, 0), options)
    try:
        seen = conn.run("echo $SSH_CLIENT; id -un; hostname")
        port = client_port(seen)
        assert seen.stdout.splitlines()[1:] == ["deploy", lab.hosts[1].name]
        # On the jump host, the socket to h2 with that source port belongs to h1's sshd
        # (only h1's processes are visible in its pid namespace); a direct connection from
        # the test process would show no owner there.
        sockets = direct.run(f"ss -Htnp state established '( sport = :{port} )'").stdout
        assert f"{lab.hosts[1].address}:{lab.hosts[1].port}" in sockets
        assert '"sshd"' in sockets
    finally:
        conn.close()
        direct.close()


def test_jump_host_key_is_verified(lab: Lab, tmp_path: Path) -> None:
    # Only the target's key is trusted: the jump host's must be refused on its own.
    target = lab.hosts[1]
    key_type, blob = lab_key_blob(lab, target.address)
    only_target = tmp_path / "known_hosts"
    only_target.write_text(f"{target.address} {key_type} {base64.b64encode(blob).decode()}\n")
    options = ConnectOptions(known_hosts_files=(str(only_target),))
    conn = SSHConnection(make_host(lab, 1, tunnel="j1"), options, jump_profile(lab, 0))
    with pytest.raises(HostKeyError, match=r"jump host 'j1': unknown host key for"):
        conn.open()


def test_jump_host_cannot_reach_target(lab: Lab, options: ConnectOptions) -> None:
    host = Host(id="behind", host="127.0.0.1", port=free_port(), user="root", tunnel="j1")
    conn = SSHConnection(host, options, jump_profile(lab, 0))
    with pytest.raises(Unreachable, match=r"through jump host 'j1'.*could not reach it"):
        conn.open()


def test_vpn_tunnel_is_not_ours_to_bring_up(options: ConnectOptions) -> None:
    tunnels = {"office": TunnelProfile(name="office", type=TunnelType.L2TP_IPSEC, server="vpn")}
    host = Host(id="far", host="127.0.0.1", port=free_port(), user="root", tunnel="office")
    with pytest.raises(Unreachable, match=r"tunnel 'office' of type L2TP/IPSEC.*connect it first"):
        open_connection(host, options, tunnels)


# ---------------------------------------------------------------------------- commands


PAYLOAD = (
    b'it\'s "quoted" $(rm -rf /) `id` ${HOME} \\n \\\\ ;|&><*?\n\n'
    b"line three\twith tab\r\n\xc3\xa9t\xc3\xa9 \xe2\x9c\x93\n"
    b"no newline at the end"
)


def test_stdin_arrives_byte_exact(lab: Lab, options: ConnectOptions) -> None:
    conn = open_connection(make_host(lab, 0), options)
    try:
        assert conn.run("cat").stdout.encode() == b""
        assert conn.run("cat", stdin=PAYLOAD).stdout.encode() == PAYLOAD
        digest = hashlib.sha256(PAYLOAD).hexdigest()
        assert conn.run("sha256sum", stdin=PAYLOAD).stdout.split()[0] == digest
        # Bigger than the channel window: sent from a thread while output is read.
        big = os.urandom(3 << 20)
        result = conn.run("sha256sum; head -c 2000000 /dev/zero", stdin=big)
        assert result.stdout.startswith(hashlib.sha256(big).hexdigest())
        # 2 MB of output: the first OUTPUT_HEAD and last OUTPUT_TAIL bytes kept, the rest counted.
        printed = 64 + len("  -\n") + 2_000_000
        dropped = printed - OUTPUT_HEAD - OUTPUT_TAIL
        assert f"\n[... {dropped} bytes not kept ...]\n" in result.stdout
        assert len(result.stdout) == printed - dropped + len(
            f"\n[... {dropped} bytes not kept ...]\n"
        )
    finally:
        conn.close()


def test_become_nopasswd(lab: Lab, options: ConnectOptions) -> None:
    conn = open_connection(make_host(lab, 1, "deploy"), options)
    try:
        # A password given to a NOPASSWD rule must not leak into the command's stdin.
        become = Become("root", password="deploy-pass")
        result = conn.run("id -un; cat", stdin=PAYLOAD, become=become)
        assert result.stdout.encode() == b"root\n" + PAYLOAD
        assert result.become_user == "root"
        assert conn.run("id -un", become=Become("ops")).stdout == "ops\n"
    finally:
        conn.close()


def test_become_with_password(lab: Lab, options: ConnectOptions) -> None:
    password = lab.users["ops"]
    assert password
    conn = open_connection(make_host(lab, 2, "ops"), options)
    try:
        for _ in range(2):  # sudo's cached credentials must not change what we send
            result = conn.run("id -un; cat", stdin=PAYLOAD, become=Become("root", password))
            assert result.stdout.encode() == b"root\n" + PAYLOAD
            assert password not in result.stdout + result.stderr
    finally:
        conn.close()


def test_become_wrong_or_missing_password(lab: Lab, options: ConnectOptions) -> None:
    conn = open_connection(make_host(lab, 2, "ops"), options)
    try:
        with pytest.raises(BecomeFailed, match="sudo rejected the password") as caught:
            conn.run("touch /root/never", become=Become("root", "not-the-Pass"))
        assert "not-the-Pass" not in str(caught.value)
        other = open_connection(make_host(lab, 2, "ops"), options)
        with pytest.raises(BecomeFailed, match="sudo asks for a password and none was given"):
            other.run("true", become=Become("root"))
        other.close()
        password = lab.users["ops"]
        assert password
        assert conn.run("test -e /root/never", become=Become("root", password)).exit_code == 1
    finally:
        conn.close()


def test_command_timeout_kills_the_command(lab: Lab, options: ConnectOptions) -> None:
    conn = open_connection(make_host(lab, 0), options)
    try:
        start = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"timed out after 0.5s: sleep 47; echo"):
            conn.run("sleep 47; echo", timeout=0.5)
        assert time.monotonic() - start < 2.5
        deploy = open_connection(make_host(lab, 0, "deploy"), options)
        with pytest.raises(CommandTimeout):
            deploy.run("sleep 48", timeout=0.3, become=Become())
        deploy.close()
        # The connection still works, and neither command is left running on the host.
        left = conn.run("ps -eo args | grep '^sleep 4[78]' || true").stdout
        assert left == ""
    finally:
        conn.close()


def test_on_command_reports_every_command_without_secrets(
    lab: Lab, options: ConnectOptions
) -> None:
    seen: list[tuple[str, CommandResult]] = []
    lock = threading.Lock()

    def record(host: Host, result: CommandResult) -> None:
        with lock:
            seen.append((host.id, result))

    audited = replace(options, on_command=record)
    ops_password = lab.users["ops"]
    assert ops_password
    conn = open_connection(make_host(lab, 2, "ops"), audited)
    try:
        conn.run("echo one")
        conn.run("cat >/dev/null", stdin=b"payload", become=Become("root", ops_password))
        with pytest.raises(BecomeFailed):
            conn.run("true", become=Become("deploy", "wrong-Sudo-pw"))
    finally:
        conn.close()
    commands = [r.command for _, r in seen]
    assert commands[0] == "echo one"
    assert "cat >/dev/null" in commands
    assert any(c.startswith("sudo -k -n") for c in commands)  # the probe is audited too
    assert {h for h, _ in seen} == {lab.hosts[2].name}
    text = repr(seen)
    for secret in (ops_password, "wrong-Sudo-pw", "payload"):
        assert secret not in text


# ---------------------------------------------------------------------------- pool


def test_pool_reuses_one_connection(lab: Lab, options: ConnectOptions) -> None:
    host = make_host(lab, 0)
    with ConnectionPool(options) as pool:
        ports = {client_port(pool.run(host, "echo $SSH_CLIENT")) for _ in range(20)}
        assert pool.get(host) is pool.get(host)
        assert len(ports) == 1
        assert pool.opened == 1


def test_pool_reopens_after_server_kills_session(lab: Lab, options: ConnectOptions) -> None:
    host = make_host(lab, len(lab.hosts) - 1)
    with ConnectionPool(options) as pool:
        before = client_port(pool.run(host, "echo $SSH_CLIENT"))
        session_pid = pool.run(host, "echo $PPID").stdout.strip()
        killer = open_connection(host, options)
        killer.run(f"kill -9 {session_pid}")
        killer.close()
        # Whether the pool noticed first (is_alive) or the channel failed to open, the next
        # command runs on a new session.
        after = client_port(pool.run(host, "echo $SSH_CLIENT"))
        assert after != before
        assert pool.opened == 2
        # Killed mid-command: that command is not repeated, the error says so.
        with pytest.raises(SessionDropped) as caught:
            pool.run(host, "kill -9 $PPID; sleep 5")
        assert caught.value.started
        assert isinstance(caught.value, Unreachable)
        assert client_port(pool.run(host, "echo $SSH_CLIENT")) not in (before, after)
        assert pool.opened == 3


def test_pool_many_hosts_in_parallel(lab: Lab, options: ConnectOptions) -> None:
    hosts = [make_host(lab, i) for i in range(len(lab.hosts))]
    with ConnectionPool(options) as pool:

        def work(host: Host) -> set[int]:
            return {client_port(pool.run(host, "echo $SSH_CLIENT")) for _ in range(5)}

        with ThreadPoolExecutor(len(hosts) * 2) as ex:
            results = list(ex.map(work, hosts + hosts))
        reused = {h.id: ports for h, ports in zip(hosts + hosts, results, strict=True)}
        assert all(len(ports) == 1 for ports in results), reused
        assert pool.opened == len(hosts) == len(pool)
    assert len(pool) == 0


class FlakyConnection:
    """Opens fine once, then is dead; the opener fails the second time."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.alive = True

    def open(self) -> None:
        """Nothing."""

    def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        become: Become | None = None,
    ) -> CommandResult:
        """Answers nothing."""
        raise AssertionError("not expected")

    def is_alive(self) -> bool:
        """What the test says."""
        return self.alive

    def close(self) -> None:
        """Nothing."""


def test_pool_second_failure_raises_unreachable() -> None:
    calls: list[str] = []
    first = FlakyConnection(Host(id="a", host="a"))

    def opener(host: Host, options: ConnectOptions, tunnels: object) -> FlakyConnection:
        calls.append(host.id)
        if len(calls) > 1:
            raise Unreachable(host.id, "cannot connect to a:22: connection refused")
        return first

    pool = ConnectionPool(ConnectOptions(), opener=opener)
    assert pool.get(first.host) is first
    first.alive = False
    with pytest.raises(Unreachable, match="connection refused"):
        pool.get(first.host)
    assert calls == ["a", "a"]


# ---------------------------------------------------------------------------- ssh config, local


def test_ssh_config_alias_is_honoured(lab: Lab, options: ConnectOptions, hermetic: Path) -> None:
    target = lab.hosts[2]
    (hermetic / ".ssh" / "config").write_text(
        f"Host webalias\n"
        f"    HostName {target.address}\n"
        f"    Port {target.port}\n"
        f"    User deploy\n"
        f"    IdentityFile {lab.key}\n"
        f"    IdentityFile ~/.ssh/does_not_exist\n"
    )
    conn = open_connection(Host(id="web", host="webalias"), options)
    try:
        assert conn.run("id -un; hostname").stdout == f"deploy\n{target.name}\n"
    finally:
        conn.close()


def test_local_connection(tmp_path: Path) -> None:
    seen: list[CommandResult] = []
    host = Host(id="workstation", host="localhost", connection="local")
    conn = open_connection(host, ConnectOptions(on_command=lambda h, r: seen.append(r)))
    assert isinstance(conn, LocalConnection) and conn.is_alive()
    result = conn.run("cat; echo; echo oops >&2; exit 4", stdin=PAYLOAD)
    assert result.stdout.encode() == PAYLOAD + b"\n"
    assert (result.stderr, result.exit_code) == ("oops\n", 4)
    marker = tmp_path / "child-survived"
    start = time.monotonic()
    with pytest.raises(CommandTimeout):
        conn.run(f"(sleep 1; touch {marker}) & sleep 30", timeout=0.3)
    assert time.monotonic() - start < 2
    time.sleep(1.2)
    assert not marker.exists()  # the whole process group was killed
    if os.geteuid() == 0:
        assert conn.run("id -un", become=Become("root")).stdout == "root\n"
    assert seen[0].command == "cat; echo; echo oops >&2; exit 4"
