"""Fleet benchmark: collection time on N real sshd hosts, and a month of samples on disk.

    .venv/bin/python benchmarks/fleet.py --hosts 50 --rounds 5

1. Starts N lab hosts, runs `machineroom collect all` ROUNDS times (a subprocess, as a user
   runs it) and reports the median wall time and the time the command itself reports.
2. Fills a fresh state database with a month of 5-minute samples for the same N hosts, each
   with the metrics a real collection of a lab host produced, through the store's own
   `record_collections` (one transaction per collection, as `collect` does), and reports the
   file size, bytes a sample, and how long typical reads take (one metric over 24 h / 30 d,
   every host's status, pruning a day).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machineroom.lab import start_lab, stop_lab
from machineroom.state import open_state
from machineroom.state.metrics import HostCollection, now_unix

MONTH = 30 * 86400
STEP = 300


def collect_timing(
    hosts: int, rounds: int, lab_dir: str, net: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of `machineroom collect all` on `hosts` lab hosts; one host's metrics."""
    lab = start_lab(hosts, lab_dir, net=net)
    try:
        work = Path(tempfile.mkdtemp(prefix="mr-fleet-bench-"))
        (work / "inventory.yml").write_text(Path(lab.inventory).read_text())
        (work / ".machineroom").mkdir(mode=0o700)
        (work / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
        walls, reported = [], []
        metrics: dict[str, float] = {}
        for _ in range(rounds):
            started = time.monotonic()
            out = subprocess.run(
                [sys.executable, "-m", "machineroom", "collect", "all", "--json"],
                cwd=work,
                capture_output=True,
                text=True,
                check=False,
            )
            walls.append(time.monotonic() - started)
            data = json.loads(out.stdout)
            reported.append(float(data["seconds"]))
            metrics = data["hosts"][0]["metrics"]
            assert data["unreachable"] == 0, out.stderr
            time.sleep(1.0)
        return (
            {
                "wall_median": statistics.median(walls),
                "wall_min": min(walls),
                "collect_median": statistics.median(reported),
            },
            metrics,
        )
    finally:
        stop_lab(lab_dir)


def month_of_samples(hosts: int, metrics: dict[str, float], path: Path) -> dict[str, float]:
    """Fill `path` with a month of 5-minute samples; sizes and read times."""
    store = open_state(path)
    end = now_unix() - now_unix() % STEP
    start = end - MONTH
    rng = random.Random(1)
    names = sorted(metrics)
    started = time.monotonic()
    for at in range(start, end, STEP):
        batch = [
            HostCollection(
                f"host{i:03d}",
                at,
                True,
                metrics={n: round(metrics[n] * (0.9 + 0.2 * rng.random()), 2) for n in names},
            )
            for i in range(hosts)
        ]
        store.metrics.record_collections(batch)
    fill = time.monotonic() - started
    samples = hosts * (len(names) + 1) * (MONTH // STEP)  # +1: `up`

    def timed(func: object, repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            t = time.monotonic()
            func()  # type: ignore[operator]
            times.append(time.monotonic() - t)
        return statistics.median(times) * 1000

    result = {
        "hosts": hosts,
        "metrics_per_host": len(names) + 1,
        "samples": samples,
        "fill_seconds": fill,
        "read_24h_ms": timed(lambda: store.metrics.metric_series("host007", "load1", end - 86400)),
        "read_30d_ms": timed(lambda: store.metrics.metric_series("host007", "load1", start)),
        "status_all_ms": timed(lambda: store.metrics.host_statuses()),
        "prune_day_ms": timed(lambda: store.metrics.prune_samples(start + 86400), repeat=1),
    }
    store.close()
    size = path.stat().st_size + sum(
        p.stat().st_size for p in path.parent.glob(path.name + "-*") if p.exists()
    )
    result["bytes"] = size
    result["bytes_per_sample"] = size / samples
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lab-dir", default="/tmp/lab-mr-fleetbench")
    parser.add_argument("--net", default="127.0.21")
    parser.add_argument("--db", default=None, help="Where to build the month of samples.")
    parser.add_argument("--no-month", action="store_true", help="Only time the collection.")
    args = parser.parse_args()
    timing, metrics = collect_timing(args.hosts, args.rounds, args.lab_dir, args.net)
    print(
        f"collect all, {args.hosts} hosts, {args.rounds} rounds: "
        f"wall median {timing['wall_median']:.2f} s (min {timing['wall_min']:.2f} s), "
        f"collection itself {timing['collect_median']:.2f} s",
        flush=True,
    )
    if args.no_month:
        return
    db = Path(args.db or tempfile.mkdtemp(prefix="mr-fleet-month-")) / "state.db"
    if db.exists():
        os.unlink(db)
    month = month_of_samples(args.hosts, metrics, db)
    print(
        f"a month of 5-minute samples, {month['hosts']} hosts x {month['metrics_per_host']} "
        f"metrics = {month['samples']:,} samples: {month['bytes'] / 2**20:.0f} MiB "
        f"({month['bytes_per_sample']:.1f} bytes a sample), filled in "
        f"{month['fill_seconds']:.0f} s\n"
        f"reads: one metric 24 h {month['read_24h_ms']:.2f} ms, 30 d {month['read_30d_ms']:.1f} ms;"
        f" every host's status {month['status_all_ms']:.1f} ms; pruning a day "
        f"{month['prune_day_ms']:.0f} ms\ndatabase: {db}"
    )


if __name__ == "__main__":
    main()
