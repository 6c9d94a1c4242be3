"""systemd, service_facts, sysctl, cron, timezone, hostname, mount, pip and reboot as public
roles use them, end to end.

Real runs of `machineroom apply` (a subprocess) against lab host h21. The lab hosts have no
systemd as PID 1 (systemctl edits unit files; services run through their init scripts), a
read-only /proc/sys, their own UTS and mount namespaces. Each test: a first run changes the
host, a second changes nothing, a check-mode run with other values changes nothing, and
mistakes fail with a clear message.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import zipfile
from pathlib import Path
from typing import Any

from machineroom.connection import ConnectOptions, SSHConnection
from machineroom.executor.reboot import run_reboot
from machineroom.inventory.model import Host
from machineroom.lab import Lab
from machineroom.modules import get_module
from machineroom.modules.base import CommandOutput, ModuleContext
from machineroom.modules.reboot import RebootModule
from tests.clirun import machineroom

HOST = "h21"


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def setup(root: Path, lab: Lab, site: str) -> None:
    address = next(h.address for h in lab.hosts if h.name == HOST)
    write(
        root,
        "inventory.yml",
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n"
        f"  hosts:\n    {HOST}: {{host: {address}, user: root}}\n",
    )
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    write(root, "site.yml", site)


def apply(root: Path, *args: str, playbook: str = "site.yml") -> tuple[Any, Any]:
    out = machineroom("apply", "-i", "inventory.yml", playbook, "--json", *args, cwd=root)
    try:
        return out, json.loads(out.stdout)
    except json.JSONDecodeError:
        return out, None


def sh(root: Path, command: str) -> str:
    out = machineroom("run", "-i", "inventory.yml", HOST, "--json", "--", command, cwd=root)
    return str(json.loads(out.stdout)["hosts"][HOST]["stdout"])


def tasks_of(report: Any) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][HOST]["tasks"]}


def changed(report: Any) -> list[str]:
    return [t["task"] for t in report["hosts"][HOST]["tasks"] if t["status"] == "changed"]


INIT_SCRIPT = r"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          mrdemo
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: a demo daemon for the systemd module's test
### END INIT INFO
pidfile=/run/mrdemo.pid
running() { [ -f $pidfile ] && kill -0 "$(cat $pidfile)" 2>/dev/null; }
case "$1" in
  start) running || { setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > $pidfile; } ;;
  stop) if running; then kill "$(cat $pidfile)"; fi; rm -f $pidfile ;;
  restart) "$0" stop; "$0" start ;;
  reload) running && echo reloaded >> /run/mrdemo.reloads ;;
  status) if running; then echo "mrdemo is running"; else echo "mrdemo is stopped"; exit 3; fi ;;
  *) exit 3 ;;
esac
"""

UNIT = "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/sleep 100000\n"
UNIT_INSTALL = UNIT + "[Install]\nWantedBy=multi-user.target\n"

SERVICES = """\
- hosts: all
  gather_facts: false
  vars: {up: true}
  tasks:
    - copy: {dest: /etc/init.d/mrdemo, src: mrdemo.init, mode: "0755"}
    - copy: {dest: /etc/systemd/system/mrdemo.service, src: mrdemo.service}
    - copy: {dest: /lib/systemd/system/mrmask.service, src: mrmask.service}
    - copy:
        dest: /etc/mr-sysctl.conf
        content: "# kept\\n  net.ipv4.ip_forward = 0\\nvm.swappiness=10\\nvm.swappiness = 20\\n"
        force: false
    - name: demo
      systemd: {name: mrdemo, state: "{{ 'started' if up else 'stopped' }}", enabled: "{{ up }}"}
      register: demo
    - name: reload
      ansible.builtin.systemd_service: {unit: mrdemo.service, state: reloaded}
      when: up
    - name: mask
      systemd: {name: mrmask, masked: "{{ up }}"}
    - name: forward
      sysctl: {key: net.ipv4.ip_forward, val: "{{ 'yes' if up else 'no' }}",
               sysctl_file: /etc/mr-sysctl.conf, reload: false}
    - name: swappiness gone
      sysctl: {name: vm.swappiness, state: absent, sysctl_file: /etc/mr-sysctl.conf,
               reload: false}
    - name: new key
      sysctl: {name: kernel.mr_words, value: "4  5", sysctl_file: /etc/mr-sysctl.conf,
               reload: false}
    - service_facts:
    - name: show
      debug:
        msg: "{{ {'demo': demo, 'facts': ansible_facts.services.mrdemo,
                  'ssh': services.ssh} | to_json }}"
"""


