"""Side-by-side benchmark: machineroom, ansible-core (defaults and tuned), pyinfra, raw floor.

    .venv/bin/python benchmarks/run.py --hosts 1,10,50 --rounds 3 [--profile]

Starts max(hosts) lab hosts (machineroom.lab; /tmp/lab-mr-bench on 127.0.20.* by default),
installs ansible-core, pyinfra, matplotlib and pyinstrument into .cache/bench-tools (once),
then for each host count N runs the "env stage" workload (benchmarks/workload: 10 tasks per
host) with every tool, interleaved round by round: a first run on clean hosts (everything
changes) and an idempotent re-run (nothing changes). Each first run is checked on every host
(files, modes, contents) so that a broken run cannot look fast; each re-run must report no
change. Writes benchmarks/results/latest.{md,json,png}.

How each figure is taken (see benchmarks/README.md):
- wall: the tool's process, start to exit, interpreter start-up included.
- cpu: user+system seconds of the process and every descendant it waited for (wait4 rusage;
  ansible's ControlPersist masters live on after the run and are not counted).
- tree RSS: the peak, sampled every 0.1 s, of the summed RSS of the process and descendants.
- host CPU: every host's sshd listener and the sessions it reaped (remote_cpu.py), read
  before each run and after it, once its connections have closed.
- remote commands: every SSH session that runs a command (exec or subsystem) starts root's
  bash, which sources ~/.bashrc; the benchmark prepends one line to each host's /root/.bashrc
  that appends to /root/.bench-execs and counts the lines (same method for all tools).
- the hosts are read, reset and checked through /proc/<host pid 1>/root, not over SSH, so
  the bookkeeping adds no SSH traffic and no remote load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from remote_cpu import listeners, remote_cpu, wait_closed
from summary import TASKS, render_markdown, summarise

from machineroom.lab import Lab, start_lab, stop_lab

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
WORKLOAD = BENCH / "workload"
RESULTS = BENCH / "results"
TOOLS_VENV = ROOT / ".cache" / "bench-tools"
TOOLS_REQUIREMENTS = [
    "ansible-core>=2.17,<2.20",
    "pyinfra>=3,<4",
    "matplotlib",
    "pyinstrument",
    "py-spy",
]
MACHINEROOM = Path(sys.executable).with_name("machineroom")
TARGET = "/srv/bench"
COUNTER = "root/.bench-execs"
TOOLS = ["floor", "machineroom", "machineroom-nofacts", "machineroom-noprograms", "pyinfra",
         "ansible-tuned", "ansible-defaults"]  # fmt: skip
SLOW = "ansible-defaults"
# From this many hosts on, ansible-core runs only when asked (--ansible-large): at 50 hosts a
# run took 2-4 minutes and ansible-tuned's forks 3.2 GB; 500 forks would not fit in 24 GB.
LARGE = 200
NO_PROGRAMS = "machineroom-noprograms"


def has_no_programs() -> bool:
    """Whether `machineroom apply` has the --no-programs flag (one task, one command)."""
    out = subprocess.run([str(MACHINEROOM), "apply", "--help"], capture_output=True, text=True)
    return "--no-programs" in out.stdout


# ------------------------------------------------------------------------ environment
def ensure_tools() -> dict[str, str]:
    """Create the tools venv on first use; return the versions of what it holds."""
    python = TOOLS_VENV / "bin" / "python"
    if (
        not (TOOLS_VENV / "bin" / "ansible-playbook").exists()
        or not (TOOLS_VENV / "bin" / "pyinfra").exists()
    ):
        print(f"installing {', '.join(TOOLS_REQUIREMENTS)} into {TOOLS_VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TOOLS_REQUIREMENTS], check=True)
    code = (
        "import json, importlib.metadata as m;"
        "print(json.dumps({p: m.version(p) for p in "
        "['ansible-core', 'pyinfra', 'paramiko', 'matplotlib', 'pyinstrument']}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def machine_info() -> dict[str, str]:
    """CPU, cores, memory, kernel, OpenSSH and Python of this machine; machineroom's commit."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "os": _os_name(),
        "openssh": ssh.split(",")[0],
        "python": platform.python_version(),
        "machineroom": f"{version('machineroom')} ({git})",
        "machineroom_paramiko": version("paramiko"),
    }


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def load1() -> float:
    """The machine's 1-minute load average now (it lags: the previous run weighs in)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def runnable() -> int:
    """Processes runnable at this instant, machine-wide (minus this one)."""
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1


# ------------------------------------------------------------------------ lab hosts
@dataclass
class Hosts:
    """The lab, and each host's root file system as seen through its PID 1."""

    lab: Lab
    roots: list[Path]  # /proc/<pid 1 of host i>/root
    listeners: list[int]  # each host's sshd listener: its reaped sessions' CPU

    def first(self, n: int) -> list[Path]:
        return self.roots[:n]


