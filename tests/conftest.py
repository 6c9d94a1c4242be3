"""Fixtures shared by every test: a hermetic environment and the session's lab of SSH hosts."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab, start_lab, stop_lab
from machineroom.masking import SECRETS

# The stop tests signal machineroom as a terminal would, and machineroom keeps a signal ignored
# that it was started with (nohup, `cmd &` in a script). A suite launched that way would pass
# its ignored SIGINT or SIGHUP on to every command it starts: give them back their defaults.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for _stop_signal in (signal.SIGHUP, signal.SIGTERM):
    if signal.getsignal(_stop_signal) == signal.SIG_IGN:
        signal.signal(_stop_signal, signal.SIG_DFL)

LAB_DIR = os.environ.get("LAB_DIR", "/tmp/lab-mr-test")
LAB_NET = os.environ.get("LAB_NET", "127.0.1")
LAB_HOSTS = int(os.environ.get("LAB_HOSTS", "44"))


@pytest.fixture(autouse=True)
def hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs as a user with nothing set up: no dotfiles, no agent, no settings.

    HOME is a fresh temporary directory holding an empty `~/.ssh` (so neither the real
    ~/.ssh/config, keys nor known_hosts can make a test pass or fail), SSH_AUTH_SOCK is
    removed, every MACHINEROOM_* and ANSIBLE_* variable is cleared (ansible.cfg settings
    come from them too) and the process's secrets registry is emptied. Returns the new HOME.
    """
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    for name in list(os.environ):
        if name.startswith(("MACHINEROOM_", "ANSIBLE_")):
            monkeypatch.delenv(name)
    SECRETS.clear()  # the process's secrets registry: what one test revealed masks no other
    return home


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A lab of real SSH hosts, started once per session and stopped at its end.

    LAB_HOSTS hosts (default 44) named h1, h2, ... listen on LAB_NET.1, LAB_NET.2, ...
    port 22 (LAB_NET default 127.0.1); the lab lives in LAB_DIR (default /tmp/lab-mr-test).
    Each host is a real OpenSSH sshd with its own host key, hostname and copy-on-write root:
    what a test writes on one host is invisible to the others and to this machine.

    The `Lab` it yields (machineroom.lab.Lab) gives:
      lab.hosts        tuple of LabHost(name, address, port), in order h1, h2, ...
      lab.key          controller private key (ed25519); root, deploy and ops accept it
      lab.known_hosts  every host's key: verify with paramiko.RejectPolicy, never accept
      lab.ssh_config   for `ssh -F lab.ssh_config h1`
      lab.inventory    machineroom YAML inventory, group `lab`, user root, ssh_key set
      lab.users        {"root": None, "deploy": "deploy-pass", "ops": "ops-pass"}:
                       root by key only; deploy has NOPASSWD sudo; ops' sudo asks for
                       the password (`sudo -S`)
    A wrong password is refused at once (pam_unix nodelay), not after 3 s.

    Hosts are shared by the whole session; tests that change a host in ways others could
    notice keep to their own hosts: h1-h7 CLI and connection tests (h7: test_connection_registry,
    whose only change is a marker file of its name in /tmp; h3: test_runs_request, likewise;
    no host past h32 is free with the default 44 hosts), h8-h13 engine tests,
    h14 the Ansible templating test (test_ansible_templating), h14-h15 the template errors
    test too (test_template_errors: only /tmp/test_template_errors.conf),
    h15 the secrets, terminal-output and loops tests (test_secrets, test_loops: files of
    their own names),
    h16-h17 the Ansible arguments tests (test_ansible_args),
    h18-h19 the stop tests (test_stops),
    h20 file and text modules (replace, find, slurp, fetch, get_url, unarchive, tempfile)
    and module options (test_module_options),
    h21 system modules (systemd, service_facts, timezone, sysctl, mount, cron, hostname, pip)
    and user/group options (test_user_options),
    h22 repository and network modules (git, apt_key, apt_repository, uri, raw, script) and
    copy of a local folder (test_copy_folder),
    h23-h25 delegation, run_once, async and throttle (test_delegation),
    h26 ansible.cfg, ansible-playbook flags and ad-hoc modules (test_ansible_cli),
    h27 Ansible-named facts and package backends, h28 ansible-core module fallback,
    h29-h32 the cluster tests (test_cluster: runs through Dask workers),
    hosts[-12:-9] the site.yml test (Docker engines on three hosts), hosts[-9:-6] the
    Ansible parity test, hosts[-6:-2] the stage tests, hosts[-2] the service module test,
    hosts[-1] the docker stage test (it installs a Docker engine).
    A run that was killed leaves its hosts running; the next session's start stops them.
    """
    started = start_lab(LAB_HOSTS, LAB_DIR, net=LAB_NET, pam_nodelay=True)
    try:
        yield started
    finally:
        stop_lab(LAB_DIR)


FLEET_LAB_DIR = os.environ.get("FLEET_LAB_DIR", LAB_DIR + "-fleet")
FLEET_LAB_NET = os.environ.get("FLEET_LAB_NET", "127.0.2")
FLEET_LAB_HOSTS = 12


@pytest.fixture(scope="session")
def fleet_lab() -> Iterator[Lab]:
    """A second lab (same kind as `lab`) for the fleet-operations tests, on FLEET_LAB_NET
    (default 127.0.2) in FLEET_LAB_DIR, so those tests can take hosts down and fill disks
    without touching the engine tests' hosts. Hosts by test file: hosts[0:4] collection and
    status (test_fleet_collect), hosts[4:7] alerts (test_fleet_alerts), hosts[7:8] the
    scheduler (test_fleet_scheduler), hosts[8:12] the dashboard and API (test_web_*).
    """
    started = start_lab(FLEET_LAB_HOSTS, FLEET_LAB_DIR, net=FLEET_LAB_NET, pam_nodelay=True)
    try:
        yield started
    finally:
        stop_lab(FLEET_LAB_DIR)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless system chromium (Debian's, driven by Playwright), one for the whole session:
    each test opens its own context (cookies, viewport) in it."""
    from playwright.sync_api import sync_playwright
    from websupport import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
