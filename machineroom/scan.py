"""TCP connect scans from the workstation: which ports of which hosts accept a connection.

One thread drives many non-blocking sockets through a selector (like a connect scan in nmap,
without raw sockets or privileges): thousands of probes in flight cost file descriptors, not
threads. Name resolution, which blocks, runs first in a small thread pool. No click here.
"""

from __future__ import annotations

import errno
import ipaddress
import resource
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from machineroom.errors import InputError

# Common service ports for a fleet of Docker hosts: ssh, web, Docker API, Yacht/Portainer,
# databases and brokers, monitoring. Sorted.
DEFAULT_PORTS: list[int] = [
    21,  # ftp
    22,  # ssh
    23,  # telnet
    25,  # smtp
    53,  # dns
    80,  # http
    110,  # pop3
    143,  # imap
    443,  # https
    465,  # smtps
    587,  # submission
    993,  # imaps
    995,  # pop3s
    1883,  # mqtt
    2375,  # docker api (plain: should never be open)
    2376,  # docker api (tls)
    3000,  # grafana, node apps
    3306,  # mysql
    3389,  # rdp
    5000,  # registry, flask
    5432,  # postgres
    5672,  # amqp
    5900,  # vnc
    6379,  # redis
    6443,  # kubernetes api
    8000,  # yacht, dev servers
    8080,  # http alt, watchtower api
    8081,  # http alt
    8443,  # https alt
    8883,  # mqtt over tls
    9000,  # portainer (http)
    9090,  # prometheus
    9100,  # node exporter
    9443,  # portainer (https)
    10250,  # kubelet
    11211,  # memcached
    15672,  # rabbitmq management
    27017,  # mongodb
]

# Probes left in flight are bounded by this and by the open-file limit (keeping headroom for
# the rest of the process: the database, SSH connections, logs).
_FD_HEADROOM = 64
# How many times in a row a probe may find no free local port before it counts as closed.
_MAX_STALLS = 300


def parse_ports(spec: str) -> list[int]:
    """Parse `22,80,8000-8010` into sorted unique port numbers; InputError on a bad spec."""
    expected = "port numbers 1-65535 and LOW-HIGH ranges, comma-separated (e.g. 22,80,8000-8010)"
    ports: set[int] = set()
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip():
        raise InputError("empty port list", expected=expected)
    for item in items:
        if not item:
            raise InputError(f"empty item in port list '{spec}'", expected=expected)
        low_text, dash, high_text = item.partition("-")
        low = _port(low_text.strip(), item, expected)
        high = _port(high_text.strip(), item, expected) if dash else low
        if low > high:
            raise InputError(
                f"port range '{item}' is reversed",
                expected=f"LOW-HIGH with LOW <= HIGH ({high}-{low})",
            )
        ports.update(range(low, high + 1))
    return sorted(ports)


def _port(text: str, item: str, expected: str) -> int:
    if not text.isdigit():
        raise InputError(f"'{item}' is not a port or a port range", expected=expected)
    value = int(text)
    if not 1 <= value <= 65535:
        raise InputError(f"port {value} in '{item}' is out of range", expected="1-65535")
    return value


@dataclass
class ScanResult:
    """Open ports per host id (sorted; every target present) and hosts that did not resolve."""

    open: dict[str, list[int]] = field(default_factory=dict)
    unresolved: dict[str, str] = field(default_factory=dict)  # host id -> reason
    probes: int = 0
    seconds: float = 0.0


def scan_ports(
    targets: Sequence[tuple[str, str]],
    ports: Sequence[int],
    timeout: float = 1.0,
    workers: int = 200,
) -> dict[str, list[int]]:
    """TCP connect scan: the open ports of each (host_id, address) target, sorted.

    Every host id is in the result (an empty list when nothing is open or the name does not
    resolve; `run_scan` tells those apart). A port is open when a connection completes within
    `timeout` seconds; `workers` bounds the probes in flight at once.
    """
    return run_scan(targets, ports, timeout=timeout, workers=workers).open


def run_scan(
    targets: Sequence[tuple[str, str]],
    ports: Sequence[int],
    timeout: float = 1.0,
    workers: int = 200,
) -> ScanResult:
    """Like `scan_ports`, with the unresolved hosts, probe count and duration reported."""
    if timeout <= 0:
        raise InputError(f"scan timeout {timeout:g} must be positive")
    if workers < 1:
        raise InputError(f"scan workers {workers} must be at least 1")
    for port in ports:
        if not 1 <= port <= 65535:
            raise InputError(f"port {port} is out of range", expected="1-65535")
    started = time.monotonic()
    result = ScanResult(open={host_id: [] for host_id, _ in targets})
    resolved = _resolve_all(targets, result.unresolved)
    unique_ports = sorted(set(ports))
    probes = [(host_id, addr, port) for host_id, addr in resolved for port in unique_ports]
    result.probes = len(probes)
    for host_id, port in _probe(probes, timeout, _limit(workers)):
        result.open[host_id].append(port)
    for found in result.open.values():
        found.sort()
    result.seconds = time.monotonic() - started
    return result


