"""The raw floor: N parallel paramiko connections, each running 10 trivial commands.

What any Python SSH engine must pay at least: interpreter start-up, importing paramiko, one
connection and key login per host (host key checked against known_hosts), then 10 sequential
`exec` round trips per host on a socket with TCP_NODELAY. One thread per host, at most
`--parallel` (50) at once: 500 handshakes at once under one GIL all finish late, and sshd
drops those still unauthenticated after its LoginGraceTime (120 s).

    python benchmarks/floor.py HOSTS_JSON KNOWN_HOSTS KEY [--commands 10] [--parallel 50]

HOSTS_JSON is a list of [address, port]. Prints one JSON line: connect and exec timings.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko


def run_host(address: str, port: int, known_hosts: str, key: paramiko.PKey, commands: int) -> dict:
    """Connect, run `true` `commands` times, return the timings of this host."""
    started = time.perf_counter()
    sock = socket.create_connection((address, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address,
        port,
        username="root",
        pkey=key,
        sock=sock,
        allow_agent=False,
        look_for_keys=False,
        timeout=30,
    )
    connected = time.perf_counter()
    transport = client.get_transport()
    assert transport is not None
    for _ in range(commands):
        channel = transport.open_session()
        channel.exec_command("true")
        if channel.recv_exit_status() != 0:
            raise RuntimeError(f"{address}: true failed")
        channel.close()
    done = time.perf_counter()
    client.close()
    return {"connect": connected - started, "execs": done - connected}


def main() -> None:
    """Run the hosts in threads, `--parallel` at once; print the timings as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hosts_json")
    parser.add_argument("known_hosts")
    parser.add_argument("key")
    parser.add_argument("--commands", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=50, help="hosts at once")
    args = parser.parse_args()
    hosts = json.loads(Path(args.hosts_json).read_text())
    key = paramiko.Ed25519Key.from_private_key_file(args.key)
    results: list[dict] = []
    errors: list[str] = []

    def one(address: str, port: int) -> None:
        try:
            results.append(run_host(address, port, args.known_hosts, key, args.commands))
        except Exception as exc:  # reported, and the exit code says the floor is not valid
            errors.append(f"{address}: {exc!r}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, min(args.parallel, len(hosts)))) as pool:
        list(pool.map(lambda host: one(*host), hosts))
    wall = time.perf_counter() - started
    report = {
        "hosts": len(hosts),
        "wall_in_process": wall,
        "connect_max": max((r["connect"] for r in results), default=0),
        "exec_per_command_mean": sum(r["execs"] for r in results)
        / max(1, len(results) * args.commands),
        "errors": errors,
    }
    print(json.dumps(report))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