SERVICES_STATE = (
    "/etc/init.d/mrdemo status; cat /run/mrdemo.reloads; systemctl is-enabled mrdemo mrmask;"
    " ls /etc/rc2.d | grep -c '^S..mrdemo'; readlink /etc/systemd/system/mrmask.service;"
    " cat /etc/mr-sysctl.conf"
)


def test_systemd_sysctl_and_service_facts(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, SERVICES)
    write(tmp_path, "mrdemo.init", INIT_SCRIPT)
    write(tmp_path, "mrdemo.service", UNIT_INSTALL)
    write(tmp_path, "mrmask.service", UNIT)
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    assert {"demo", "reload", "mask", "forward", "swappiness gone", "new key"} <= set(
        changed(report)
    )
    shown = json.loads(tasks["show"]["msg"])
    demo = shown["demo"]
    # status as read before acting: Ansible's keys, from the unit file and init script
    assert demo["status"]["LoadState"] == "loaded"
    assert demo["status"]["UnitFileState"] == "disabled"
    assert demo["status"]["ActiveState"] == "inactive"
    assert (demo["state"], demo["enabled"], demo["name"]) == ("started", True, "mrdemo")
    assert "init.d/mrdemo" in demo["warnings"][0]
    assert shown["facts"] == {"name": "mrdemo", "state": "running", "source": "sysv"}
    assert shown["ssh"]["state"] == "running"
    assert sh(tmp_path, SERVICES_STATE) == (
        "mrdemo is running\nreloaded\nenabled\nmasked\n1\n/dev/null\n"
        # rewritten as Ansible's sysctl writes it: stripped, key=value, a repeated key once
        "# kept\nnet.ipv4.ip_forward=1\nkernel.mr_words=4  5\n"
    )

    again, report = apply(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == ["reload"]  # reloaded always acts, as in Ansible
    assert tasks_of(report)["demo"]["msg"] == "mrdemo already as wanted"

    checked, report = apply(tmp_path, "--check", "-e", '{"up": false}')
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {"demo", "mask", "forward"} <= set(changed(report))
    assert sh(tmp_path, SERVICES_STATE) == (
        "mrdemo is running\nreloaded\nreloaded\nenabled\nmasked\n1\n/dev/null\n"
        "# kept\nnet.ipv4.ip_forward=1\nkernel.mr_words=4  5\n"
    )

    down, report = apply(tmp_path, "-e", '{"up": false}')
    assert down.returncode == 0, down.stdout + down.stderr
    assert sh(tmp_path, SERVICES_STATE) == (
        "mrdemo is stopped\nreloaded\nreloaded\ndisabled\nstatic\n0\n"
        "# kept\nnet.ipv4.ip_forward=0\nkernel.mr_words=4  5\n"
    )


FAILURES = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: setup unit
      copy: {dest: /etc/systemd/system/mrmask2.service, src: mrmask.service}
    - name: setup fstab
      file: {path: /tmp/mr-fstab-fail, state: absent}
    - name: missing unit
      systemd: {name: mr-no-such-unit, state: started}
      ignore_errors: true
    - name: daemon reload
      systemd: {daemon_reload: true}
      ignore_errors: true
    - name: unknown state
      systemd: {name: mrmask2, state: started}
      ignore_errors: true
    - name: glob
      systemd: {name: "mr*", state: started}
      ignore_errors: true
    - name: live value
      sysctl: {name: vm.mr_nothing, value: "1", sysctl_file: /tmp/mr-sysctl-fail.conf}
      ignore_errors: true
    - name: no value
      sysctl: {name: vm.swappiness, sysctl_file: /tmp/mr-sysctl-fail.conf}
      ignore_errors: true
    - name: cron file without user
      cron: {name: x, cron_file: mr-x, job: /bin/true}
      ignore_errors: true
    - name: special and minute
      cron: {name: x, special_time: daily, minute: "5", job: /bin/true}
      ignore_errors: true
    - name: no such zone
      timezone: {name: Mars/Olympus_Mons}
      ignore_errors: true
    - name: bad mount
      mount: {path: /mnt/mr-bad, src: /dev/mr-none, fstype: ext4, state: mounted,
              fstab: /tmp/mr-fstab-fail}
      ignore_errors: true
    - name: no pip
      pip: {name: six, executable: /nowhere/pip3}
      ignore_errors: true
    - name: latest with version
      pip: {name: six, version: "1.0", state: latest}
      ignore_errors: true
"""


def test_systemd_and_sysctl_failures_say_what_went_wrong(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, FAILURES)
    write(tmp_path, "mrmask.service", UNIT)
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    tested = {name: t for name, t in tasks.items() if not name.startswith("setup")}
    assert all(t["status"] == "failed" for t in tested.values()), tested
    assert tasks["missing unit"]["msg"] == (
        "Could not find the requested service mr-no-such-unit: host"
    )
    assert tasks["daemon reload"]["msg"].startswith("failure 1 during daemon-reload: System has")
    # no init script and no running systemd: Ansible's own failure
    assert tasks["unknown state"]["msg"] == "Service is in unknown state"
    assert "does not currently support using glob patterns, found '*'" in tasks["glob"]["msg"]
    # /proc/sys is read-only on the lab hosts: the file is written, the reload fails
    assert tasks["live value"]["msg"].startswith("Failed to reload sysctl: ")
    assert tasks["no value"]["msg"].startswith("sysctl: value cannot be None")
    assert tasks["cron file without user"]["msg"].startswith(
        "To use cron_file=... parameter you must specify user=... as well"
    )
    assert tasks["special and minute"]["msg"].startswith(
        "You cannot combine special_time with any of the time or day/date parameters."
    )
    assert tasks["no such zone"]["msg"] == (
        'Error message:\ngiven timezone "Mars/Olympus_Mons" is not available'
    )
    # a failed mount leaves neither the fstab entry nor the mount point behind
    assert tasks["bad mount"]["msg"].startswith("Error mounting /mnt/mr-bad: ")
    assert sh(tmp_path, "cat /tmp/mr-sysctl-fail.conf /tmp/mr-fstab-fail; ls -d /mnt/mr-bad") == (
        "vm.mr_nothing=1\n"  # the sysctl file was written before the reload failed
    )
    assert tasks["no pip"]["msg"] == (
        "Unable to find any of /nowhere/pip3 to use.  pip needs to be installed."
    )
    assert tasks["latest with version"]["msg"].startswith(
        "version is incompatible with state=latest"
    )

    write(tmp_path, "bad.yml", "- hosts: all\n  tasks:\n    - systemd: {name: x, state: up}\n")
    bad, _ = apply(tmp_path, playbook="bad.yml")
    assert bad.returncode == 4, bad.stdout + bad.stderr
    assert "bad.yml:3" in bad.stderr and "state" in bad.stderr


SCHEDULE = """\
- hosts: all
  gather_facts: false
  vars: {zone: Europe/Paris, at: "2", host: web-1.example.test, size: 2m}
  tasks:
    - name: a crontab Ansible managed, and lines of a person
      shell: >-
        crontab -l >/dev/null 2>&1 || printf '%s\\n' '#Ansible: old' '1 1 * * * /bin/old'
        MAILTO=root '# by hand' '0 * * * * /bin/hand' | crontab -
      changed_when: false
    - name: backup
      cron: {name: backup, minute: "5", hour: "{{ at }}", job: /usr/local/bin/backup --all}
    - name: old
      cron: {name: old, state: absent}
    - name: path
      cron: {name: PATH, env: true, job: "/usr/bin:/bin", insertbefore: MAILTO}
      register: path
    - name: weekly
      cron: {name: weekly, special_time: weekly, job: echo hi, user: deploy}
    - name: sweep
      cron: {name: sweep, cron_file: mr-sweep, user: root, minute: "*/10", job: /bin/true,
             disabled: true}
    - name: zone
      timezone: {name: "{{ zone }}"}
      register: tz
    - name: name
      hostname: {name: "{{ host }}"}
    - name: data
      mount: {path: /mnt/mr-data, src: tmpfs, fstype: tmpfs, opts: "size={{ size }}",
              state: mounted}
    - name: spaced
      mount: {path: /mnt/mr space, src: tmpfs, fstype: tmpfs, state: present, boot: false}
    - name: show
      debug:
        msg: "{{ {'path': path, 'tz': tz, 'short': ansible_hostname} | to_json }}"
"""

SCHEDULE_STATE = (
    "crontab -l; echo --; crontab -l -u deploy; echo --; cat /etc/cron.d/mr-sweep;"
    " stat -c %a /etc/cron.d/mr-sweep; echo --; cat /etc/timezone; readlink /etc/localtime;"
    " hostname; cat /etc/hostname; echo --; findmnt -no FSTYPE,OPTIONS /mnt/mr-data;"
    " grep /mnt/mr /etc/fstab"
)


def test_cron_timezone_hostname_and_mount(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, SCHEDULE)
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(changed(report)) == {
        "backup",
        "old",
        "path",
        "weekly",
        "sweep",
        "zone",
        "name",
        "data",
        "spaced",
    }
    shown = json.loads(tasks_of(report)["show"]["msg"])
    assert (shown["path"]["jobs"], shown["path"]["envs"]) == (["backup"], ["PATH", "MAILTO"])
    assert shown["tz"]["diff"]["after"] == {"name": "Europe/Paris"}
    assert shown["short"] == "web-1"
    state = sh(tmp_path, SCHEDULE_STATE)
    # the crontab as Ansible's cron module leaves it: the person's lines untouched
    assert state.split("--\n")[0] == (
        'PATH="/usr/bin:/bin"\nMAILTO=root\n# by hand\n0 * * * * /bin/hand\n'
        "#Ansible: backup\n5 2 * * * /usr/local/bin/backup --all\n"
    )
    assert state.split("--\n")[1] == "#Ansible: weekly\n@weekly echo hi\n"
    assert state.split("--\n")[2] == "#Ansible: sweep\n#*/10 * * * * root /bin/true\n644\n"
    assert state.split("--\n")[3] == (
        "Europe/Paris\n/usr/share/zoneinfo/Europe/Paris\nweb-1.example.test\nweb-1.example.test\n"
    )
    mounted, fstab = state.split("--\n")[4].split("\n", 1)
    assert mounted.startswith("tmpfs ") and "size=2048k" in mounted
    assert fstab == (
        "tmpfs /mnt/mr-data tmpfs size=2m 0 0\ntmpfs /mnt/mr\\040space tmpfs defaults,noauto 0 0\n"
    )

    again, report = apply(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == []

    other = '{"zone": "Asia/Tokyo", "at": "3", "host": "db-1", "size": "3m"}'
    checked, report = apply(tmp_path, "--check", "--diff", "-e", other)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert set(changed(report)) == {"backup", "zone", "name", "data"}
    diffs = {t["task"]: t["diff"] for t in report["hosts"][HOST]["tasks"]}
    assert "-5 2 * * * /usr/local/bin/backup --all\n+5 3 * * *" in diffs["backup"]
    assert "-hostname = web-1.example.test\n+hostname = db-1\n" in diffs["name"]
    assert sh(tmp_path, SCHEDULE_STATE) == state


PIP = """\
- hosts: all
  gather_facts: false
  vars: {want: "1.0", drop: false}
  tasks:
    - file: {path: /tmp/mr-wheels, state: directory}
    - copy: {src: "{{ item }}", dest: "/tmp/mr-wheels/{{ item }}"}
      loop: [mrdemo_pkg-1.0-py3-none-any.whl, mrdemo_pkg-2.0-py3-none-any.whl]
    - name: install
      pip:
        name: mrdemo-pkg
        version: "{{ want }}"
        virtualenv: /opt/mr-venv
        virtualenv_command: python3 -m venv
        extra_args: --no-index --find-links /tmp/mr-wheels
      register: installed
    - name: satisfied
      pip: {name: ["mrdemo-pkg>=1,<3"], virtualenv: /opt/mr-venv}
    - name: remove
      pip: {name: mrdemo-pkg, state: absent, virtualenv: /opt/mr-venv}
      when: drop
    - name: show
      debug: {msg: "{{ installed | to_json }}"}
"""


def wheel(folder: Path, version: str) -> None:
    """A pure-Python wheel of `mrdemo-pkg` built by hand (no network, no build tools)."""
    info = f"mrdemo_pkg-{version}.dist-info"
    files = {
        "mrdemo_pkg/__init__.py": f"__version__ = '{version}'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: mrdemo-pkg\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / f"mrdemo_pkg-{version}-py3-none-any.whl", "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)


VERSION = "/opt/mr-venv/bin/python -c 'import mrdemo_pkg; print(mrdemo_pkg.__version__)' 2>&1"


def test_pip_installs_into_a_virtualenv_it_creates(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, PIP)
    wheel(tmp_path, "1.0")
    wheel(tmp_path, "2.0")
    sh(tmp_path, "rm -rf /opt/mr-venv")
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed(report) == ["file", "copy", "install"]
    installed = json.loads(tasks_of(report)["show"]["msg"])
    assert installed["cmd"] == ["pip", "install", "mrdemo-pkg==1.0"]
    assert installed["virtualenv"] == "/opt/mr-venv"
    assert "Successfully installed mrdemo-pkg-1.0" in installed["stdout"]
    assert sh(tmp_path, VERSION) == "1.0\n"

    again, report = apply(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed(report) == []

    # check mode with extra_args: changed, as Ansible says, and nothing installed
    checked, report = apply(tmp_path, "--check", "-e", '{"want": "2.0"}')
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert changed(report) == ["install"]
    assert sh(tmp_path, VERSION) == "1.0\n"

    upgraded, report = apply(tmp_path, "-e", '{"want": "2.0", "drop": true}')
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert changed(report) == ["install", "remove"]
    assert "Successfully installed mrdemo-pkg-2.0" in tasks_of(report)["show"]["msg"]
    assert "No module named 'mrdemo_pkg'" in sh(tmp_path, VERSION)


REBOOT = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: reboot
      reboot: {msg: "kernel update", reboot_timeout: 300, post_reboot_delay_sec: 5}
      register: r
    - name: show
      debug: {msg: "{{ r | to_json }}"}
"""


def test_reboot_in_check_mode_and_bad_arguments(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, REBOOT)
    checked, report = apply(tmp_path, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shown = json.loads(tasks_of(report)["show"]["msg"])
    assert (shown["changed"], shown["rebooted"], shown["elapsed"]) == (True, True, 0)
    write(tmp_path, "bad.yml", "- hosts: all\n  tasks:\n    - reboot: {reboot_timeout: soon}\n")
    bad, _ = apply(tmp_path, playbook="bad.yml")
    assert bad.returncode == 4, bad.stdout + bad.stderr
    assert "bad.yml:3" in bad.stderr and "reboot_timeout" in bad.stderr


def test_run_reboot_waits_for_a_new_boot_and_the_test_command(lab: Lab) -> None:
    """A lab host cannot restart: the "reboot" here changes the boot id two seconds later,
    which is what the wait watches; the test command must then pass on a new session."""
    target = next(h for h in lab.hosts if h.name == HOST)
    host = Host(id=HOST, host=target.address, port=target.port, user="root", ssh_key=lab.key)
    connection = SSHConnection(host, ConnectOptions(known_hosts_files=(lab.known_hosts,)))
    connection.open()
    try:
        connection.run("echo first > /tmp/mr-boot-id; rm -f /tmp/mr-tested")
        args = {
            "boot_time_command": "cat /tmp/mr-boot-id",
            "reboot_command": "sh -c 'sleep 2; echo second > /tmp/mr-boot-id'",
            "test_command": "test -s /tmp/mr-boot-id && touch /tmp/mr-tested",
            "reboot_timeout": 60,
        }
        outcome = run_reboot(RebootModule(), args, ModuleContext(host_id=HOST), connection)
        assert outcome.status == "changed", outcome.msg
        assert outcome.result["rebooted"] is True and outcome.result["elapsed"] >= 1
        assert connection.run("cat /tmp/mr-boot-id; ls /tmp/mr-tested").stdout == (
            "second\n/tmp/mr-tested\n"
        )
        # a boot id that never changes: Ansible's time-out message, after reboot_timeout
        ticks = iter(range(0, 1000, 30))
        never = {**args, "reboot_command": "true", "reboot_timeout": 60}
        late = run_reboot(
            RebootModule(),
            never,
            ModuleContext(host_id=HOST),
            connection,
            clock=lambda: float(next(ticks)),
            sleep=lambda seconds: None,
        )
        assert late.status == "failed"
        assert late.msg == "Timed out waiting for last boot time check (timeout=60)"
    finally:
        connection.close()


def run_here(module: str, args: dict[str, Any], *, check: bool = False) -> Any:
    """A module's script run by sh on this machine (for files under tmp only)."""
    mod = get_module(module)
    assert mod is not None
    ctx = ModuleContext(host_id="local", check=check, diff=True)
    step = mod.build(args, ctx)
    assert step is not None
    out = subprocess.run(["sh", "-c", step.script], capture_output=True, text=True, timeout=60)
    return mod.interpret(args, ctx, CommandOutput(out.returncode, out.stdout, out.stderr))


SCRIPTS: list[tuple[str, dict[str, Any]]] = [
    ("systemd", {"name": "nginx", "state": "reloaded", "enabled": True, "masked": False}),
    ("systemd", {"daemon_reload": True, "scope": "user", "no_block": True}),
    ("service_facts", {}),
    ("sysctl", {"name": "vm.swappiness", "value": 10, "sysctl_set": True}),
    ("cron", {"name": "a", "job": "x", "env": True, "insertafter": "B"}),
    ("timezone", {"name": "Europe/Paris", "hwclock": "UTC"}),
    ("hostname", {"name": "web-1", "use": "openrc"}),
    ("mount", {"path": "/a b", "src": "tmpfs", "fstype": "tmpfs", "state": "ephemeral"}),
    ("pip", {"requirements": "r.txt", "virtualenv": "v", "chdir": "/srv", "umask": "022"}),
    ("reboot", {"reboot_command": "systemctl reboot", "pre_reboot_delay": 90}),
]


def test_every_script_is_valid_sh() -> None:
    for name, args in SCRIPTS:
        module = get_module(name)
        assert module is not None
        step = module.build(args, ModuleContext(host_id="h"))
        assert step is not None
        check = subprocess.run(["sh", "-n"], input=step.script, capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stderr)


def test_cron_edits_a_cron_file_as_ansible_does(tmp_path: Path) -> None:
    cron_file = tmp_path / "jobs"
    base = {"cron_file": str(cron_file), "user": "root"}
    # an unnamed job Ansible once wrote ("#Ansible: None") is adopted; a name written twice
    # is replaced in both places; the missing last newline alone is a change
    cron_file.write_text("#Ansible: None\n* * * * * root /bin/a\n#Ansible: b\n1 * * * * root /bin/b"
                         "\n#Ansible: b\n2 * * * * root /bin/b")  # fmt: skip
    adopted = run_here("cron", {**base, "name": "a", "job": "/bin/a"})
    assert adopted.status == "changed" and adopted.result["jobs"] == ["a", "b", "b"]
    replaced = run_here("cron", {**base, "name": "b", "job": "/bin/b", "hour": "3"})
    assert replaced.status == "changed"
    assert cron_file.read_text() == (
        "#Ansible: a\n* * * * * root /bin/a\n#Ansible: b\n* 3 * * * root /bin/b\n"
        "#Ansible: b\n* 3 * * * root /bin/b\n"
    )
    assert run_here("cron", {**base, "name": "b", "job": "/bin/b", "hour": "3"}).status == "ok"
    # check mode: the diff, no change
    checked = run_here("cron", {**base, "name": "c", "job": "/bin/c"}, check=True)
    assert checked.status == "changed" and "+#Ansible: c\n+* * * * * root /bin/c" in checked.diff
    assert "/bin/c" not in cron_file.read_text()
    # a variable placed before another that does not exist: Ansible's message
    missing = run_here("cron", {**base, "name": "X", "job": "1", "env": True, "insertbefore": "Y"})
    assert (missing.status, missing.msg) == ("failed", "Variable named 'Y' not found.")
    # the last job removed: the file goes
    run_here("cron", {**base, "name": "a", "state": "absent"})
    gone = run_here("cron", {**base, "name": "b", "state": "absent"})
    assert gone.status == "changed" and not cron_file.exists()
    assert run_here("cron", {**base, "name": "b", "state": "absent"}).status == "ok"


def test_service_facts_reads_systemctl_as_ansible_does() -> None:
    module = get_module("service_facts")
    assert module is not None
    stdout = (
        "@@sysv\n [ + ]  ssh\n [ - ]  cron\n@@units\n"
        "ssh.service loaded active running OpenBSD Secure Shell server\n"
        "cron.service loaded inactive dead Regular background program processing daemon\n"
        "bad.service not-found inactive dead bad.service\n"
        "@@files\nUNIT FILE STATE PRESET\nssh.service enabled enabled\n"
        "cron.service disabled enabled\nbad.service masked enabled\n"
        "getty@.service static -\n\n4 unit files listed.\n"
    )
    ctx = ModuleContext(host_id="h", vars={"ansible_facts": {"os_family": "Debian"}})
    outcome = module.interpret({}, ctx, CommandOutput(0, stdout, ""))
    services = outcome.facts["services"]
    assert services["ssh"] == {"name": "ssh", "state": "running", "source": "sysv"}
    assert services["ssh.service"] == {
        "name": "ssh.service",
        "state": "running",
        "status": "enabled",
        "source": "systemd",
    }
    assert services["cron.service"]["state"] == "stopped"
    assert services["cron.service"]["status"] == "disabled"
    assert services["bad.service"]["status"] == "not-found"  # a bad state is kept
    assert services["getty@.service"]["state"] == "inactive"
    # gathered facts stay beside the services
    assert outcome.facts["ansible_facts"]["os_family"] == "Debian"


def test_systemd_status_comes_from_systemctl_show() -> None:
    module = get_module("systemd_service")
    assert module is not None
    stdout = (
        "__mr_show__ Id=nginx.service\n__mr_show__ ActiveState=inactive\n"
        "__mr_show__ UnitFileState=disabled\n__mr_show__ LoadState=loaded\n"
        "__mr_show__ ExecStart={ path=/usr/sbin/nginx ;\n__mr_show__  argv[]=nginx }\n"
        "__mr__ online 1\n__mr__ found 1\n__mr__ enabled 0\n__mr__ did enable\n__mr__ did start\n"
    )
    args = {"name": "nginx", "state": "restarted", "enabled": True}
    outcome = module.interpret(args, ModuleContext(host_id="h"), CommandOutput(0, stdout, ""))
    assert outcome.status == "changed" and outcome.msg == "nginx: enable, start"
    status = outcome.result["status"]
    assert (status["ActiveState"], status["UnitFileState"]) == ("inactive", "disabled")
    assert status["ExecStart"] == "{ path=/usr/sbin/nginx ;\n argv[]=nginx }"
    assert (outcome.result["state"], outcome.result["enabled"]) == ("started", True)
