"""Dashboard benchmark: page and API load times on a month of 5-minute samples for N hosts.

    .venv/bin/python benchmarks/dashboard.py --hosts 50 --days 30 [--db PATH] [--repeat 5]

1. Fills a state database (kept at --db if given and reused when it exists) through the
   store's own API: per host the metrics a real collection records (load, CPU, memory, two
   mounts, two interfaces, containers: 27 series), one collection every 5 minutes for DAYS
   days (`record_collections`, one transaction per collection, as `collect` does); plus 200
   apply runs of 10 tasks on every host with their audit entries, and some alerts.
2. Starts `machineroom serve` on a free 127.0.0.1 port and times each page and API call
   (REPEAT requests each after one warm-up; median and max), printing a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from machineroom.state import open_state
from machineroom.state.metrics import HostCollection, now_unix

STEP = 300


def metrics_at(rng: random.Random, n: int, step: int) -> dict[str, float]:
    """One collection's metrics for host n at step `step` (a daily wave plus noise)."""
    wave = 0.5 + 0.5 * math.sin(step / 288 * 2 * math.pi + n)
    used_root = 30 + n % 50 + step / 8640 * 5
    metrics = {
        "uptime_seconds": 86400.0 * 40 + step * STEP,
        "load1": round(0.2 + 2 * wave + rng.random() / 2, 2),
        "load5": round(0.2 + 1.8 * wave, 2),
        "load15": round(0.2 + 1.5 * wave, 2),
        "cpus": 4.0,
        "cpu_used_pct": round(10 + 60 * wave + rng.random() * 10, 1),
        "mem_total_bytes": 8.0 * 2**30,
        "mem_available_bytes": round(8 * 2**30 * (0.6 - 0.3 * wave)),
        "mem_used_pct": round(40 + 30 * wave, 1),
        "swap_used_pct": 0.0,
        "disk_used_pct:/": round(used_root, 1),
        "disk_used_bytes:/": round(used_root / 100 * 40 * 2**30),
        "disk_size_bytes:/": 40.0 * 2**30,
        "disk_used_pct:/var/lib/docker": round(used_root + 10, 1),
        "disk_used_bytes:/var/lib/docker": round((used_root + 10) / 100 * 100 * 2**30),
        "disk_size_bytes:/var/lib/docker": 100.0 * 2**30,
        "disk_used_pct_max": round(used_root + 10, 1),
        "net_rx_bytes:eth0": float(step * 1_000_000),
        "net_tx_bytes:eth0": float(step * 400_000),
        "net_rx_bytes:docker0": float(step * 10_000),
        "net_tx_bytes:docker0": float(step * 9_000),
        "net_rx_bytes_per_s": round(3300 * (1 + wave)),
        "net_tx_bytes_per_s": round(1300 * (1 + wave)),
        "containers_total": 5.0,
        "containers_running": 5.0 if rng.random() > 0.01 else 4.0,
        "node.status.peers": float(20 + n % 7),
    }
    return metrics