# (family, sockaddr without the port); a sockaddr gets its port per probe.
_Addr = tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]


def _resolve_all(
    targets: Sequence[tuple[str, str]], unresolved: dict[str, str]
) -> list[tuple[str, _Addr]]:
    """Resolve every address once; literals skip the resolver, names share a small pool."""
    names = {addr for _, addr in targets if _literal(addr) is None}
    answers: dict[str, _Addr | str] = {}
    if names:
        with ThreadPoolExecutor(max_workers=min(32, len(names))) as pool:
            answers = dict(zip(names, pool.map(_resolve, names), strict=True))
    out: list[tuple[str, _Addr]] = []
    for host_id, addr in targets:
        answer = _literal(addr) or answers[addr]
        if isinstance(answer, str):
            unresolved[host_id] = answer
        else:
            out.append((host_id, answer))
    return out


def _literal(addr: str) -> _Addr | None:
    text = addr.strip().removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 4:
        return (socket.AF_INET, (str(ip), 0))
    return (socket.AF_INET6, (str(ip), 0, 0, 0))


def _resolve(name: str) -> _Addr | str:
    """The first TCP address for a name, or the resolver's reason as text."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {name}: {exc.strerror or exc}"
    except UnicodeError:  # an IDNA label too long or otherwise malformed
        return f"cannot resolve {name}: not a valid host name"
    for family, _, _, _, sockaddr in infos:
        if family == socket.AF_INET:
            return (socket.AF_INET, (str(sockaddr[0]), 0))
        if family == socket.AF_INET6:
            scope = int(sockaddr[3]) if len(sockaddr) > 3 else 0  # link-local needs it
            return (socket.AF_INET6, (str(sockaddr[0]), 0, 0, scope))
    return f"cannot resolve {name}: no IPv4 or IPv6 address"


def _limit(workers: int) -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return workers
    return max(1, min(workers, soft - _FD_HEADROOM))


def _probe(
    probes: list[tuple[str, _Addr, int]], timeout: float, limit: int
) -> list[tuple[str, int]]:
    """Run every probe with at most `limit` sockets open; return (host_id, port) that opened."""
    found: list[tuple[str, int]] = []
    pending = deque(probes)
    # In-flight probes in start order: with one timeout for all, the oldest expires first.
    inflight: deque[tuple[float, socket.socket]] = deque()
    meta: dict[socket.socket, tuple[str, int]] = {}
    selector = selectors.DefaultSelector()
    stalls = 0
    try:
        while pending or meta:
            while pending and len(meta) < limit:
                host_id, (family, sockaddr), port = pending.popleft()
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                # Close with RST instead of FIN: no TIME_WAIT pile-up of local ports when
                # thousands of probes connect, and the service sees no half-open session.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                code = sock.connect_ex((sockaddr[0], port, *sockaddr[2:]))
                if code == 0:
                    found.append((host_id, port))
                    sock.close()
                elif code == errno.EINPROGRESS:
                    selector.register(sock, selectors.EVENT_WRITE, sock)
                    meta[sock] = (host_id, port)
                    inflight.append((time.monotonic() + timeout, sock))
                elif code == errno.EAGAIN and stalls < _MAX_STALLS:
                    # Linux: no free local port. Retry once probes in flight free some.
                    sock.close()
                    pending.appendleft((host_id, (family, sockaddr), port))
                    stalls += 1
                    if not meta:
                        time.sleep(0.01)
                    break
                else:
                    # Refused at once (common on loopback) or unreachable: not open.
                    sock.close()
                    stalls = 0
            if not meta:
                continue
            while inflight and inflight[0][1] not in meta:
                inflight.popleft()  # finished before its deadline
            wait = max(0.0, inflight[0][0] - time.monotonic()) if inflight else timeout
            for key, _ in selector.select(wait):
                sock = key.data
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error == 0:
                    found.append(meta[sock])
                selector.unregister(sock)
                del meta[sock]
                sock.close()
            now = time.monotonic()
            while inflight and inflight[0][0] <= now:
                _, sock = inflight.popleft()
                if sock in meta:  # no answer in time: filtered or dropped, so not open
                    selector.unregister(sock)
                    del meta[sock]
                    sock.close()
    finally:
        for sock in meta:
            sock.close()
        selector.close()
    return found
