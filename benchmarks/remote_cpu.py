"""CPU seconds the hosts of a lab spent on SSH sessions so far (all hosts summed).

    python benchmarks/remote_cpu.py /tmp/lab-mr-bench

Each host's sshd listener reaps its per-connection children when a connection closes; their
CPU (and their children's: the shells and programs a command ran) lands in the listener's
cutime/cstime. Read it before and after a run whose connections have closed (`wait_closed`):
the difference is the remote CPU of that run. On this lab the hosts share the controller's
cores.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def listeners(lab_dir: str) -> list[int]:
    """PIDs of every host's sshd listener: the sshd child of the host's PID 1."""
    found = []
    for pid in json.loads(Path(lab_dir, "hosts.json").read_text())["pids"]:
        init = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
        for child in Path(f"/proc/{init}/task/{init}/children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == "sshd":
                found.append(int(child))
    return found


def remote_cpu(lab_dir: str, pids: list[int] | None = None) -> float:
    """Seconds of user + system CPU of every host's sshd listener and its reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in listeners(lab_dir) if pids is None else pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


def open_sessions(pids: list[int]) -> int:
    """Connection processes the listeners have not reaped yet (their CPU is not counted)."""
    return sum(len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()) for pid in pids)


def wait_closed(pids: list[int], timeout: float = 30) -> int:
    """Wait until no listener has a connection child left; return how many remain (0 = all
    closed). A client that exited has closed its sockets, but sshd finishes on its own time."""
    deadline = time.monotonic() + timeout
    while (left := open_sessions(pids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


if __name__ == "__main__":
    print(f"{remote_cpu(sys.argv[1]):.2f}")
