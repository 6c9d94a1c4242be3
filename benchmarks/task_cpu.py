"""Host CPU per task of the benchmark workload: what each task's sh script costs the target.

    .venv/bin/python benchmarks/task_cpu.py [--hosts 4] [--rounds 3] [--json out.json]

Starts a few lab hosts (machineroom.lab; /tmp/lab-lean-cpu on 127.0.41.101.. by default) and
measures the "env" workload (benchmarks/workload/site_nofacts.yml: 10 tasks) two ways:

1. Scripts alone. Each task's RemoteStep is built here as the executor builds it (same
   arguments, the role's files, the template rendered with the play's vars), then run on
   host 1 through `nsenter` into its namespaces, `sh -c SCRIPT` as a connection runs it,
   the content on stdin. CPU is the wait4 rusage of that process tree (the shell and every
   program it ran), less the same for `sh -c true`: the script's own cost. A round runs the
   10 tasks in order on a clean /srv/bench (first run), then again (re-run); rounds are
   repeated and the median kept. Once more under `strace -f -e execve`, the programs each
   script starts are counted (the shell itself not included). Script bytes are len(script).
2. A whole `machineroom apply` on all the hosts, first run then re-run, and the CPU the
   hosts' sshd listeners reaped meanwhile (benchmarks/remote_cpu.py; the run's connections
   are closed when it exits, and their children reaped before the reading), per task and
   host; and the same for 10 `raw: "true"` tasks (the per-command floor of the transport).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from machineroom.errors import Location
from machineroom.lab import Lab, start_lab, stop_lab
from machineroom.modules import get_module
from machineroom.modules.base import ModuleContext, RemoteStep
from machineroom.playbook.args import prepare_args

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
WORKLOAD = BENCH / "workload"
ROLE = WORKLOAD / "roles" / "env"
MACHINEROOM = Path(sys.executable).with_name("machineroom")
TARGET = "srv/bench"

sys.path.insert(0, str(BENCH))
from remote_cpu import remote_cpu  # noqa: E402  (a script beside this one, not a package)
from run import host_roots, verify  # noqa: E402


@dataclass(frozen=True)
class Task:
    """One workload task: its name, module and the step it sends."""

    name: str
    module: str
    step: RemoteStep


def play_vars() -> dict[str, Any]:
    """The vars of the workload's play (site_nofacts.yml)."""
    play = yaml.safe_load((WORKLOAD / "site_nofacts.yml").read_text())[0]
    return dict(play.get("vars", {}))


def workload_tasks(check: bool = False, diff: bool = False) -> list[Task]:
    """The 10 tasks of the role, built into RemoteSteps as a run would build them."""
    vars_ = play_vars()
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True)

    def render(src: str, **options: Any) -> str:
        return env.from_string((ROLE / "templates" / src).read_text()).render(vars_)

    ctx = ModuleContext(
        host_id="h1",
        check=check,
        diff=diff,
        vars=vars_,
        read_file=lambda src: (ROLE / "files" / src).read_bytes(),
        render_template=render,
    )
    tasks = []
    for spec in yaml.safe_load((ROLE / "tasks" / "main.yml").read_text()):
        name = spec["name"]
        module_name = next(k for k in spec if k not in ("name", "args"))
        module = get_module(module_name)
        raw = spec[module_name]
        args = dict(raw) if isinstance(raw, Mapping) else {module.free_form: raw}
        args.update(spec.get("args", {}))
        args = prepare_args(module_name, args, module.schema, Location(str(ROLE)))
        step = module.build(args, ctx)
        assert isinstance(step, RemoteStep), f"{name}: no remote step"
        tasks.append(Task(name, module_name, step))
    return tasks


# ------------------------------------------------------------------------ scripts alone
def host_pid1(lab: Lab, index: int = 0) -> int:
    """PID 1 of a lab host: the only child of the `unshare` the lab spawned."""
    pid = json.loads(Path(lab.lab_dir, "hosts.json").read_text())["pids"][index]
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def nsenter(pid1: int) -> list[str]:
    """argv prefix that runs a command inside the host (mount, pid, uts, ipc namespaces)."""
    return ["nsenter", "-t", str(pid1), "-m", "-p", "-u", "-i", "-r", "-w"]


def stdin_bytes(step: RemoteStep) -> bytes:
    """What the connection would send on the script's stdin."""
    if step.stdin is None:
        return b""
    if isinstance(step.stdin, bytes):
        return step.stdin
    return Path(step.stdin).read_bytes()


