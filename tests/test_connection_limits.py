"""Connections under pressure: one connection per host whatever the load, output and file
transfers in bounded memory, hosts that are not SSH servers. Real lab sshd hosts (h1-h7 as
the connection tests) and real TCP listeners on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from machineroom.connection import (
    Become,
    CommandResult,
    ConnectionPool,
    ConnectOptions,
    SessionDropped,
)
from machineroom.connection.output import CappedOutput, count_not_kept, not_kept
from machineroom.errors import Unreachable
from machineroom.inventory.model import Host
from machineroom.lab import Lab


def lab_host(lab: Lab, index: int) -> Host:
    """Inventory host for lab host `index` (0-based), root by key."""
    target = lab.hosts[index]
    return Host(id=target.name, host=target.address, port=target.port, user="root", ssh_key=lab.key)


@pytest.fixture
def options(lab: Lab) -> ConnectOptions:
    """Options that trust exactly the lab's host keys."""
    return ConnectOptions(known_hosts_files=(lab.known_hosts,), connect_timeout=10)


# ---------------------------------------------------------------------------- item 9


def test_commands_that_exit_before_reading_stdin_keep_one_connection(
    lab: Lab, options: ConnectOptions
) -> None:
    """The race behind test_pool_many_hosts_in_parallel's rare failure, made frequent: a
    command that exits without reading its stdin closes its channel while we still send.
    paramiko answered the server's CLOSE before our last data/EOF went out, OpenSSH dropped
    the whole connection ("packet referred to nonexistent channel") and the pool opened
    another. Before the fix: ~40 of 100 such commands failed, 13 connections were opened."""
    host = lab_host(lab, 3)
    big = b"x" * (3 << 20)  # bigger than the channel window: sent from a thread
    with ConnectionPool(options) as pool:

        def one(i: int) -> CommandResult:
            return pool.run(host, "exit 0" if i % 2 else "true", stdin=big if i % 4 else b"")

        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(one, range(160)))
        assert all(r.exit_code == 0 for r in results)
        assert pool.opened == 1


class SlowChannelConnection:
    """Alive throughout; its first command finds the host too slow to open a channel."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.calls = 0

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
        """SessionDropped(started=False) once, then the command's result."""
        self.calls += 1
        if self.calls == 1:
            raise SessionDropped(self.host.id, "Timeout opening channel.", started=False)
        return CommandResult(command, 0, "done\n", "", 0.0)

    def is_alive(self) -> bool:
        """The transport is up."""
        return True

    def close(self) -> None:
        """Nothing."""


def test_pool_keeps_a_live_connection_when_a_channel_is_slow_to_open() -> None:
    opened: list[SlowChannelConnection] = []

    def opener(host: Host, *_: object) -> SlowChannelConnection:
        opened.append(SlowChannelConnection(host))
        return opened[-1]

    host = Host(id="h", host="192.0.2.1")
    with ConnectionPool(opener=opener) as pool:  # type: ignore[arg-type]
        assert pool.run(host, "true").stdout == "done\n"
        assert pool.opened == 1 and opened[0].calls == 2


def test_a_local_file_streams_on_stdin_after_the_sudo_password(
    lab: Lab, options: ConnectOptions, tmp_path: Path
) -> None:
    """ops' sudo asks for its password: it goes first on stdin, then the file, from disk."""
    from machineroom.connection import open_connection
    from machineroom.inventory.model import Secret

    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(5 << 20) + b"end")  # past the inline size: sent by a thread
    target = lab.hosts[4]
    ops = Host(
        id=target.name,
        host=target.address,
        port=target.port,
        user="ops",
        password=Secret("plain", "ops-pass"),
    )
    conn = open_connection(ops, options)
    try:
        result = conn.run("id -un; sha256sum", stdin=path, become=Become("root", "ops-pass"))
        assert result.stdout.split() == ["root", hashlib.sha256(path.read_bytes()).hexdigest(), "-"]
    finally:
        conn.close()


# ---------------------------------------------------------------------------- item 4 units


def test_capped_output_keeps_head_and_tail_and_counts_the_rest() -> None:
    cap = CappedOutput(head=10, tail=5)
    for piece in (b"0123456789", b"abcdefghij" * 1000, b"VWXYZ"):
        cap.add(piece)
    text = cap.text()
    assert text == f"0123456789\n{not_kept(10_000)}\nVWXYZ"
    assert count_not_kept(text) == 10_000 and cap.total == 10_015
    small = CappedOutput(head=10, tail=5)
    small.add("é".encode() * 7)  # 14 bytes: nothing dropped, a character split by the head
    assert small.text() == "é" * 7


# ---------------------------------------------------------------------------- item 8 banner