def fill(path: Path, hosts: int, days: int) -> None:
    """Write the synthetic month (see the module docstring)."""
    rng = random.Random(42)
    names = [f"node{n:03d}" for n in range(1, hosts + 1)]
    containers = [
        {
            "name": f"svc{i}",
            "image": f"registry.local/svc{i}:1.{i}",
            "state": "running",
            "status": "Up 3 days",
        }
        for i in range(5)
    ]
    steps = days * 86400 // STEP
    now = now_unix() // STEP * STEP
    started = time.monotonic()
    with open_state(path) as store:
        for n, name in enumerate(names):
            store.upsert_server(name, f"10.0.{n // 250}.{n % 250 + 1}", "deploy", "", 22)
            store.update_res(
                name, {"docker_compose_installed": True, "identity_cert_installed": True}
            )
        for step in range(steps):
            at = now - (steps - step) * STEP
            store.metrics.record_collections(
                [
                    HostCollection(
                        name, at, True, metrics=metrics_at(rng, n, step), containers=containers
                    )
                    for n, name in enumerate(names)
                ]
            )
            if step % 2000 == 0:
                print(
                    f"  {step}/{steps} collections, {time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                )
        for _ in range(200):
            run = store.start_run(
                "apply",
                "machineroom apply playbooks/site.yml --check",
                playbook="playbooks/site.yml",
            )
            for name in names:
                for t in range(10):
                    store.record_task_result(
                        run,
                        name,
                        f"stage {t} | task",
                        "ok" if t % 3 else "changed",
                        duration=0.1,
                        diff="-a\n+b\n" if t % 3 == 0 else "",
                    )
                store.record_command(run, name, "sh -c 'check and change'", 0, 0.05, "ok", "")
            store.finish_run(run, "ok", {})
    with sqlite3.connect(path) as db:
        for i in range(40):
            db.execute(
                "INSERT INTO alerts (rule, host_id, subject, severity, state, opened_at,"
                " resolved_at, value, message) VALUES ('disk_full', ?, '/', 'warning', ?, ?, ?,"
                " 91.0, 'disk / is 91% full')",
                [
                    names[i % hosts],
                    "open" if i < 5 else "resolved",
                    f"2030-01-01T00:{i:02d}:00.000Z",
                    None if i < 5 else f"2030-01-01T01:{i:02d}:00.000Z",
                ],
            )
    print(f"filled in {time.monotonic() - started:.0f} s", file=sys.stderr)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Fill (or reuse) the database, serve it, time the pages, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp(prefix="mr-dash-bench-")) / "state.db"
    if not path.exists():
        print(
            f"filling {path}: {args.hosts} hosts, {args.days} days of 5-minute samples",
            file=sys.stderr,
        )
        fill(path, args.hosts, args.days)
    with sqlite3.connect(path) as db:
        samples = db.execute("SELECT count(*) FROM samples").fetchone()[0]
        series = db.execute("SELECT count(*) FROM series").fetchone()[0]
    wal = Path(str(path) + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    with open_state(path) as store:
        token, _ = store.tokens.create_token(f"bench-{os.getpid()}", "viewer")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "machineroom",
            "serve",
            "--port",
            str(port),
            "--state",
            str(path),
            "--no-access-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/api/me")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        host = "node001"
        targets = [
            ("/", "overview page"),
            ("/?q=node01&status=up", "overview, filtered"),
            (f"/hosts/{host}", "host page, 24h (7 charts)"),
            (f"/hosts/{host}?window=7d", "host page, 7d"),
            (f"/hosts/{host}?window=30d", "host page, 30d"),
            ("/runs", "run history page"),
            ("/runs/200", "one run (50 hosts x 10 tasks)"),
            ("/alerts", "alerts page"),
            ("/audit", "audit log page"),
            ("/api/hosts", "API: hosts"),
            (f"/api/hosts/{host}", "API: one host"),
            (f"/api/hosts/{host}/metrics/cpu_used_pct?since=24h", "API: metric 24h"),
            (f"/api/hosts/{host}/metrics/cpu_used_pct?since=30d", "API: metric 30d (300 points)"),
            (
                f"/api/hosts/{host}/metrics/cpu_used_pct?since=30d&points=5000",
                "API: metric 30d, 5000 points",
            ),
            ("/api/runs", "API: runs"),
        ]
        print(
            f"\n{args.hosts} hosts, {series:,} series, {samples:,} samples, "
            f"database {size / 2**20:.0f} MiB\n"
        )
        print("| page | median ms | max ms | bytes |")
        print("|---|---:|---:|---:|")
        for url, label in targets:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.text[:200])
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            print(
                f"| {label} (`{url}`) | {statistics.median(times):.0f} | {max(times):.0f} "
                f"| {len(response.content):,} |"
            )
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