def run_cpu(argv: list[str], data: bytes) -> tuple[float, int]:
    """(user+system seconds of argv's whole tree, exit code)."""
    with tempfile.TemporaryFile() as inp:
        inp.write(data)
        inp.seek(0)
        proc = subprocess.Popen(argv, stdin=inp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"{argv[-1][:80]!r} failed ({rc}): {err.decode()[-400:]}")
    return usage.ru_utime + usage.ru_stime, rc


def reset_host(pid1: int) -> None:
    """Remove the workload's folder on the host (through its root, no shell inside)."""
    shutil.rmtree(Path(f"/proc/{pid1}/root") / TARGET, ignore_errors=True)


TRACE = ["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3"]


def traced(pid1: int, task: Task, work: Path) -> tuple[int, int]:
    """(processes forked, programs started) by one run of the task's script.

    nsenter's own fork and the exec of nsenter and of sh are left out: what remains are the
    script's subshells, command substitutions and pipelines, and its external programs."""
    trace = work / "trace.txt"
    argv = [*TRACE, "-o", str(trace), *nsenter(pid1), "sh", "-c", task.step.script]
    run_cpu(argv, stdin_bytes(task.step))
    lines = trace.read_text().splitlines()
    # a call another process interrupted shows as "<... clone3 resumed>" with its result
    execs = sum(1 for ln in lines if re.search(r"execve(\(| resumed>).*= 0$", ln))
    forks = sum(1 for ln in lines if re.search(r"\b(v?fork|clone3?)(\(| resumed>).*= [1-9]", ln))
    return max(forks - 1, 0), max(execs - 2, 0)


def process_counts(pid1: int, tasks: list[Task], work: Path) -> dict[str, list[int]]:
    """Forks and programs of each script on a clean host (first run), then again (re-run)."""
    reset_host(pid1)
    out: dict[str, list[int]] = {}
    for phase in ("first", "rerun"):
        counts = [traced(pid1, task, work) for task in tasks]
        out[f"forks_{phase}"] = [c[0] for c in counts]
        out[f"programs_{phase}"] = [c[1] for c in counts]
    return out


def script_cpu(pid1: int, tasks: list[Task], rounds: int) -> dict[str, list[float]]:
    """Median ms per task, first run and re-run, less the cost of `sh -c true`."""
    base = statistics.median(
        run_cpu([*nsenter(pid1), "sh", "-c", "true"], b"")[0] for _ in range(max(rounds, 5) * 4)
    )
    first: list[list[float]] = [[] for _ in tasks]
    rerun: list[list[float]] = [[] for _ in tasks]
    for _ in range(rounds):
        reset_host(pid1)
        for phase in (first, rerun):
            for i, task in enumerate(tasks):
                argv = [*nsenter(pid1), "sh", "-c", task.step.script]
                phase[i].append(run_cpu(argv, stdin_bytes(task.step))[0])
    return {
        "baseline_ms": [round(base * 1000, 2)],
        "first": [round((statistics.median(x) - base) * 1000, 2) for x in first],
        "rerun": [round((statistics.median(x) - base) * 1000, 2) for x in rerun],
    }


# ------------------------------------------------------------------------ whole runs
def write_inventory(lab: Lab, work: Path) -> Path:
    """The bench group of every lab host, as benchmarks/run.py writes it."""
    inv = (
        "all:\n  vars:\n    ansible_user: root\n"
        f"    ansible_ssh_private_key_file: {lab.key}\n"
        "  children:\n    bench:\n      hosts:\n"
    )
    inv += "".join(f"        {h.name}: {{ansible_host: {h.address}}}\n" for h in lab.hosts)
    path = work / "inventory.yml"
    path.write_text(inv)
    return path


FLOOR_BOOK = """- name: floor
  hosts: bench
  gather_facts: false
  tasks:
""" + "".join(f'    - name: t{i}\n      raw: "true"\n' for i in range(10))


def listeners_idle(lab: Lab) -> bool:
    """True when no host's sshd listener has a connection child left to reap."""
    for pid in json.loads(Path(lab.lab_dir, "hosts.json").read_text())["pids"]:
        init = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
        for child in Path(f"/proc/{init}/task/{init}/children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() != "sshd":
                continue
            if Path(f"/proc/{child}/task/{child}/children").read_text().split():
                return False
    return True


def wait_idle(lab: Lab, timeout: float = 30) -> None:
    """Wait until the listeners reaped every connection (the condition, polled)."""
    deadline = time.monotonic() + timeout
    while not listeners_idle(lab):
        if time.monotonic() > deadline:
            raise RuntimeError("sshd connections still open after the run")
        time.sleep(0.02)


def changes(text: str) -> int:
    """Changes the recap reports, all hosts summed."""
    return sum(int(n) for n in re.findall(r"^\S+\s*: ok=\d+\s+changed=(\d+)", text, re.M))


def apply_cpu(
    lab: Lab, work: Path, book: Path, inv: Path, extra: list[str], changed: bool | None = None
) -> tuple[float, float]:
    """(hosts' CPU seconds, wall seconds) of one `machineroom apply` of `book`; `changed`:
    whether the run must report changes (None: either)."""
    argv = [str(MACHINEROOM), "apply", str(book), "-i", str(inv), *extra,
            "--known-hosts", lab.known_hosts, "--state", str(work / "state.db")]  # fmt: skip
    wait_idle(lab)
    before = remote_cpu(lab.lab_dir)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=BENCH)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"apply failed ({done.returncode}): {done.stdout[-2000:]}")
    if changed is not None and (changes(done.stdout) > 0) != changed:
        raise RuntimeError(f"expected changed={changed}: {done.stdout[-2000:]}")
    wait_idle(lab)
    return remote_cpu(lab.lab_dir) - before, wall