@pytest.fixture
def listener(lab: Lab, request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A TCP server on a free loopback port that accepts and sends `request.param`, then
    keeps the connection open without a word more."""
    say: bytes = request.param
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            if say:
                conn.sendall(say)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.getsockname()[1])
    finally:
        stop.set()
        server.close()
        for conn in accepted:
            conn.close()


@pytest.mark.parametrize(
    ("listener", "said"),
    [(b"", ""), (b"HTTP/1.1 400 Bad Request\r\n\r\n", " (it sent 'HTTP/1.1 400 Bad Request')")],
    indirect=["listener"],
)
def test_no_ssh_banner_is_one_line(
    listener: tuple[str, int], said: str, options: ConnectOptions
) -> None:
    from machineroom.connection import open_connection

    address, port = listener
    host = Host(id="quiet", host=address, port=port, user="root", vars={"connect_timeout": 1})
    with pytest.raises(Unreachable) as caught:
        open_connection(host, options)
    assert str(caught.value) == (
        f"quiet: {address}:{port} did not answer with an SSH banner within 1 s{said}"
    )


# ---------------------------------------------------------------------------- item 4, end to end

# Runs `machineroom ARGS` (output to files) and prints the child's peak RSS in KiB, the
# operating system's own account of it (ru_maxrss of the waited-for child).
_MEASURE = (
    "import resource, subprocess, sys\n"
    "with open(sys.argv[1], 'wb') as out, open(sys.argv[2], 'wb') as err:\n"
    "    rc = subprocess.call([sys.executable, '-m', 'machineroom', *sys.argv[3:]],"
    " stdout=out, stderr=err)\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)
# Above the controller's own size (about 60-80 MiB): what a command's output or a file may
# add. Before bounded output, 200 MB printed cost ~780 MB here.
BUDGET_KIB = 100 * 1024


def measured(repo: Path, *args: str) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in KiB) of `machineroom ARGS` run in `repo`."""
    out, err = repo / "out.txt", repo / "err.txt"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(out), str(err), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    code, peak = done.stdout.split()
    return int(code), out.read_text(errors="replace"), err.read_text(errors="replace"), int(peak)


@pytest.fixture
def repo(tmp_path: Path, lab: Lab) -> Path:
    """An inventory repo of the lab's hosts h4-h6, trusting the lab's host keys."""
    lines = ["all:", "  hosts:"]
    for target in lab.hosts[3:6]:
        lines.append(
            f"    {target.name}: {{host: {target.address}, port: {target.port}, user: root,"
            f" ssh_key: {lab.key}}}"
        )
    (tmp_path / "inventory.yml").write_text("\n".join(lines) + "\n")
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return tmp_path


def rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".machineroom" / "state.db") as db:
        return list(db.execute(sql))


def missing_bytes(row: str) -> int:
    """Bytes of the output the row does not hold, by its own account."""
    return count_not_kept(row)


PRINTED = 200 << 20  # bytes the command prints


def test_run_printing_200_mb_stays_in_budget_and_says_what_was_dropped(
    repo: Path, lab: Lab
) -> None:
    h4 = lab.hosts[3].name
    code, _, err, baseline = measured(repo, "run", h4, "--", "true")
    assert code == 0, err
    code, out, err, peak = measured(repo, "run", h4, "--", f"yes | head -c {PRINTED}")
    assert code == 0, err
    assert peak - baseline < BUDGET_KIB, (baseline, peak)
    assert "bytes not kept ...]" in out and len(out) < 4 << 20
    # The audit log keeps the last 4 KiB and says how much is missing before them.
    (tail,) = rows(repo, "SELECT stdout_tail FROM audit_log ORDER BY id DESC LIMIT 1")[0]
    text = str(tail)
    kept = len(text.encode()) - len(f"[... {missing_bytes(text)} bytes not kept ...]\n")
    # Exact up to the two newlines around the connection's own marker line.
    assert abs(missing_bytes(text) + kept - PRINTED) <= 2, (missing_bytes(text), kept)


def test_apply_task_printing_200_mb_stays_in_budget(repo: Path, lab: Lab) -> None:
    (repo / "print.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - name: chatty\n      shell: yes | head -c {PRINTED}; echo done >&2\n"
        "      register: chatty\n"
        "    - name: cut\n      debug: {msg: 'cut {{ chatty.stdout_bytes_not_kept }}'}\n"
    )
    (repo / "quiet.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: 'true'\n"
    )
    code, _, err, baseline = measured(repo, "apply", "quiet.yml")
    assert code == 0, err
    code, out, err, peak = measured(repo, "apply", "print.yml")
    assert code == 0, out + err
    assert peak - baseline < BUDGET_KIB, (baseline, peak)
    stored = rows(repo, "SELECT stdout, stderr FROM task_results WHERE task = 'chatty'")
    assert len(stored) == 3
    for stdout, stderr in stored:
        assert len(str(stdout)) <= 64 * 1024 and str(stderr).strip() == "done"
        assert PRINTED - (64 << 10) < missing_bytes(str(stdout)) < PRINTED
    # the registered result says it is not the whole output (the connection kept 320 KiB)
    for (message,) in rows(repo, "SELECT message FROM task_results WHERE task = 'cut'"):
        assert PRINTED - (320 << 10) <= int(str(message).removeprefix("cut ")) < PRINTED
    for (message,) in rows(repo, "SELECT message FROM task_results WHERE task = 'chatty'"):
        assert str(message).startswith("stdout cut: ")


def test_copy_of_a_big_file_streams_from_disk(repo: Path, lab: Lab, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    size = 300 << 20
    with big.open("wb") as f:  # sparse but for a random head and tail: costs no disk
        f.write(os.urandom(1 << 20))
        f.truncate(size - (1 << 20))
        f.seek(0, os.SEEK_END)
        f.write(os.urandom(1 << 20))
    digest = hashlib.sha256()
    with big.open("rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    (repo / "copy.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - name: big\n      copy: {{src: {big}, dest: /tmp/big.bin, mode: '0600'}}\n"
    )
    (repo / "quiet.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: 'true'\n"
    )
    code, _, err, baseline = measured(repo, "apply", "quiet.yml")
    assert code == 0, err
    try:
        code, out, err, peak = measured(repo, "apply", "copy.yml")
        assert code == 0, out + err
        assert peak - baseline < BUDGET_KIB, (baseline, peak)
        code, out, err, _ = measured(repo, "run", "all", "--", "sha256sum /tmp/big.bin")
        assert code == 0, err
        assert out.count(f"{digest.hexdigest()}  /tmp/big.bin") == 3
        # Second run: the same content is there already.
        code, out, err, _ = measured(repo, "apply", "copy.yml")
        assert code == 0 and "changed=1" not in out, out + err
    finally:
        measured(repo, "run", "all", "--", "rm -f /tmp/big.bin")
