"""The port scanner, against real sockets on loopback addresses only."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from machineroom.errors import InputError
from machineroom.scan import DEFAULT_PORTS, parse_ports, run_scan, scan_ports


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test opens; all closed at the end, even when the test fails."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def listener(opened: list[socket.socket], address: str = "127.0.0.1", backlog: int = 128) -> int:
    """A listening TCP socket on an ephemeral port: an open port."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    opened.append(sock)
    sock.bind((address, 0))
    sock.listen(backlog)
    return int(sock.getsockname()[1])


def closed_port(opened: list[socket.socket], address: str = "127.0.0.1") -> int:
    """A port that is certainly closed: bound (so nobody else takes it) but not listening."""
    sock = socket.socket()
    opened.append(sock)
    sock.bind((address, 0))
    return int(sock.getsockname()[1])


# --- parse_ports -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ports"),
    [
        ("22", [22]),
        ("22,80,8000-8003", [22, 80, 8000, 8001, 8002, 8003]),
        (" 443 , 80,80, 1-2 ", [1, 2, 80, 443]),
        ("65535", [65535]),
        ("7-7", [7]),
    ],
)
def test_parse_ports(spec: str, ports: list[int]) -> None:
    assert parse_ports(spec) == ports


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty port list"),
        ("22,,80", "empty item in port list '22,,80'"),
        ("0", "port 0 in '0' is out of range; expected 1-65535"),
        ("65536", "port 65536 in '65536' is out of range; expected 1-65535"),
        ("1-70000", "port 70000 in '1-70000' is out of range"),
        ("8010-8000", "port range '8010-8000' is reversed; expected LOW-HIGH with LOW <= HIGH"),
        ("ssh", "'ssh' is not a port or a port range"),
        ("1-2-3", "'1-2-3' is not a port or a port range"),
        ("-5", "'-5' is not a port or a port range"),
        ("22.5", "'22.5' is not a port or a port range"),
    ],
)
def test_parse_ports_errors(spec: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_ports(spec)
    assert str(info.value).startswith(message)


def test_default_ports() -> None:
    assert sorted(set(DEFAULT_PORTS)) == DEFAULT_PORTS
    wanted = {22, 80, 443, 2375, 2376, 3000, 5432, 6379, 8000, 8080, 8443, 9000, 9443}
    assert wanted <= set(DEFAULT_PORTS)


# --- scanning ------------------------------------------------------------------------------


def test_open_and_closed_ports(sockets: list[socket.socket]) -> None:
    open_ports = sorted(listener(sockets) for _ in range(3))
    shut = [closed_port(sockets) for _ in range(5)]
    result = scan_ports([("web1", "127.0.0.1")], [*shut, *reversed(open_ports), open_ports[0]])
    assert result == {"web1": open_ports}


def test_many_targets_in_parallel(sockets: list[socket.socket]) -> None:
    targets = [(f"host{i:02d}", f"127.0.0.{i + 2}") for i in range(20)]
    expected: dict[str, list[int]] = {}
    ports: list[int] = []
    for index, (host_id, address) in enumerate(targets):
        # Each host listens on its own ports (1-3 of them), so answers cannot be mixed up.
        expected[host_id] = sorted(listener(sockets, address) for _ in range(1 + index % 3))
        ports.extend(expected[host_id])
    ports.extend(closed_port(sockets, "127.0.0.2") for _ in range(10))
    result = run_scan(targets, ports, workers=50)
    assert result.open == expected
    assert result.probes == len(targets) * len(set(ports))
    assert result.unresolved == {}


def test_one_thousand_closed_ports_take_well_under_a_second(
    sockets: list[socket.socket],
) -> None:
    shut = [closed_port(sockets) for _ in range(1000)]
    started = time.monotonic()
    result = scan_ports([("lo", "127.0.0.1")], shut)
    elapsed = time.monotonic() - started
    assert result == {"lo": []}
    assert elapsed < 0.5, f"1000 closed ports took {elapsed:.3f}s"


def test_a_port_that_does_not_answer_times_out(sockets: list[socket.socket]) -> None:
    # A listener whose backlog is full makes Linux drop further SYNs: like a filtering firewall.
    port = listener(sockets, backlog=0)
    for _ in range(4):
        filler = socket.socket()
        sockets.append(filler)
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    time.sleep(0.05)
    started = time.monotonic()
    result = scan_ports([("slow", "127.0.0.1")], [port], timeout=0.3)
    elapsed = time.monotonic() - started
    assert result == {"slow": []}
    assert 0.25 <= elapsed < 1.0


def test_workers_bound_still_scans_everything(sockets: list[socket.socket]) -> None:
    open_ports = sorted(listener(sockets) for _ in range(5))
    shut = [closed_port(sockets) for _ in range(20)]
    assert scan_ports([("a", "127.0.0.1")], [*shut, *open_ports], workers=1) == {"a": open_ports}


def test_names_and_unresolvable_hosts(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = listener(sockets)
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: str, *args: object, **kwargs: object) -> object:
        # No DNS traffic from tests: only "lab-box" resolves, to loopback.
        if host == "lab-box":
            return real("127.0.0.1", *args, **kwargs)  # type: ignore[arg-type]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    result = run_scan([("named", "lab-box"), ("gone", "gone.example")], [port])
    assert result.open == {"named": [port], "gone": []}
    assert result.unresolved == {"gone": "cannot resolve gone.example: Name or service not known"}


def test_ipv6_loopback(sockets: list[socket.socket]) -> None:
    try:
        port = listener(sockets, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert scan_ports([("v6", "[::1]")], [port]) == {"v6": [port]}


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="port 0 is out of range"):
        scan_ports([("a", "127.0.0.1")], [0])
    with pytest.raises(InputError, match="timeout"):
        scan_ports([("a", "127.0.0.1")], [22], timeout=0)
    with pytest.raises(InputError, match="workers"):
        scan_ports([("a", "127.0.0.1")], [22], workers=0)


def test_no_targets_or_no_ports() -> None:
    assert scan_ports([], [22]) == {}
    assert scan_ports([("a", "127.0.0.1")], []) == {"a": []}
