"""CPU seconds the hosts of a lab spent on SSH sessions so far (all hosts summed).

    python benchmarks/remote_cpu.py /tmp/lab-mr-bench

Each host's sshd listener reaps its per-connection children when a connection closes; their
CPU (and their children's: the shells and programs a command ran) lands in the listener's
cutime/cstime. Read it before and after a run whose connections have closed: the difference
is the remote CPU of that run. On this lab the hosts share the controller's cores.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def remote_cpu(lab_dir: str) -> float:
    """Seconds of user + system CPU of every host's sshd listener and its reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in json.loads(Path(lab_dir, "hosts.json").read_text())["pids"]:
        init = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
        for child in Path(f"/proc/{init}/task/{init}/children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == "sshd":
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


if __name__ == "__main__":
    print(f"{remote_cpu(sys.argv[1]):.2f}")
