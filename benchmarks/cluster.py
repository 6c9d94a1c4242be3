"""What one machine can show of a cluster run, and the constants to model the rest.

    python benchmarks/cluster.py [--hosts 1000,4000,10000] [--workers 2] [--out DIR]

1. The recorder's ceiling: synthetic task events (and one audited command each) pushed
   through the run's event bus into a StateRecorder on a fresh database, as fast as one
   thread can: events per second and controller CPU per event. One controller records every
   event of a run, so this sets how many host-tasks a run can have per second.
2. Simulated fleets (`connection: sim`, connection/sim.py: every command costs a configured
   CPU time and latency, a connection a handshake's CPU; no SSH) of each size, applied
   `--no-programs` in this process (threads) and through a tcp:// Dask scheduler with
   `--workers` worker processes started here: wall time, and the CPU seconds of the
   controller, the workers and the scheduler (from /proc), per host and per host-task.

Prints a table and writes DIR/cluster.json and DIR/cluster.md (default benchmarks/results/
cluster). docs/distributed.md turns the constants into workers needed for a fleet size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DASK = str(Path(PYTHON).parent / "dask")
TASKS = 3
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - command: "true"
    - command: "echo {{ inventory_hostname }}"
    - shell: "test -d /tmp"
"""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def recorder_ceiling(events: int) -> dict[str, float]:
    """Events per second one StateRecorder writes, and controller CPU per event."""
    from machineroom.connection.base import CommandResult
    from machineroom.events import EventBus, TaskFinished
    from machineroom.state import open_state
    from machineroom.state.recorder import StateRecorder

    folder = Path(tempfile.mkdtemp(prefix="mr-rec-"))
    try:
        store = open_state(folder / "state.db")
        hosts = [f"h{i:05d}" for i in range(1000)]
        run_id = store.start_run("apply", "bench", args={}, playbook="bench.yml")
        recorder = StateRecorder(store, run_id, check=False, playbook="bench.yml")
        bus = EventBus([recorder])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n in range(events):
            host = hosts[n % len(hosts)]
            command = CommandResult(f"echo {n}", 0, "", "", 0.01)
            recorder.record_command(host, command)
            bus.emit(
                TaskFinished(host, f"site.yml:{n % 10}", f"task {n % 10}", "main", "changed",
                             0.01, msg="", stdout=f"{n}\n")
            )  # fmt: skip
        emitted = time.perf_counter() - wall0
        recorder.close()
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        store.close()
        return {
            "events": events,
            "emit_s": round(emitted, 3),
            "wall_s": round(wall, 3),
            "events_per_s": round(events / wall),
            "cpu_us_per_event": round(cpu / events * 1e6, 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_fleet(folder: Path, hosts: int) -> None:
    lines = ["all:", "  vars:", "    connection: sim", "    user: sim", "  hosts:"]
    lines += [f"    s{i:05d}: {{host: sim{i}}}" for i in range(hosts)]
    (folder / "inventory.yml").write_text("\n".join(lines) + "\n")
    (folder / "site.yml").write_text(PLAYBOOK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A tcp:// scheduler and `workers` worker processes (2 threads each) on loopback."""

    def __init__(self, folder: Path, workers: int) -> None:
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        log = open(folder / "dask.log", "ab")  # noqa: SIM115 -- closed in stop()
        self.log = log
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log, stderr=log,
        )  # fmt: skip
        worker = [DASK, "worker", self.address, "--nthreads", "2", "--no-nanny"]
        worker += ["--no-dashboard", "--memory-limit", "0"]
        self.workers = [
            subprocess.Popen([*worker, "--name", f"w{i}"], stdout=log, stderr=log)
            for i in range(workers)
        ]
        self._wait(workers)

    def _wait(self, workers: int) -> None:
        from distributed import Client

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with Client(self.address, timeout=10) as client:
                    if len(client.scheduler_info(n_workers=-1)["workers"]) >= workers:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit("the dask workers did not come up")

    def cpu(self) -> tuple[float, float]:
        """(scheduler, workers) CPU seconds so far."""
        return cpu_seconds(self.scheduler.pid), sum(cpu_seconds(w.pid) for w in self.workers)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            proc.wait(timeout=30)
        self.log.close()


def apply(folder: Path, hosts: int, cluster: Cluster | None, forks: int) -> dict[str, float]:
    """One `apply` of the sim fleet; wall time and CPU seconds by part."""
    state = folder / f"state-{hosts}-{'cluster' if cluster else 'local'}.db"
    args = [PYTHON, "-m", "machineroom", "apply", "site.yml", "-i", "inventory.yml"]
    args += ["--state", str(state), "--no-programs", "-f", str(forks)]
    if cluster is not None:
        args += ["--cluster", cluster.address]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sched0, workers0 = cluster.cpu() if cluster else (0.0, 0.0)
    started = time.perf_counter()
    done = subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"apply failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr}")
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    controller = (after_children.ru_utime + after_children.ru_stime) - (
        before_children.ru_utime + before_children.ru_stime
    )
    sched1, workers1 = cluster.cpu() if cluster else (0.0, 0.0)
    host_tasks = hosts * TASKS
    return {
        "hosts": hosts,
        "mode": "cluster" if cluster else "local",
        "wall_s": round(wall, 2),
        "controller_cpu_s": round(controller, 2),
        "workers_cpu_s": round(workers1 - workers0, 2),
        "scheduler_cpu_s": round(sched1 - sched0, 2),
        "controller_ms_per_host_task": round(controller / host_tasks * 1000, 3),
        "workers_ms_per_host": round((workers1 - workers0) / hosts * 1000, 2),
        "scheduler_ms_per_host": round((sched1 - sched0) / hosts * 1000, 3),
        "host_tasks_per_s": round(host_tasks / wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1000,4000,10000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--forks", type=int, default=200, help="-f of every apply")
    parser.add_argument("--local-max", type=int, default=4000, help="largest run without cluster")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cluster")
    args = parser.parse_args()
    sizes = [int(n) for n in args.hosts.split(",")]
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "forks": args.forks,
        "load1_start": os.getloadavg()[0],
        "recorder": recorder_ceiling(args.events),
        "runs": [],
    }
    print("recorder:", results["recorder"], flush=True)
    folder = Path(tempfile.mkdtemp(prefix="mr-cluster-bench-"))
    cluster = Cluster(folder, args.workers)
    runs: list[dict[str, float]] = []
    try:
        for hosts in sizes:
            write_fleet(folder, hosts)
            for mode in ("local", "cluster"):
                if mode == "local" and hosts > args.local_max:
                    continue
                row = apply(folder, hosts, cluster if mode == "cluster" else None, args.forks)
                runs.append(row)
                print(row, flush=True)
    finally:
        cluster.stop()
        if runs and len(runs) == sum(1 + (n <= args.local_max) for n in sizes):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder} (its dask.log) for a look", flush=True)
    results["runs"] = runs
    results["load1_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "cluster.md").write_text(render(results))
    print(render(results))


def render(results: dict[str, object]) -> str:
    recorder = results["recorder"]
    assert isinstance(recorder, dict)
    lines = [
        f"# Cluster benchmark, {results['date']} ({results['cpus']} CPUs, load "
        f"{results['load1_start']:.1f} -> {results['load1_end']:.1f})",
        "",
        f"Every apply: `--no-programs -f {results['forks']}`, 3 tasks a host, sim hosts "
        "(30 ms handshake CPU, 1 ms CPU + 1 ms latency a command).",
        "",
        f"Recorder: {recorder['events_per_s']} events/s ({recorder['cpu_us_per_event']} us of "
        f"controller CPU per event, {recorder['events']} task events + as many audited commands)",
        "",
        "| hosts | mode | wall s | controller CPU s | workers CPU s | scheduler CPU s | "
        "controller ms/host-task | workers ms/host | scheduler ms/host | host-tasks/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['hosts']} | {row['mode']} | {row['wall_s']} | {row['controller_cpu_s']} | "
            f"{row['workers_cpu_s']} | {row['scheduler_cpu_s']} | "
            f"{row['controller_ms_per_host_task']} | {row['workers_ms_per_host']} | "
            f"{row['scheduler_ms_per_host']} | {row['host_tasks_per_s']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
