"""The lab: disposable real SSH hosts on this machine, for tests and for trying playbooks.

Host I of a lab is a real OpenSSH sshd on `NET.I:PORT`, running in its own mount, uts, ipc and
pid namespaces with a copy-on-write overlay of the real root (`host_init.sh` is its PID 1).
This module owns starting, finding, checking and stopping labs; docs/lab.md tells the design.

A lab lives in one directory (`/tmp/lab-*`): controller key, known_hosts, ssh_config,
inventory.yml, hosts.json (what `load_lab` reads) and each host's console log. Every process
of a lab carries `LAB_ID=<lab dir>` in its environment; that tag is how `stop_lab` finds them,
even those of a run that was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from machineroom.errors import MachineroomError
from machineroom.lab.layers import USERS, build_host_layer, build_seed, write_key

__all__ = [
    "DEFAULT_LAB_DIR",
    "HostStatus",
    "Lab",
    "LabError",
    "LabHost",
    "LabHostError",
    "lab_status",
    "load_lab",
    "start_lab",
    "stop_lab",
]

DEFAULT_LAB_DIR = "/tmp/lab-mr"
# Taken from the bounding set of everything in a host, so that a playbook cannot change the
# real machine's modules, clock, raw devices, kernel log or (shared) network.
DROP_CAPS = "-sys_module,-sys_time,-sys_rawio,-syslog,-mac_admin,-mac_override,-net_admin"
INIT_SCRIPT = Path(__file__).with_name("host_init.sh")
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LAB_DIR_RE = re.compile(r"/tmp/lab-[A-Za-z0-9._-]+")
# pids this process spawned, per lab dir: stop_lab reaps them so no zombie stays behind.
_spawned: dict[str, list[int]] = {}


class LabError(MachineroomError):
    """The lab cannot start or stop: wrong machine, wrong directory, addresses taken."""


class LabHostError(LabError):
    """Hosts died or did not answer in time; carries each one's console log tail."""

    def __init__(self, problem: str, consoles: dict[str, str]) -> None:
        self.problem = problem
        self.consoles = consoles
        text = problem
        for name, tail in consoles.items():
            text += f"\n--- console of {name} ---\n{tail.rstrip() or '(empty)'}"
        super().__init__(text)


@dataclass(frozen=True)
class LabHost:
    """One lab host: its name (`h3`) and where its sshd listens."""

    name: str
    address: str
    port: int


@dataclass(frozen=True)
class Lab:
    """A running lab: the files a client needs, its hosts and its users' passwords."""

    lab_dir: str
    key: str  # the controller's private key; root, deploy and ops accept it
    known_hosts: str  # every host's key, OpenSSH format
    ssh_config: str  # `ssh -F <ssh_config> h1` works
    hosts: tuple[LabHost, ...]
    users: dict[str, str | None]  # user -> password, None = key only
    inventory: str  # machineroom YAML inventory of the hosts, group `lab`


@dataclass(frozen=True)
class HostStatus:
    """What `lab_status` saw of one host: its PID 1's parent alive, and its sshd banner."""

    host: LabHost
    pid: int
    alive: bool
    banner: str | None  # None when sshd did not answer


def start_lab(
    count: int,
    lab_dir: str = DEFAULT_LAB_DIR,
    net: str = "127.0.1",
    first: int = 1,
    port: int = 22,
    pam_nodelay: bool = False,
    ready_timeout: float = 30,
) -> Lab:
    """Start `count` hosts h<first>.. on <net>.<first>..:<port>; return when all answer.

    `net` may list several nets, comma-separated ("127.0.20,127.0.21"): host I listens on
    the first net's .I for I <= 254, then on the next net's .(I - 254), and so on, so that a
    lab holds more than 254 hosts. Any lab already in `lab_dir` (even from a killed run) is
    stopped first. With `pam_nodelay`, a wrong password is refused at once instead of after
    about 3 s. Raises LabError when the machine cannot run a lab, LabHostError when a host
    died or did not answer within `ready_timeout` seconds (the lab is then stopped).
    """
    lab_dir = _check_lab_dir(lab_dir)
    nets = net.split(",")
    for one in nets:
        if not re.fullmatch(r"127\.\d{1,3}\.\d{1,3}", one):
            raise LabError(f"net must be three octets in 127.0.0.0/8, like 127.0.1 (got {one!r})")
    if count < 1 or first < 1 or first + count - 1 > 254 * len(nets):
        raise LabError(
            f"hosts {first}..{first + count - 1} do not fit in {net}.1..254"
            " (list more nets, comma-separated, for more than 254 hosts)"
        )
    if not 0 < port < 65536:
        raise LabError(f"port must be in 1..65535 (got {port})")
    tools = _check_machine()
    stop_lab(lab_dir)
    hosts = tuple(LabHost(f"h{i}", _address(nets, i), port) for i in range(first, first + count))
    _check_free(hosts)
    root = Path(lab_dir)
    root.mkdir(mode=0o700)
    try:
        key_pub = write_key(root / "id_ed25519", "machineroom-lab")
        build_seed(root, {h.name: h.address for h in hosts}, key_pub, pam_nodelay)
        lines = []
        for host in hosts:
            pub = build_host_layer(root / "hosts" / host.name, host.name, host.address, port)
            where = host.address if port == 22 else f"[{host.address}]:{port}"
            lines.append(f"{where} {pub}\n")
        (root / "known_hosts").write_text("".join(lines))
        pids = [_spawn(root, host, tools["unshare"]) for host in hosts]
        _spawned[lab_dir] = pids
        lab = _write_client_files(root, hosts, pids)
        _wait_ready(lab, pids, ready_timeout)
    except BaseException:
        # Ctrl-C or a bug halfway: leave no host running (a host error has stopped it).
        stop_lab(lab_dir)
        raise
    return lab


