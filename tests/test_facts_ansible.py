"""Facts under Ansible's names and shapes: the same playbook, run by ansible-playbook and by
`machineroom apply` on one lab host (h27), writes what each tool gathered to a file on the
host; the facts we claim equal must be equal (docs/modules/facts.md lists them).

The host gets a mount whose device is a path (Ansible lists only those: the lab's / is an
overlay named `lab-h27`, which both leave out), with a space in its mount point, and three
facts.d files (JSON, INI, an executable printing JSON) for `ansible_local`.
ansible-core comes from tests/test_ansible_parity.py's cached virtualenv.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_ansible_parity import (  # noqa: F401  (the fixture, used by name)
    Ansible,
    ansible,
    ansible_env,
    write_ansible_inventory,
    write_machineroom_project,
)

from machineroom.lab import Lab, LabHost
from machineroom.modules.facts import collectors_for, filter_facts

# Both tools run this playbook: facts as top-level names and under ansible_facts, a second
# gather narrowed by gather_subset and filter, and what each call registered.
PLAYBOOK = """\
- hosts: parity
  gather_facts: true
  tasks:
    - name: narrowed gather
      setup:
        gather_subset: ["!all", "!min", "network"]
        filter: ["ansible_default_ipv4", "all_ipv4*"]
      register: narrowed
    - package_facts:
    - name: write what was gathered
      copy:
        dest: "{{ out }}"
        content: |
          {{ {"facts": ansible_facts,
              "top": {"distribution": ansible_distribution,
                      "os_family": ansible_os_family,
                      "python": ansible_python,
                      "default_ipv4": ansible_default_ipv4,
                      "mounts": ansible_mounts,
                      "local": ansible_local,
                      "lo": ansible_lo,
                      "memtotal_mb": ansible_memtotal_mb},
              "bash": packages.bash,
              "narrowed": narrowed.ansible_facts | dict2items | map(attribute="key")
                          | select("match", "ansible_") | reject("eq", "ansible_facts")
                          | list | sort} | to_json }}
"""

MOUNT = "/mnt/mr facts"
SETUP = f"""
set -e
mkdir -p '{MOUNT}' /etc/ansible/facts.d
mountpoint -q '{MOUNT}' || mount -t tmpfs -o size=8m /dev/mrfacts '{MOUNT}'
echo '{{"role": "web", "ports": [80, 443], "nested": {{"on": true}}}}' \
  > /etc/ansible/facts.d/app.fact
printf '[general]\\nName = lab host\\nzone=eu-1\\n[db]\\nport = 5432\\n' \
  > /etc/ansible/facts.d/site.fact
printf '#!/bin/sh\\necho "{{\\\\"made_by\\\\": \\\\"script\\\\"}}"\\n' \
  > /etc/ansible/facts.d/run.fact
