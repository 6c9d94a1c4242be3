"""Connections under pressure: one connection per host whatever the load, output and file
transfers in bounded memory, hosts that are not SSH servers. Real lab sshd hosts (h1-h7 as
the connection tests) and real TCP listeners on loopback."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

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


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()