def stop_lab(lab_dir: str = DEFAULT_LAB_DIR) -> None:
    """Kill every process of the lab in `lab_dir` and remove the directory.

    Safe to call when nothing runs, and after a crash: processes are found by their
    `LAB_ID` tag, not by a file a dead run may not have written.
    """
    lab_dir = _check_lab_dir(lab_dir)
    # SIGKILL is enough: `unshare --kill-child` passes it to the host's PID 1, whose death
    # makes the kernel kill its pid namespace and free its mounts and tmpfs.
    for pid in _tagged_pids(lab_dir):
        _kill(pid)
    for pid in _spawned.pop(lab_dir, []):
        with contextlib.suppress(ChildProcessError):  # already reaped: it died during start
            os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while alive := _tagged_pids(lab_dir):
        if time.monotonic() > deadline:
            raise LabError(f"lab {lab_dir}: processes still alive after SIGKILL: {alive}")
        for pid in alive:  # started after our first sweep (a start racing this stop)
            _kill(pid)
        time.sleep(0.01)
    # Nothing is ever mounted in the real mount table; unmount defensively all the same,
    # so that removing the directory can never reach into a mounted file system.
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for mount in sorted((m for m in mounts if m.startswith(lab_dir + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    shutil.rmtree(lab_dir, ignore_errors=True)
    if os.path.lexists(lab_dir):
        raise LabError(f"lab {lab_dir}: could not remove the directory")


def load_lab(lab_dir: str = DEFAULT_LAB_DIR) -> Lab:
    """Read the lab in `lab_dir` from its hosts.json; LabError if there is none."""
    lab_dir = _check_lab_dir(lab_dir)
    try:
        data = json.loads(Path(lab_dir, "hosts.json").read_text())
    except FileNotFoundError:
        raise LabError(f"no lab in {lab_dir} (start one: machineroom lab up 3)") from None
    return Lab(
        lab_dir=data["lab_dir"],
        key=data["key"],
        known_hosts=data["known_hosts"],
        ssh_config=data["ssh_config"],
        hosts=tuple(LabHost(h["name"], h["address"], h["port"]) for h in data["hosts"]),
        users=dict(data["users"]),
        inventory=data["inventory"],
    )


def lab_status(lab_dir: str = DEFAULT_LAB_DIR) -> tuple[HostStatus, ...]:
    """Check each host of the lab in `lab_dir`; an empty tuple when no lab is there."""
    lab_dir = _check_lab_dir(lab_dir)
    path = Path(lab_dir, "hosts.json")
    if not path.exists():
        return ()
    lab, pids = load_lab(lab_dir), json.loads(path.read_text())["pids"]

    def one(item: tuple[LabHost, int]) -> HostStatus:
        host, pid = item
        return HostStatus(host, pid, _alive(pid), _banner(host, timeout=2))

    with ThreadPoolExecutor(min(32, len(lab.hosts))) as pool:
        return tuple(pool.map(one, zip(lab.hosts, pids, strict=True)))


def _address(nets: list[str], index: int) -> str:
    """Host `index`'s address: 254 hosts per net, the nets taken in order."""
    return f"{nets[(index - 1) // 254]}.{(index - 1) % 254 + 1}"


# ----------------------------------------------------------------- checks


def _check_lab_dir(lab_dir: str) -> str:
    # stop_lab removes the directory recursively: accept nothing but a lab dir.
    path = os.path.normpath(os.path.abspath(lab_dir))
    if not LAB_DIR_RE.fullmatch(path):
        raise LabError(f"lab dir must be /tmp/lab-NAME (letters, digits, . _ -), got {lab_dir!r}")
    return path


def _check_machine() -> dict[str, str]:
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (it mounts file systems in new namespaces)")
    tools = {}
    for tool, package in [
        ("sshd", "openssh-server"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("openssl", "openssl"),
        ("sudo", "sudo"),
    ]:
        found = shutil.which(tool, path=HOST_PATH)
        if found is None:
            raise LabError(f"the lab needs {tool}: apt-get install -y {package}")
        tools[tool] = found
    return tools


def _check_free(hosts: tuple[LabHost, ...]) -> None:
    # Another lab (or sshd) on our addresses would answer in our hosts' place.
    taken = [f"{h.address}:{h.port}" for h in hosts if _banner(h, timeout=0.5) is not None]
    if taken:
        raise LabError(
            f"already in use by another server: {', '.join(taken)}"
            " (stop that lab, or choose other addresses with --net or --first)"
        )


# ----------------------------------------------------------------- client files


def _write_client_files(root: Path, hosts: tuple[LabHost, ...], pids: list[int]) -> Lab:
    key = str(root / "id_ed25519")
    port = hosts[0].port
    config = "".join(f"Host {h.name}\n    HostName {h.address}\n" for h in hosts)
    config += (
        f"Host *\n    User root\n    Port {port}\n    IdentityFile {key}\n"
        f"    IdentitiesOnly yes\n    UserKnownHostsFile {root / 'known_hosts'}\n"
        "    GlobalKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n"
        # the client's default key exchange (sntrup761) is slow here; this halves `ssh h true`
        "    KexAlgorithms curve25519-sha256\n    LogLevel ERROR\n"
    )
    (root / "ssh_config").write_text(config)
    inventory = f"all:\n  vars:\n    ssh_key: {key}\n  children:\n    lab:\n      hosts:\n"
    inventory += "".join(
        f"        {h.name}: {{host: {h.address}, user: root, port: {h.port}}}\n" for h in hosts
    )
    (root / "inventory.yml").write_text(inventory)
    lab = Lab(
        lab_dir=str(root),
        key=key,
        known_hosts=str(root / "known_hosts"),
        ssh_config=str(root / "ssh_config"),
        hosts=hosts,
        users=dict(USERS),
        inventory=str(root / "inventory.yml"),
    )
    data = {
        "lab_dir": lab.lab_dir,
        "key": lab.key,
        "known_hosts": lab.known_hosts,
        "ssh_config": lab.ssh_config,
        "inventory": lab.inventory,
        "users": lab.users,
        "hosts": [{"name": h.name, "address": h.address, "port": h.port} for h in hosts],
        "pids": pids,
    }
    (root / "hosts.json").write_text(json.dumps(data, indent=1) + "\n")
    return lab


# ----------------------------------------------------------------- processes


def _spawn(root: Path, host: LabHost, unshare: str) -> int:
    """Start one host in new namespaces; return the PID of its `unshare`."""
    argv = [
        unshare,
        *("--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child"),
        *("--propagation", "private", "--"),
        *("/bin/sh", str(INIT_SCRIPT), str(root), host.name, DROP_CAPS),
    ]
    console = str(root / "hosts" / host.name / "console.log")
    # A session and stdio of its own: the host must not hold the caller's terminal or
    # pipes (subprocess.run(capture_output=True) of `machineroom lab up` would hang).
    return os.posix_spawn(
        unshare,
        argv,
        {"LAB_ID": str(root), "PATH": HOST_PATH},
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, console, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )


def _wait_ready(lab: Lab, pids: list[int], timeout: float) -> None:
    """Poll every host's sshd banner in parallel; on a death or timeout, stop and raise."""
    deadline = time.monotonic() + timeout

    def one(item: tuple[LabHost, int]) -> str | None:
        host, pid = item
        while True:
            if _exited(pid):
                return "died"
            if _banner(host, timeout=1) is not None:
                return None
            if time.monotonic() > deadline:
                return "did not answer"
            time.sleep(0.01)

    with ThreadPoolExecutor(min(64, len(lab.hosts))) as pool:
        results = list(pool.map(one, zip(lab.hosts, pids, strict=True)))
    failed = {h.name: r for h, r in zip(lab.hosts, results, strict=True) if r is not None}
    if failed:
        consoles = {}
        for name in list(failed)[:3]:  # the first few tell the story
            log = Path(lab.lab_dir, "hosts", name, "console.log")
            consoles[name] = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        stop_lab(lab.lab_dir)
        listed = ", ".join(f"{n} {r}" for n, r in failed.items())
        raise LabHostError(
            f"lab {lab.lab_dir}: {len(failed)} of {len(lab.hosts)} hosts failed to start"
            f" within {timeout:g}s: {listed}",
            consoles,
        )


def _banner(host: LabHost, timeout: float) -> str | None:
    """The SSH banner at the host's address, or None when nothing answers."""
    try:
        with socket.create_connection((host.address, host.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = sock.recv(256)
    except OSError:
        return None
    return data.split(b"\r")[0].decode(errors="replace") if data.startswith(b"SSH-") else None


def _exited(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:  # not our child (or reaped): ask the kernel instead
        return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tagged_pids(lab_dir: str) -> list[int]:
    """PIDs of live processes whose environment has the entry LAB_ID=<lab_dir>."""
    tag = f"LAB_ID={lab_dir}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone, or a zombie (which has no environment left)
            continue
        if tag in environ.split(b"\0") and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