chmod 755 /etc/ansible/facts.d/run.fact
"""
CLEANUP = f"umount '{MOUNT}' 2>/dev/null; rm -rf /etc/ansible /mnt/mr*"


def ssh(lab: Lab, host: LabHost, command: str) -> str:
    out = subprocess.run(
        ["ssh", "-F", lab.ssh_config, host.name, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def gathered_by_ansible(tool: Ansible, lab: Lab, host: LabHost, work: Path) -> Any:
    work.mkdir()
    write_ansible_inventory(work / "inventory.json", lab, host)
    (work / "site.yml").write_text(PLAYBOOK)
    out = subprocess.run(
        [str(tool.playbook), "-i", "inventory.json", "site.yml", "-e", "out=/tmp/ans.json"],
        cwd=work,
        env=ansible_env(tool, work),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(ssh(lab, host, "cat /tmp/ans.json"))


def gathered_by_machineroom(lab: Lab, host: LabHost, work: Path) -> Any:
    work.mkdir()
    write_machineroom_project(work, lab, host)
    (work / "site.yml").write_text(PLAYBOOK)
    args = ["apply", "site.yml", "-i", "inventory.yml", "-e", "out=/tmp/mr.json"]
    out = subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(ssh(lab, host, "cat /tmp/mr.json"))


# Facts whose values both tools must report alike on the same host, at the same moment.
EQUAL = [
    *("distribution", "distribution_version", "distribution_major_version"),
    *("distribution_minor_version", "distribution_release", "distribution_file_variety"),
    *("distribution_file_path", "os_family", "architecture", "machine", "system", "kernel"),
    *("kernel_version", "userspace_bits", "userspace_architecture", "hostname", "nodename"),
    *("fqdn", "domain", "machine_id", "python_version", "service_mgr", "pkg_mgr"),
    *("default_ipv4", "default_ipv6", "lo", "lsb", "dns", "selinux", "apparmor", "fips"),
    *("virtualization_type", "virtualization_role"),
    *("processor", "processor_count", "processor_cores", "processor_threads_per_core"),
    *("processor_vcpus", "processor_nproc", "memtotal_mb", "swaptotal_mb", "user_id"),
    *("user_uid", "user_gid", "user_gecos", "user_dir", "user_shell", "real_user_id"),
    *("effective_user_id", "real_group_id", "effective_group_id", "ansible_local", "cmdline"),
    *("is_chroot", "system_vendor", "product_name", "bios_vendor", "form_factor"),
    "module_setup",
]


@pytest.fixture(scope="module")
def both(ansible: Ansible, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: F811
    host = lab.hosts[26]  # h27: Ansible-named facts (tests/conftest.py)
    ssh(lab, host, SETUP)
    try:
        work = tmp_path_factory.mktemp("facts")
        # both at once: the same moment's facts, and half the wall time
        with ThreadPoolExecutor(2) as pool:
            ansible_run = pool.submit(gathered_by_ansible, ansible, lab, host, work / "ansible")
            ours = gathered_by_machineroom(lab, host, work / "machineroom")
            theirs = ansible_run.result()
    finally:
        ssh(lab, host, CLEANUP)
    return theirs, ours


def test_claimed_facts_equal_ansibles(both: Any) -> None:
    theirs, ours = both
    a, m = theirs["facts"], ours["facts"]
    different = {k: (a.get(k), m.get(k)) for k in EQUAL if a.get(k) != m.get(k)}
    assert not different, json.dumps(different, indent=1)
    assert a["default_ipv4"]["address"] and a["python"]["version"] == m["python"]["version"]
    assert {k: m["python"][k] for k in ("executable", "type", "has_sslcontext")} == {
        k: a["python"][k] for k in ("executable", "type", "has_sslcontext")
    }
    # lists Ansible builds from sets or directory order: compared as sets
    for key in (
        "all_ipv4_addresses",
        "all_ipv6_addresses",
        "interfaces",
        "virtualization_tech_guest",
    ):
        assert sorted(a[key]) == sorted(m[key]), key
    for name in a["interfaces"]:
        assert a[name] == m[name], name
    assert set(a["devices"]) == set(m["devices"])
    for name, device in a["devices"].items():
        for key in ("sectors", "sectorsize", "size", "removable", "rotational", "partitions"):
            assert m["devices"][name][key] == device[key], (name, key)
    assert set(a["env"]) - set(m["env"]) <= {"LANG", "LC_ALL", "LC_MESSAGES", "TERM", "_"}
    assert a["env"]["HOME"] == m["env"]["HOME"] and a["env"]["PATH"] == m["env"]["PATH"]
    assert abs(a["memory_mb"]["real"]["total"] - m["memory_mb"]["real"]["total"]) <= 1
    assert abs(a["uptime_seconds"] - m["uptime_seconds"]) < 300
    epoch_a, epoch_m = int(a["date_time"]["epoch"]), int(m["date_time"]["epoch"])
    assert abs(epoch_a - epoch_m) < 300 and set(a["date_time"]) == set(m["date_time"])
    assert a["date_time"]["tz"] == m["date_time"]["tz"]
    assert a["gather_subset"] == m["gather_subset"] == ["all"]


def test_mounts_and_local_facts(both: Any) -> None:
    theirs, ours = both
    a, m = theirs["facts"], ours["facts"]
    assert [x["mount"] for x in a["mounts"]] == [x["mount"] for x in m["mounts"]] == [MOUNT]
    (ma,), (mm,) = a["mounts"], m["mounts"]
    assert mm == ma, (ma, mm)
    assert mm["device"] == "/dev/mrfacts" and mm["size_total"] == 8 * 2**20
    assert m["ansible_local"] == a["ansible_local"] and "local" not in m
    assert m["ansible_local"]["app"] == {"role": "web", "ports": [80, 443], "nested": {"on": True}}
    assert m["ansible_local"]["site"] == {
        "general": {"name": "lab host", "zone": "eu-1"},
        "db": {"port": "5432"},
    }
    assert m["ansible_local"]["run"] == {"made_by": "script"}


def test_top_level_names_and_narrowed_gather(both: Any) -> None:
    theirs, ours = both
    assert ours["top"] == theirs["top"]
    assert ours["top"]["distribution"] == ours["facts"]["distribution"] == "Debian"
    assert ours["narrowed"] == theirs["narrowed"]
    assert ours["narrowed"] == ["ansible_all_ipv4_addresses", "ansible_default_ipv4"]


def test_package_facts_match(both: Any) -> None:
    theirs, ours = both
    a, m = theirs["facts"]["packages"], ours["facts"]["packages"]
    assert set(a) == set(m) and len(m) > 100
    keys = ("name", "version", "arch", "source")
    for name in a:
        assert [{k: p[k] for k in keys} for p in a[name]] == [
            {k: p[k] for k in keys} for p in m[name]
        ], name
    assert ours["bash"][0]["version"] == theirs["bash"][0]["version"]
    # dpkg's section of the installed package, apt's of the candidate: the same for most
    same = sum(a[n][0]["category"] == m[n][0]["category"] for n in a)
    assert same >= 0.95 * len(a)


def test_gather_subset_and_filter_rules() -> None:
    everything = collectors_for(None)
    assert {"hardware", "network", "virtual", "platform", "local"} <= everything
    assert "docker" not in everything and "docker" in collectors_for(["all", "docker"])
    minimal = collectors_for("!all")
    assert "hardware" not in minimal and {"distribution", "python", "env"} <= minimal
    assert collectors_for(["!all", "!min"]) == set()
    assert collectors_for("!all,!min,network") == {"network"}
    # as ansible-core: a lone exclusion leaves the minimum, "all" has to be named
    assert collectors_for(["!hardware"]) == minimal
    assert collectors_for(["all", "!hardware"]) == everything - {"hardware"}
    assert collectors_for(["!all", "mounts"]) == minimal | {"hardware"}
    with pytest.raises(ValueError, match="Bad subset 'hardwear'"):
        collectors_for("hardwear")
    facts = {"ansible_distribution": "Debian", "ansible_eth0": {}, "ansible_lo": {}}
    assert filter_facts(facts, ["ansible_eth*"]) == {"ansible_eth0": {}}
    assert filter_facts(facts, ["dist*", "lo"]) == {
        "ansible_distribution": "Debian",
        "ansible_lo": {},
    }
    assert filter_facts(facts, ["*"]) == facts


def test_the_step_is_fast(lab: Lab) -> None:
    """The whole gather is one sh step; its CPU time on the host stays under 50 ms (about
    20 ms: five programs, files read by one awk; elapsed time on this shared 2-core machine
    varies with the load, CPU time does not)."""
    from machineroom.modules.base import ModuleContext
    from machineroom.modules.facts import FactsModule

    host = lab.hosts[26]
    script = FactsModule().build({}, ModuleContext(host_id=host.name)).script
    ssh(lab, host, f"cat > /tmp/mr-facts.sh <<'MR_EOF'\n{script}\nMR_EOF")
    started = time.monotonic()
    out = ssh(
        lab, host, "sh -c 'for i in 1 2 3 4 5; do sh /tmp/mr-facts.sh >/dev/null; done; times'"
    )
    assert time.monotonic() - started < 30
    children = out.splitlines()[1].split()  # user and system time of the 5 runs
    seconds = sum(
        float(t.split("m")[0]) * 60 + float(t.split("m")[1].rstrip("s")) for t in children
    )
    assert seconds / 5 < 0.05, out


FAKE_DOCKER = """#!/bin/sh
echo "$*" >> /tmp/mr-docker.log
case $1 in --version) echo 'Docker version 99.1.2, build mr';;
  compose) echo 'Docker Compose version v2.99.3';; esac