def host_roots(lab: Lab) -> list[Path]:
    """Each host's PID 1 is the only child of the `unshare` the lab spawned."""
    pids = json.loads(Path(lab.lab_dir, "hosts.json").read_text())["pids"]
    roots = []
    for pid in pids:
        child = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
        roots.append(Path(f"/proc/{child}/root"))
    return roots


def install_counters(roots: list[Path]) -> None:
    """Make root's bash count every SSH session that runs a command (see module doc)."""
    line = f"echo x >> /{COUNTER}  # machineroom benchmark: one line per SSH command\n"
    for root in roots:
        bashrc = root / "root" / ".bashrc"
        text = bashrc.read_text() if bashrc.exists() else ""
        if line not in text:
            bashrc.write_text(line + text)


def reset_counters(roots: list[Path]) -> None:
    for root in roots:
        (root / COUNTER).write_text("")


def count_commands(roots: list[Path]) -> int:
    return sum(len((root / COUNTER).read_text().splitlines()) for root in roots)


def reset_targets(roots: list[Path]) -> None:
    """Remove the workload's folder on every host, all at once."""
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda r: shutil.rmtree(r / TARGET.lstrip("/"), ignore_errors=True), roots))


def expected_files() -> dict[str, tuple[int, str | None]]:
    """path -> (mode, content or None for a folder) that the workload must leave."""
    role = WORKLOAD / "roles" / "env"
    template = (role / "templates" / "app.conf.j2").read_text()
    for name, value in (("app_name", "shop"), ("app_port", "8080"), ("env_name", "staging")):
        template = template.replace("{{ " + name + " }}", value)
    return {
        "srv/bench/app": (0o755, None),
        "srv/bench/app/conf": (0o755, None),
        "srv/bench/app/data": (0o750, None),
        "srv/bench/app/motd.txt": (0o644, (role / "files" / "motd.txt").read_text()),
        "srv/bench/app/conf/env.sh": (0o755, (role / "files" / "env.sh").read_text()),
        "srv/bench/app/conf/app.conf": (0o644, template),
        "srv/bench/app/conf/settings": (0o644, "LOG_LEVEL=info\nWORKERS=4\n"),
        "srv/bench/app/data/initialized": (0o600, ""),
    }


def verify(roots: list[Path]) -> list[str]:
    """Problems with the end state on the given hosts; [] when every host is as expected."""
    expected = expected_files()
    problems = []
    for index, root in enumerate(roots, 1):
        for rel, (mode, content) in expected.items():
            path = root / rel
            try:
                st = path.stat()
            except FileNotFoundError:
                problems.append(f"h{index}: /{rel} missing")
                continue
            if st.st_mode & 0o7777 != mode:
                problems.append(f"h{index}: /{rel} mode {st.st_mode & 0o7777:o}, want {mode:o}")
            if content is not None and path.read_text().rstrip("\n") != content.rstrip("\n"):
                problems.append(f"h{index}: /{rel} content differs")
    return problems


