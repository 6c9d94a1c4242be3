"""Running a real Docker daemon inside lab hosts: shared by the docker stage and site tests.

Lab hosts have no CAP_NET_ADMIN (so a playbook cannot touch the machine's shared network):
the daemon the docker role starts runs, but containers cannot set up their network
namespace. `start_capable_daemon` restarts it from the machine with `nsenter` into the host's
namespaces and `unshare --net`: it then has its own, private network namespace, so whatever
it does to networking stays there. `BUILD_IMAGES` builds tiny images from Debian's
busybox-static with `docker import` (no Docker Hub). `clean_up` removes every container, stops
the daemon and removes its cgroup folders.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

# daemon.json for lab hosts: no bridge, no iptables, no forwarding or masquerading.
SAFE_DAEMON = {
    "bridge": "none",
    "iptables": False,
    "ip6tables": False,
    "ip-forward": False,
    "ip-masq": False,
}

# The images: busybox (static) only; the command decides how a service behaves.
BUILD_IMAGES = r"""
set -e
command -v busybox >/dev/null || apt-get install -y -q busybox-static >/dev/null
d=$(mktemp -d); mkdir -p "$d/bin"; cp "$(command -v busybox)" "$d/bin/busybox"
for a in sh sleep echo cat true false; do ln -s busybox "$d/bin/$a"; done
for tag in mr-app:1 mr-app:2; do
  tar -C "$d" -c . | docker import -c 'CMD ["/bin/sleep", "100000"]' - "$tag" >/dev/null
done
rm -rf "$d"
docker images --format '{{.Repository}}:{{.Tag}}' | sort
"""

# A tmpfs for the daemon's data (overlay2 does not work on the host's own overlay root).
DOCKER_TMPFS = (
    "mkdir -p /var/lib/docker && "
    "{ mountpoint -q /var/lib/docker || mount -t tmpfs -o size=2g tmpfs /var/lib/docker; }"
)

# What `clean_up` runs in the host as root.
CLEAN_UP = (
    'ids=$(docker ps -aq 2>/dev/null); [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1;'
    " service docker stop >/dev/null 2>&1;"
    " for p in $(pidof dockerd containerd 2>/dev/null); do kill $p; done; sleep 1;"
    " for d in /sys/fs/cgroup/*/docker; do"
    '   [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done; :'
)

Shell = Callable[[str], str]  # runs a command in the host as root, fails unless it succeeds


def host_init_pid(lab_dir: str, name: str) -> int:
    """The PID (on the machine) of the lab host's PID 1, found by its command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            len(argv) > 3
            and argv[1].endswith(b"host_init.sh")
            and argv[2:4] == [lab_dir.encode(), name.encode()]
        ):
            return int(entry.name)
    raise AssertionError(f"no PID 1 for lab host {name}")


def start_capable_daemon(lab_dir: str, name: str, sh: Shell) -> None:
    """Restart lab host `name`'s dockerd with CAP_NET_ADMIN, in a network namespace of its
    own (see the top); `sh` runs a command in that host as root."""
    sh("service docker stop >/dev/null 2>&1 || :; rm -f /var/run/docker-ssd.pid")
    pid = host_init_pid(lab_dir, name)
    subprocess.run(
        [
            "nsenter", "-t", str(pid), "-m", "-u", "-i", "-p", "--",
            "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"LAB_ID={lab_dir}",
            "unshare", "--net", "--",
            "sh", "-c", "ip link set lo up && service docker start",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )  # fmt: skip
    sh("i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 120 ]; sleep 0.5; done")
