"""The lab: real SSH hosts that behave as separate machines, and start and stop cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import paramiko
import pytest
import yaml

from machineroom import lab as lab_module
from machineroom.lab import (
    Lab,
    LabError,
    LabHost,
    LabHostError,
    lab_status,
    load_lab,
    start_lab,
    stop_lab,
)

# The same settings as the session's `lab` fixture (conftest.py).
LAB_DIR = os.environ.get("LAB_DIR", "/tmp/lab-mr-test")
LAB_NET = os.environ.get("LAB_NET", "127.0.1")
from conftest import LAB_HOSTS  # noqa: E402 - pytest puts tests/ on sys.path

# Labs of their own (lifecycle tests) use the addresses after the session lab's hosts.
OWN_FIRST = LAB_HOSTS + 1
OWN_DIR = LAB_DIR + "-own"


def connect(
    lab: Lab, host: LabHost, user: str = "root", password: str | None = None
) -> paramiko.SSHClient:
    """A paramiko client logged in to `host`, checking its key against the lab's known_hosts."""
    client = paramiko.SSHClient()
    client.load_host_keys(lab.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        host.address,
        port=host.port,
        username=user,
        password=password,
        key_filename=None if password else lab.key,
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    return client


def run(client: paramiko.SSHClient, command: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (stripped) of one command."""
    chan_in, out, err = client.exec_command(command, timeout=30)
    if stdin is not None:
        chan_in.write(stdin)
        chan_in.flush()
        chan_in.channel.shutdown_write()
    code = out.channel.recv_exit_status()
    return code, out.read().decode().strip(), err.read().decode().strip()


def on(lab: Lab, host: LabHost, command: str) -> str:
    """stdout of `command` run as root on `host`; fails the test on a non-zero exit."""
    client = connect(lab, host)
    try:
        code, out, err = run(client, command)
    finally:
        client.close()
    assert code == 0, err
    return out


@pytest.fixture
def own_lab_dir() -> Iterator[str]:
    """A lab directory for a test that starts its own lab; stopped whatever happens."""
    yield OWN_DIR
    stop_lab(OWN_DIR)


# ----------------------------------------------------------------- the session lab


def test_every_host_answers_with_its_own_name_in_parallel(lab: Lab) -> None:
    with ThreadPoolExecutor(len(lab.hosts)) as pool:
        names = list(pool.map(lambda h: on(lab, h, "hostname"), lab.hosts))
    assert names == [h.name for h in lab.hosts]
    assert names[:2] == ["h1", "h2"]


def test_a_host_key_not_in_known_hosts_is_refused(lab: Lab) -> None:
    client = paramiko.SSHClient()  # no known_hosts loaded
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(lab.hosts[0].address, username="root", key_filename=lab.key,
                       allow_agent=False, look_for_keys=False)  # fmt: skip
    client.close()


def test_deploy_logs_in_with_password_and_sudo_needs_none(lab: Lab) -> None:
    client = connect(lab, lab.hosts[0], "deploy", lab.users["deploy"])
    try:
        assert run(client, "id -un; pwd") == (0, "deploy\n/home/deploy", "")
        assert run(client, "sudo -n id -un") == (0, "root", "")
    finally:
        client.close()


def test_ops_sudo_asks_for_the_password(lab: Lab) -> None:
    password = lab.users["ops"]
    assert password == "ops-pass"
    client = connect(lab, lab.hosts[1], "ops", password)
    try:
        code, _, err = run(client, "sudo -n true")
        assert code == 1
        assert "password is required" in err
        assert run(client, "sudo -S -p '' id -un", password + "\n") == (0, "root", "")
    finally:
        client.close()


def test_users_also_log_in_with_the_key_and_root_not_with_a_password(lab: Lab) -> None:
    for user in ("root", "deploy", "ops"):
        client = connect(lab, lab.hosts[2], user)
        assert run(client, "id -un")[1] == user
        client.close()
    with pytest.raises(paramiko.AuthenticationException):
        connect(lab, lab.hosts[2], "root", "deploy-pass")


def test_a_wrong_password_is_refused_at_once(lab: Lab) -> None:
    started = time.monotonic()
    with pytest.raises(paramiko.AuthenticationException):
        connect(lab, lab.hosts[3], "deploy", "wrong-pass")
    assert time.monotonic() - started < 1.5  # pam_unix nodelay; about 3 s without


def test_hosts_do_not_see_each_others_files_nor_change_the_machine(lab: Lab) -> None:
    path = f"/etc/lab-probe-{uuid.uuid4().hex}"
    first, second = lab.hosts[0], lab.hosts[1]
    on(lab, first, f"echo {first.name} > {path}")
    on(lab, second, f"echo {second.name} > {path}")
    assert on(lab, first, f"cat {path}") == first.name
    assert on(lab, second, f"cat {path}") == second.name
    assert on(lab, lab.hosts[2], f"test -e {path} || echo absent") == "absent"
    assert not os.path.exists(path)
    # the lab dir (and its private key) is invisible in hosts: /tmp is the host's own
    assert on(lab, first, f"test -e {lab.key} || echo absent") == "absent"


def test_a_host_shows_no_file_of_the_machines_home_dirs_nor_its_host_keys(lab: Lab) -> None:
    host = lab.hosts[0]
    assert on(lab, host, "ls -A /root").split() == [".bashrc", ".profile", ".ssh"]
    assert on(lab, host, "ls /home").split() == ["deploy", "ops"]
    assert on(lab, host, "ls /etc/ssh/ | grep host_").split() == [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
    ]
    with open("/etc/machine-id") as f:
        assert on(lab, host, "cat /etc/machine-id") != f.read().strip()


def test_a_host_cannot_load_modules_set_the_clock_or_change_the_network(lab: Lab) -> None:
    bounding = int(on(lab, lab.hosts[0], "sed -n 's/^CapBnd:\\t//p' /proc/self/status"), 16)
    for bit in (12, 16, 25):  # CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_TIME
        assert not bounding & (1 << bit)
    assert bounding & (1 << 21)  # CAP_SYS_ADMIN stays: mounts inside a host work


def test_pid_1_of_a_host_reaps_orphans(lab: Lab) -> None:
    out = on(lab, lab.hosts[0], "sh -c 'sleep 0.1 & exit'; sleep 0.4; ps -eo stat=,comm=")
    assert not [line for line in out.splitlines() if line.startswith("Z")]


def test_service_ssh_restart_keeps_the_host_up(lab: Lab) -> None:
    host = lab.hosts[-1]  # the last host: a restart should not disturb other tests
    assert "ssh" in on(lab, host, "service ssh restart 2>&1")
    deadline = time.monotonic() + 10
    while True:
        try:
            assert on(lab, host, "hostname") == host.name
            break
        except (OSError, paramiko.SSHException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_inventory_known_hosts_and_ssh_config_describe_the_lab(lab: Lab) -> None:
    with open(lab.inventory) as f:
        inventory = yaml.safe_load(f)
    assert inventory["all"]["vars"] == {"ssh_key": lab.key}
    hosts = inventory["all"]["children"]["lab"]["hosts"]
    assert hosts == {h.name: {"host": h.address, "user": "root", "port": 22} for h in lab.hosts}
    with open(lab.known_hosts) as f:
        known = [line.split()[:2] for line in f]
    assert known == [[h.address, "ssh-ed25519"] for h in lab.hosts]
    out = subprocess.run(
        ["ssh", "-F", lab.ssh_config, lab.hosts[1].name, "hostname"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out == f"{lab.hosts[1].name}\n"


def test_load_lab_and_lab_status_see_the_running_lab(lab: Lab) -> None:
    assert load_lab(lab.lab_dir) == lab
    statuses = lab_status(lab.lab_dir)
    assert [s.host for s in statuses] == list(lab.hosts)
    assert all(s.alive and (s.banner or "").startswith("SSH-2.0-OpenSSH") for s in statuses)


def test_an_address_in_use_is_refused_before_starting(lab: Lab, own_lab_dir: str) -> None:
    with pytest.raises(LabError, match=f"already in use.*{lab.hosts[0].address}:22"):
        start_lab(1, own_lab_dir, net=LAB_NET, first=1)
    assert not os.path.exists(own_lab_dir)


# ----------------------------------------------------------------- starting and stopping


def lab_processes(lab_dir: str) -> list[int]:
    """PIDs of the processes tagged with the lab dir (the way stop_lab finds them)."""
    return lab_module._tagged_pids(lab_dir)


def running(pids: list[int]) -> list[int]:
    """Those of `pids` that still run: neither gone nor dead and waiting to be reaped."""
    result = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            result.append(pid)
    return result


def test_stop_leaves_no_process_no_directory_and_no_listener(own_lab_dir: str) -> None:
    own = start_lab(2, own_lab_dir, net=LAB_NET, first=OWN_FIRST)
    pids = lab_processes(own_lab_dir)
    assert len(pids) >= 6  # per host: unshare, its PID 1, sshd
    stop_lab(own_lab_dir)
    assert lab_processes(own_lab_dir) == []
    assert running(pids) == []
    assert not os.path.exists(own_lab_dir)
    for host in own.hosts:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host.address, host.port), timeout=2).close()
    stop_lab(own_lab_dir)  # stopping twice is fine
    assert lab_status(own_lab_dir) == ()


def test_start_after_a_crashed_run_cleans_up_its_hosts(own_lab_dir: str) -> None:
    # A run that dies by SIGKILL right after starting its lab leaves the hosts running.
    crash = (
        "import os, signal\n"
        "from machineroom.lab import start_lab\n"
        f"start_lab(2, {own_lab_dir!r}, net={LAB_NET!r}, first={OWN_FIRST})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    stale = lab_processes(own_lab_dir)
    assert stale
    with open(os.path.join(own_lab_dir, "known_hosts")) as f:
        stale_keys = f.read()
    fresh = start_lab(2, own_lab_dir, net=LAB_NET, first=OWN_FIRST)
    assert not set(stale) & set(lab_processes(own_lab_dir))
    assert running(stale) == []
    with open(fresh.known_hosts) as f:
        assert f.read() != stale_keys
    assert [on(fresh, h, "hostname") for h in fresh.hosts] == [h.name for h in fresh.hosts]


def test_a_host_that_dies_is_reported_with_its_console(own_lab_dir: str) -> None:
    # Something that is not sshd holds the second host's address: its sshd cannot bind.
    address = f"{LAB_NET}.{OWN_FIRST + 1}"
    with socket.create_server((address, 22)), pytest.raises(LabHostError) as caught:
        start_lab(2, own_lab_dir, net=LAB_NET, first=OWN_FIRST, ready_timeout=10)
    message = str(caught.value)
    assert f"1 of 2 hosts failed to start within 10s: h{OWN_FIRST + 1} died" in message
    assert f"--- console of h{OWN_FIRST + 1} ---" in message
    assert "Address already in use" in message
    assert lab_processes(own_lab_dir) == []
    assert not os.path.exists(own_lab_dir)


def machineroom(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `machineroom` command; capture_output also proves no host holds our pipes."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_lab_up_status_down(own_lab_dir: str) -> None:
    where = ["--dir", own_lab_dir]
    up = machineroom("lab", "up", "2", *where, "--net", LAB_NET, "--first", str(OWN_FIRST))
    assert up.returncode == 0, up.stderr
    assert f"2 host(s) h{OWN_FIRST}..h{OWN_FIRST + 1} up in" in up.stdout
    assert f"machineroom run -i {own_lab_dir}/inventory.yml" in up.stdout
    status = machineroom("lab", "status", *where)
    assert status.returncode == 0, status.stderr
    assert status.stdout.endswith("2/2 hosts answer\n")
    assert f"h{OWN_FIRST} {LAB_NET}.{OWN_FIRST}:22" in status.stdout
    down = machineroom("lab", "down", *where)
    assert down.returncode == 0, down.stderr
    assert not os.path.exists(own_lab_dir)
    assert machineroom("lab", "status", *where).stdout == f"lab {own_lab_dir}: not running\n"


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize("lab_dir", ["/", "/tmp", "/tmp/lab-", "/tmp/lab-a/../../etc", "/home/x"])
def test_a_lab_dir_outside_tmp_lab_is_refused(lab_dir: str) -> None:
    with pytest.raises(LabError, match="lab dir must be /tmp/lab-NAME"):
        stop_lab(lab_dir)
    with pytest.raises(LabError, match="lab dir must be /tmp/lab-NAME"):
        start_lab(1, lab_dir)


def test_the_lab_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="the lab must run as root"):
        start_lab(1, OWN_DIR)


def test_the_lab_names_a_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = lab_module.shutil.which
    monkeypatch.setattr(
        lab_module.shutil, "which", lambda t, path=None: None if t == "sshd" else real_which(t)
    )
    with pytest.raises(LabError, match="needs sshd: apt-get install -y openssh-server"):
        start_lab(1, OWN_DIR)


def test_a_lab_on_another_port_names_it_in_known_hosts(own_lab_dir: str) -> None:
    own = start_lab(1, own_lab_dir, net=LAB_NET, first=OWN_FIRST, port=2222)
    with open(own.known_hosts) as f:
        assert f.read().startswith(f"[{LAB_NET}.{OWN_FIRST}]:2222 ssh-ed25519 ")
    assert on(own, own.hosts[0], "hostname") == f"h{OWN_FIRST}"


def test_a_lab_of_more_than_254_hosts_goes_on_to_the_next_net(own_lab_dir: str) -> None:
    # Two hosts across the boundary: h254 on the first net, h255 on the second one's .1. The
    # same net twice on port 2222 keeps clear of the session lab (port 22) and of other nets.
    nets = f"{LAB_NET},{LAB_NET}"
    with pytest.raises(LabError, match=r"do not fit.*list more nets"):
        start_lab(255, own_lab_dir, net=LAB_NET)
    own = start_lab(2, own_lab_dir, net=nets, first=254, port=2222)
    assert [(h.name, h.address) for h in own.hosts] == [
        ("h254", f"{LAB_NET}.254"),
        ("h255", f"{LAB_NET}.1"),
    ]
    assert [on(own, h, "hostname") for h in own.hosts] == ["h254", "h255"]