# ------------------------------------------------------------------------ measuring
class TreeSampler(threading.Thread):
    """Peak summed RSS of a process and its descendants, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.stopping = threading.Event()
        self.page_kb = os.sysconf("SC_PAGE_SIZE") // 1024

    def tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    todo += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
            except OSError:
                pass
        return pids

    def sample(self) -> None:
        total = 0
        for pid in self.tree():
            with contextlib.suppress(OSError, IndexError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self.page_kb
        self.peak_kb = max(self.peak_kb, total)

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            self.sample()


def measure(
    argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = BENCH
) -> dict:
    """Run argv (output to `log`); wall, CPU, peak RSS of the tree, exit code."""
    full_env = dict(os.environ, **(env or {}))
    load, ready = load1(), runnable()
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=cwd, start_new_session=True,
        )  # fmt: skip
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        sampler.stopping.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": round(wall, 4),
        "cpu": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),  # the largest single process
        "tree_rss_mb": round(sampler.peak_kb / 1024, 1),
        "rc": proc.returncode,
        "load1": load,
        "runnable": ready,
    }


def kill_leftovers(marker: str) -> None:
    """SIGKILL, by PID, processes our runs left behind (ansible's ssh ControlPersist masters)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), 9)


def parse_changed(tool: str, text: str) -> int | None:
    """Total changes reported by the tool's own recap; None when it printed none."""
    if tool.startswith(("machineroom", "ansible")):
        found = re.findall(r"^\S+\s*: ok=\d+\s+changed=(\d+)", text, re.M)
        return sum(map(int, found)) if found else None
    if tool == "pyinfra":
        match = re.search(r"Grand total\s+\d+\s+(\S+)", text)
        return None if not match else (0 if match.group(1) == "-" else int(match.group(1)))
    return None


# ------------------------------------------------------------------------ the tools
@dataclass
class Setup:
    """Files of one host count N: inventories, configs, state database."""

    n: int
    work: Path
    lab: Lab

    def write(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        hosts = self.lab.hosts[: self.n]
        inv = (
            "all:\n  vars:\n    ansible_user: root\n"
            f"    ansible_ssh_private_key_file: {self.lab.key}\n"
            "  children:\n    bench:\n      hosts:\n"
        )
        inv += "".join(f"        {h.name}: {{ansible_host: {h.address}}}\n" for h in hosts)
        (self.work / "inventory.yml").write_text(inv)
        data = (
            f'"ssh_user": "root", "ssh_key": "{self.lab.key}", '
            f'"ssh_known_hosts_file": "{self.lab.known_hosts}", '
            '"ssh_strict_host_key_checking": "yes"'
        )
        py = "bench = [\n" + "".join(
            f'    ("{h.name}", {{"ssh_hostname": "{h.address}", {data}}}),\n' for h in hosts
        )
        (self.work / "inventory.py").write_text(py + "]\n")
        (self.work / "hosts.json").write_text(json.dumps([[h.address, h.port] for h in hosts]))
        known = f"-o UserKnownHostsFile={self.lab.known_hosts} -o GlobalKnownHostsFile=/dev/null"
        # ansible's default ssh_args, plus where the lab's host keys are
        (self.work / "ansible-defaults.cfg").write_text(
            "[defaults]\nhost_key_checking = True\n[ssh_connection]\n"
            f"ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s {known}\n"
            f"control_path_dir = {self.work}/cp\n"
        )
        (self.work / "ansible-tuned.cfg").write_text(
            f"[defaults]\nforks = {max(self.n, 5)}\nhost_key_checking = True\n"
            "interpreter_python = /usr/bin/python3\n"
            "[ssh_connection]\npipelining = True\n"
            "ssh_args = -o ControlMaster=auto -o ControlPersist=60s"
            f" -o KexAlgorithms=curve25519-sha256 {known}\n"
            f"control_path_dir = {self.work}/cp\n"
        )

    def command(self, tool: str) -> tuple[list[str], dict[str, str]]:
        bin_ = TOOLS_VENV / "bin"
        inv = str(self.work / "inventory.yml")
        if tool == "floor":
            argv = [sys.executable, str(BENCH / "floor.py"), str(self.work / "hosts.json"),
                    self.lab.known_hosts, self.lab.key]  # fmt: skip
            return argv, {}
        if tool.startswith("machineroom"):
            book = "site_nofacts.yml" if tool.endswith("nofacts") else "site.yml"
            argv = [str(MACHINEROOM), "apply", str(WORKLOAD / book), "-i", inv,
                    "--known-hosts", self.lab.known_hosts,
                    "--state", str(self.work / f"{tool}.db")]  # fmt: skip
            if tool == NO_PROGRAMS:
                argv.append("--no-programs")
            return argv, {}
        if tool == "pyinfra":
            argv = [str(bin_ / "pyinfra"), str(self.work / "inventory.py"),
                    str(WORKLOAD / "deploy.py"), "-y", "--parallel", str(self.n)]  # fmt: skip
            return argv, {}
        book = "site_nofacts.yml" if tool == "ansible-tuned" else "site.yml"
        env = {
            "ANSIBLE_CONFIG": str(self.work / f"{tool}.cfg"),
            "ANSIBLE_HOME": str(self.work / "ansible-home"),
        }
        return [str(bin_ / "ansible-playbook"), "-i", inv, str(WORKLOAD / book)], env


# ------------------------------------------------------------------------ the rounds
def run_tool(setup: Setup, hosts: Hosts, tool: str, rnd: int, logs: Path) -> list[dict]:
    """One tool in one round: first run then re-run (the floor: one run)."""
    roots = hosts.first(setup.n)
    argv, env = setup.command(tool)
    rows = []
    phases = ["floor"] if tool == "floor" else ["first", "rerun"]
    if tool != "floor":
        reset_targets(roots)
    for phase in phases:
        reset_counters(roots)
        log = logs / f"n{setup.n}-r{rnd}-{tool}-{phase}.log"
        # sessions of the previous run still closing would be charged to this one
        wait_closed(hosts.listeners)
        before = remote_cpu(setup.lab.lab_dir, hosts.listeners)
        row = measure(argv, log, env)
        kill_leftovers(str(setup.work / "cp"))
        unclosed = wait_closed(hosts.listeners)
        host_cpu = remote_cpu(setup.lab.lab_dir, hosts.listeners) - before
        text = log.read_text(errors="replace")
        commands = count_commands(roots)
        row.update(n=setup.n, round=rnd, tool=tool, phase=phase, commands=commands)
        row["host_cpu"] = None if unclosed else round(host_cpu, 2)
        row["cpu_ms_per_host_task"] = round(row["cpu"] * 1000 / (setup.n * TASKS), 2)
        row["host_cpu_ms_per_host_task"] = (
            None if unclosed else round(host_cpu * 1000 / (setup.n * TASKS), 2)
        )
        if tool == "floor":
            try:
                row["floor"] = json.loads(text.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                row["floor"] = None
        else:
            row["commands_per_task_host"] = round(commands / (setup.n * TASKS), 2)
            row["changed"] = parse_changed(tool, text)
            if found := re.search(r"^run \d+: \w+ in ([\d.]+)s", text, re.M):
                row["engine_seconds"] = float(found.group(1))  # machineroom: run start to end
            problems = verify(roots)
            if phase == "rerun" and row["changed"] not in (0, None):
                problems.insert(0, f"re-run reported {row['changed']} changes")
            if phase == "first" and row["changed"] == 0:
                problems.insert(0, "first run reported no change")
            row["problems"] = problems[:5]
        row["ok"] = row["rc"] == 0 and not row.get("problems")
        flag = "" if row["ok"] else f"  FAILED rc={row['rc']} {row.get('problems')} (log {log})"
        print(
            f"  N={setup.n:<3} r{rnd} {tool:<20} {phase:<5} {row['wall']:7.2f} s"
            f"  cpu {row['cpu']:6.2f} s  host cpu {host_cpu:6.2f} s"
            f"{f' ({unclosed} sessions unclosed)' if unclosed else ''}"
            f"  rss {row['tree_rss_mb']:6.1f} MB  cmds {commands:5d}"
            f"  load {row['load1']:.2f}{flag}",
            flush=True,
        )
        rows.append(row)
    return rows


def startup_times(logs: Path) -> dict[str, float]:
    """Interpreter start-up alone, and machineroom's CLI start-up (`--help`), median of 3."""
    out = {}
    for name, argv in (
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import paramiko'", [sys.executable, "-c", "import paramiko"]),
        ("machineroom --help", [str(MACHINEROOM), "--help"]),
        ("machineroom apply --help", [str(MACHINEROOM), "apply", "--help"]),
    ):
        walls = [measure(argv, logs / "startup.log")["wall"] for _ in range(3)]
        out[name] = round(statistics.median(walls), 3)
    return out


def profile(setup: Setup, hosts: Hosts, out_dir: Path) -> dict[str, str]:
    """Profile machineroom's re-run at N hosts: import times, py-spy stacks of the threads
    holding the GIL (Python CPU), pyinstrument of the main thread (wall)."""
    argv, _ = setup.command("machineroom")
    roots = hosts.first(setup.n)
    reset_targets(roots)
    subprocess.run(argv, capture_output=True, check=False)  # first run: the re-runs are idle
    files = {}
    imp = out_dir / f"profile-n{setup.n}-importtime.txt"
    with imp.open("w") as err:
        subprocess.run([sys.executable, "-X", "importtime", *argv], stderr=err,
                       stdout=subprocess.DEVNULL, check=False)  # fmt: skip
    files["importtime"] = str(imp)
    raw = out_dir / f"profile-n{setup.n}-pyspy.txt"
    subprocess.run(
        [str(TOOLS_VENV / "bin" / "py-spy"), "record", "--rate", "250", "--format", "raw",
         "--gil", "--threads", "-o", str(raw), "--", sys.executable, *argv],
        capture_output=True, check=False,
    )  # fmt: skip
    files["pyspy_collapsed"] = str(raw)
    # pyinstrument alone on the path: the tools venv's numpy would be imported by sqlite_utils
    site = next((TOOLS_VENV / "lib").glob("python*/site-packages"))
    only = setup.work / "pyinstrument-path"
    only.mkdir(exist_ok=True)
    if not (only / "pyinstrument").exists():
        (only / "pyinstrument").symlink_to(site / "pyinstrument")
    inst = out_dir / f"profile-n{setup.n}-pyinstrument.txt"
    subprocess.run(
        [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(inst),
         "-i", "0.0005", *argv],
        env=dict(os.environ, PYTHONPATH=str(only)), capture_output=True, check=False,
    )  # fmt: skip
    files["pyinstrument_main_thread"] = str(inst)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description="machineroom vs ansible-core vs pyinfra")
    parser.add_argument("--hosts", default="1,10,50", help="host counts, e.g. 1,10,50,200")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--slow-rounds",
        type=int,
        default=1,
        help="rounds of ansible-defaults at 50 hosts or more (it takes minutes)",
    )
    parser.add_argument("--tools", help=f"subset of {','.join(TOOLS)}, comma-separated")
    parser.add_argument(
        "--ansible-large",
        action="store_true",
        help=f"run ansible-core at {LARGE} hosts and more too (it takes many minutes)",
    )
    parser.add_argument("--lab-dir", default="/tmp/lab-mr-bench")
    # a /24 holds 254 hosts: the second net takes hosts 255 to 508
    parser.add_argument("--net", default="127.0.20,127.0.21", help="nets, comma-separated")
    parser.add_argument("--profile", action="store_true", help="profile machineroom's re-run")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    counts = [int(x) for x in args.hosts.split(",")]
    notes_tools = []
    asked = args.tools.split(",") if args.tools else TOOLS
    if unknown := set(asked) - set(TOOLS):
        parser.error(f"unknown tools: {', '.join(sorted(unknown))} (known: {', '.join(TOOLS)})")
    tools = [t for t in TOOLS if t in asked]
    if NO_PROGRAMS in tools and not has_no_programs():
        # the flag is new: an older machineroom runs without this line, asked or not
        tools.remove(NO_PROGRAMS)
        if args.tools:
            print(f"{NO_PROGRAMS} skipped: `machineroom apply` has no --no-programs", flush=True)
            notes_tools.append(f"{NO_PROGRAMS} was asked for but skipped: this machineroom's "
                               "`apply` has no --no-programs flag.")  # fmt: skip
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(args.lab_dir + "-work")
    shutil.rmtree(work, ignore_errors=True)
    logs = work / "logs"
    logs.mkdir(parents=True)

    versions = ensure_tools()
    machine = machine_info()
    started = time.perf_counter()
    # ~0.1 s a host to come up on this machine when it is busy
    lab = start_lab(max(counts), args.lab_dir, net=args.net, ready_timeout=max(30, max(counts) / 5))
    print(f"lab: {max(counts)} hosts up in {time.perf_counter() - started:.1f} s", flush=True)
    rows: list[dict] = []
    result: dict = {}
    try:
        hosts = Hosts(lab, host_roots(lab), listeners(lab.lab_dir))
        install_counters(hosts.roots)
        # the warm-up fills caches; a few hosts do that as well as 500 would
        warm = min(*counts, 10)
        setups = {n: Setup(n, work / f"n{n}", lab) for n in {*counts, warm}}
        for setup in setups.values():
            setup.write()
        if not args.no_warmup:  # byte-compile caches, first-import costs: not measured
            print(f"warm-up at {warm} hosts (not measured)", flush=True)
            for tool in tools:
                run_tool(setups[warm], hosts, tool, 0, logs)
        startup = startup_times(logs)
        for n in counts:
            for rnd in range(1, args.rounds + 1):
                for tool in tools:
                    if tool == SLOW and n >= 50 and rnd > args.slow_rounds:
                        continue
                    if tool.startswith("ansible") and n >= LARGE and not args.ansible_large:
                        continue
                    rows += run_tool(setups[n], hosts, tool, rnd, logs)
        profiles = profile(setups[max(counts)], hosts, out_dir) if args.profile else {}
    finally:
        if not args.keep_lab:
            stop_lab(args.lab_dir)
    # the raw rows first: a long run's figures survive a failure of what follows
    (work / "runs.json").write_text(json.dumps(rows, indent=1) + "\n")
    loads = [r["load1"] for r in rows] or [0.0]
    notes = [
        "Each run is a fresh process (interpreter start-up included). Before every first run "
        "the hosts' /srv/bench is removed; the re-run follows at once.",
        "Every first run and re-run was checked on every host (modes, contents) through the "
        "host's /proc/PID/root; a re-run must report 0 changes in the tool's own recap.",
        "CPU: user+system of the tool and the descendants it waited for (ansible's "
        "ControlPersist ssh masters outlive the run and are not counted; they are killed "
        "after each run so every run starts cold).",
        "Remote commands: SSH sessions that ran a command or subsystem (sftp), counted by a "
        "line root's ~/.bashrc appends on each host; the same method for every tool.",
        "ansible-tuned: forks = max(N, 5), pipelining, ControlPersist 60s, curve25519 kex, "
        "gather_facts: false, interpreter_python set; ansible-defaults: default config "
        "(forks 5, facts, interpreter discovery, no pipelining), known_hosts only added.",
        f"ansible-defaults at 50 hosts and more: {args.slow_rounds} round(s) only.",
        f"ansible-core at {LARGE} hosts and more: "
        + (
            "run (--ansible-large)."
            if args.ansible_large
            else "not run: a run took 2-4 minutes at 50 hosts, and ansible-tuned's 50 forks "
            "3.2 GB (--ansible-large runs it)."
        ),
        f"{NO_PROGRAMS}: `machineroom apply --no-programs`, site.yml: each task sent as its "
        "own remote command, as before per-host programs.",
        "Host CPU: user + system CPU of every host's sshd listener and the sessions it reaped "
        "(with the shells and programs they ran), read before a run and after it once every "
        "session has closed; the hosts share the controller's 2 cores. Per host-task figures "
        "divide by hosts × 10 tasks (the floor: 10 `true` commands).",
        *notes_tools,
        "pyinfra: --parallel N, `-y`; the `creates` guard is its idiom, a File fact checked "
        "while operations are planned.",
        "raw floor: one process, one thread per host (50 at most at once): paramiko connect "
        "+ key login (known_hosts checked), TCP_NODELAY, then 10 sequential `true` execs.",
    ]
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "machine": machine,
        "versions": versions,
        "hosts": counts,
        "tools": tools,
        "rounds": args.rounds,
        "load_range": [min(loads), max(loads)],
        "startup": startup,
        "runs": rows,
        "summary": summarise(rows, tools),
        "profiles": profiles,
        "notes": notes,
    }
    (out_dir / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "latest.md").write_text(render_markdown(result))
    subprocess.run(
        [str(TOOLS_VENV / "bin" / "python"), str(BENCH / "chart.py"),
         str(out_dir / "latest.json"), str(out_dir / "latest.png")], check=False,
    )  # fmt: skip
    print(render_markdown(result))


if __name__ == "__main__":
    main()