def whole_runs(lab: Lab, work: Path, rounds: int, extra: list[str]) -> dict[str, float]:
    """Median host CPU ms per task and host: workload first run, re-run, and the raw floor."""
    inv = write_inventory(lab, work)
    floor = work / "floor.yml"
    floor.write_text(FLOOR_BOOK)
    per = len(lab.hosts) * 10 / 1000
    first, rerun, raw, walls = [], [], [], []
    book = WORKLOAD / "site_nofacts.yml"
    for _ in range(rounds):
        for index in range(len(lab.hosts)):
            reset_host(host_pid1(lab, index))
        cpu, wall = apply_cpu(lab, work, book, inv, extra, changed=True)
        first.append(cpu / per)
        if problems := verify(host_roots(lab)):
            raise RuntimeError(f"the first run left: {problems[:5]}")
        cpu, wall = apply_cpu(lab, work, book, inv, extra, changed=False)
        rerun.append(cpu / per)
        walls.append(wall)
        raw.append(apply_cpu(lab, work, floor, inv, extra)[0] / per)
    return {
        "first_ms": round(statistics.median(first), 2),
        "rerun_ms": round(statistics.median(rerun), 2),
        "raw_true_ms": round(statistics.median(raw), 2),
        "rerun_wall_s": round(statistics.median(walls), 3),
    }


def main() -> None:
    """Start the lab, measure, print a table (and JSON with --json), stop the lab."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lab-dir", default="/tmp/lab-lean-cpu")
    parser.add_argument("--net", default="127.0.41")
    parser.add_argument("--first", type=int, default=101, help="first host's address byte")
    parser.add_argument("--no-apply", action="store_true", help="scripts alone only")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument(
        "--apply-args", default="", help="more `machineroom apply` options, e.g. --no-programs"
    )
    args = parser.parse_args()
    tasks = workload_tasks()
    work = Path(args.lab_dir + "-work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lab = start_lab(args.hosts, args.lab_dir, net=args.net, first=args.first)
    try:
        pid1 = host_pid1(lab)
        cpu = script_cpu(pid1, tasks, args.rounds)
        procs = process_counts(pid1, tasks, work)
        whole = {} if args.no_apply else whole_runs(lab, work, args.rounds, args.apply_args.split())
    finally:
        stop_lab(args.lab_dir)
    rows = [
        {
            "task": t.name,
            "module": t.module,
            "script_bytes": len(t.step.script.encode()),
            "first_ms": cpu["first"][i],
            "rerun_ms": cpu["rerun"][i],
            **{key: counts[i] for key, counts in procs.items()},
        }
        for i, t in enumerate(tasks)
    ]
    print(f"scripts alone (host 1, median of {args.rounds}; `sh -c true` = "
          f"{cpu['baseline_ms'][0]} ms, subtracted)")  # fmt: skip
    print(f"{'task':<20} {'module':<11} {'bytes':>6} {'first ms':>9} {'rerun ms':>9} "
          f"{'forks/progs 1st':>16} {'forks/progs re':>15}")  # fmt: skip
    for r in rows:
        print(f"{r['task']:<20} {r['module']:<11} {r['script_bytes']:>6} {r['first_ms']:>9} "
              f"{r['rerun_ms']:>9} {r['forks_first']:>8}/{r['programs_first']:<7} "
              f"{r['forks_rerun']:>7}/{r['programs_rerun']:<7}")  # fmt: skip
    for key in ("first_ms", "rerun_ms"):
        print(f"mean {key}: {statistics.mean(r[key] for r in rows):.2f}")
    if whole:
        print(f"whole apply, {args.hosts} hosts, host CPU per task and host: {whole}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tasks": rows, "cpu": cpu, "apply": whole}))


if __name__ == "__main__":
    main()