"""


def test_docker_banners_come_from_a_cache(lab: Lab) -> None:
    """The docker client (a Go program: 20+ ms of CPU a call) runs on the first gather only;
    later ones read its banners from ~/.cache/machineroom/docker-facts, until the binary
    changes (its ctime, size, mtime or inode: one `stat`)."""
    from machineroom.modules.base import ModuleContext
    from machineroom.modules.facts import FactsModule, parse_facts

    host = lab.hosts[26]
    subset = ["!all", "!min", "docker"]
    script = FactsModule().build({"gather_subset": subset}, ModuleContext(host_id=host.name))
    ssh(lab, host, f"cat > /tmp/mr-docker-facts.sh <<'MR_EOF'\n{script.script}\nMR_EOF")
    # /usr/local/sbin comes before the real client's /usr/local/bin on root's PATH
    ssh(
        lab,
        host,
        f"cat > /usr/local/sbin/docker <<'MR_EOF'\n{FAKE_DOCKER}MR_EOF\n"
        "chmod 755 /usr/local/sbin/docker; rm -rf ~/.cache/machineroom /tmp/mr-docker.log",
    )

    def gather() -> tuple[Any, list[str]]:
        _, facts = parse_facts(ssh(lab, host, "sh /tmp/mr-docker-facts.sh"), subset)
        calls = ssh(lab, host, "cat /tmp/mr-docker.log").splitlines()
        return (facts["ansible_docker_version"], facts["ansible_docker_compose_version"]), calls

    try:
        assert gather() == (("99.1.2", "2.99.3"), ["--version", "compose version"])
        assert gather() == (("99.1.2", "2.99.3"), ["--version", "compose version"])
        ssh(lab, host, "sed -i s/99.1.2/99.1.4/ /usr/local/sbin/docker")  # an upgrade
        assert gather() == (("99.1.4", "2.99.3"), ["--version", "compose version"] * 2)
        assert gather()[1] == ["--version", "compose version"] * 2
    finally:
        ssh(lab, host, "rm -rf /usr/local/sbin/docker ~/.cache/machineroom /tmp/mr-docker*")


def test_subset_for_the_facts_a_play_reads(lab: Lab) -> None:
    """subset_for_facts names, for every fact a full gather gives, a subset that gives it
    too (checked on one real gather's output, parsed as each subset would be)."""
    from machineroom.modules.base import ModuleContext
    from machineroom.modules.facts import FactsModule, parse_facts, subset_for_facts

    assert subset_for_facts(["ansible_distribution", "os_family", "ansible_eth0"]) == [
        "!all",
        "!min",
        "distribution",
        "network",
    ]
    assert subset_for_facts(["ansible_distribution", "ansible_facts"]) is None
    assert subset_for_facts(["facts"]) is None
    host = lab.hosts[26]
    full = ["all", "docker"]
    script = FactsModule().build({"gather_subset": full}, ModuleContext(host_id=host.name))
    stdout = ssh(lab, host, script.script)
    _, everything = parse_facts(stdout, full)
    assert len(everything) > 60
    missed = {}
    for name, value in everything.items():
        subset = subset_for_facts([name])
        assert subset is not None and len(subset) == 3, (name, subset)
        _, narrow = parse_facts(stdout, subset)
        if narrow.get(name) != value:
            missed[name] = subset
    assert missed == {}
