"""`facts` (setup, gather_facts) and `ping`.

`facts` gathers everything in one remote command: a sh script printing `key<TAB>value` lines
(hostname, /etc/os-release, uname, CPUs, /proc/meminfo, `df -P -k`, the default route,
python3/docker/compose versions, init system, user). `interpret()` builds two views of the
same data: Ansible's flat names (`ansible_distribution`, `ansible_memtotal_mb`, ...) and
machineroom's nested `facts` dict. No Python is needed on the target.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep

# Every probe is guarded: a missing tool prints nothing, and the key then comes back null.
FACTS_SCRIPT = r"""
k() { printf '%s\t%s\n' "$1" "$2"; }
k hostname "$(uname -n)"
k fqdn "$(hostname -f 2>/dev/null || uname -n)"
k kernel "$(uname -r)"
k kernel_version "$(uname -v)"
k system "$(uname -s)"
k arch "$(uname -m)"
if [ -r /etc/os-release ]; then
  awk '/^(ID|ID_LIKE|NAME|VERSION_ID|VERSION_CODENAME|PRETTY_NAME)=/ {
    v = substr($0, index($0, "=") + 1)
    print "os_" substr($0, 1, index($0, "=") - 1) "\t" v }' /etc/os-release
fi
[ -r /etc/debian_version ] && k debian_version "$(cat /etc/debian_version)"
k cpus "$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
k cpu_model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)"
awk '/^MemTotal:/{print "mem_total_kb\t" $2} /^MemAvailable:/{print "mem_available_kb\t" $2}
  /^MemFree:/{print "mem_free_kb\t" $2} /^SwapTotal:/{print "swap_total_kb\t" $2}' /proc/meminfo
df -P -k 2>/dev/null | awk 'NR>1 {print "disk\t" $6 "\t" $1 "\t" $2 "\t" $3 "\t" $4 "\t" $5}'
if command -v ip >/dev/null 2>&1; then
  ip -4 route get 1.1.1.1 2>/dev/null | awk 'NR==1 {for(i=1;i<NF;i++){
    if($i=="via")g=$(i+1); if($i=="dev")d=$(i+1); if($i=="src")s=$(i+1)}
    print "ipv4\t" s "\t" d "\t" g}'
fi
command -v python3 >/dev/null 2>&1 && k python "$(python3 --version 2>&1)"
if command -v docker >/dev/null 2>&1; then
  k docker "$(docker --version 2>/dev/null)"
  k compose "$(docker compose version 2>/dev/null | head -n1)"
fi
command -v docker-compose >/dev/null 2>&1 &&
  k compose_v1 "$(docker-compose version 2>/dev/null | head -n1)"
if [ -d /run/systemd/system ]; then k init systemd
else k init "$(cat /proc/1/comm 2>/dev/null)"; fi
for m in apt-get dnf yum apk zypper pacman; do
  command -v "$m" >/dev/null 2>&1 && { k pkg_mgr "$m"; break; }
done
k user "$(id -un)"
k uid "$(id -u)"
k gid "$(id -g)"
k home "$HOME"
k shell "${SHELL:-}"
k uptime "$(cut -d' ' -f1 /proc/uptime 2>/dev/null)"
k date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
"""

# os-release ID -> Ansible's ansible_distribution and ansible_os_family
_DISTRIBUTIONS = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "raspbian": "Debian",
    "linuxmint": "Linux Mint",
    "centos": "CentOS",
    "rhel": "RedHat",
    "fedora": "Fedora",
    "rocky": "Rocky",
    "almalinux": "AlmaLinux",
    "ol": "OracleLinux",
    "amzn": "Amazon",
    "alpine": "Alpine",
    "arch": "Archlinux",
    "opensuse-leap": "openSUSE Leap",
    "opensuse-tumbleweed": "openSUSE Tumbleweed",
    "sles": "SLES",
}
_FAMILIES = {
    "debian": "Debian",
    "ubuntu": "Debian",
    "rhel": "RedHat",
    "fedora": "RedHat",
    "centos": "RedHat",
    "suse": "Suse",
    "opensuse": "Suse",
    "alpine": "Alpine",
    "arch": "Archlinux",
}
_PKG_MGR = {"apt-get": "apt"}
_VERSION = re.compile(r"(\d+(?:\.\d+)+)")


def _version(text: str | None) -> str | None:
    """The first dotted version number in a tool's banner ("Docker version 28.2.2, ...")."""
    if not text:
        return None
    match = _VERSION.search(text)
    return match.group(1) if match else None


def _mb(kb: str | None) -> int:
    return int(kb) // 1024 if kb and kb.isdigit() else 0


def parse_facts(stdout: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The script's output -> (nested machineroom facts, flat Ansible-compatible facts)."""
    raw: dict[str, str] = {}
    disks: list[dict[str, Any]] = []
    ipv4: dict[str, str] | None = None
    for line in stdout.splitlines():
        key, _, value = line.partition("\t")
        if key == "disk":
            mount, device, size, used, avail, pct = (value.split("\t") + [""] * 6)[:6]
            if not size.isdigit():
                continue
            disks.append(
                {
                    "mount": mount,
                    "device": device,
                    "size_mb": int(size) // 1024,
                    "used_mb": int(used) // 1024 if used.isdigit() else 0,
                    "available_mb": int(avail) // 1024 if avail.isdigit() else 0,
                    "use_percent": int(pct.rstrip("%")) if pct.rstrip("%").isdigit() else None,
                }
            )
        elif key == "ipv4":
            address, interface, gateway = ([*value.split("\t"), "", "", ""])[:3]
            if address:
                ipv4 = {"address": address, "interface": interface, "gateway": gateway}
        elif key.startswith("os_"):
            raw[key] = value.strip().strip("\"'")  # os-release values may be quoted
        elif key:
            raw[key] = value
    os_id = raw.get("os_ID", "").lower()
    like = raw.get("os_ID_LIKE", "").lower().split()
    distribution = _DISTRIBUTIONS.get(os_id) or raw.get("os_NAME") or raw.get("system", "")
    family = next((_FAMILIES[i] for i in [os_id, *like] if i in _FAMILIES), distribution or None)
    version = raw.get("os_VERSION_ID", "")
    if os_id == "debian" and raw.get("debian_version", "")[:1].isdigit():
        version = raw["debian_version"]  # "12.5", as Ansible reports it
    compose_v2 = _version(raw.get("compose"))
    compose_v1 = _version(raw.get("compose_v1"))
    init = raw.get("init") or None
    pkg_mgr = raw.get("pkg_mgr")
    nested: dict[str, Any] = {
        "hostname": raw.get("hostname", ""),
        "fqdn": raw.get("fqdn") or raw.get("hostname", ""),
        "os": {
            "id": os_id or None,
            "family": family,
            "distribution": distribution or None,
            "version": version or None,
            "major_version": version.split(".")[0] if version else None,
            "codename": raw.get("os_VERSION_CODENAME") or None,
            "pretty_name": raw.get("os_PRETTY_NAME") or None,
        },
        "system": raw.get("system"),
        "kernel": raw.get("kernel"),
        "arch": raw.get("arch"),
        "cpus": int(raw["cpus"]) if raw.get("cpus", "").isdigit() else 0,
        "cpu_model": raw.get("cpu_model") or None,
        "memory": {
            "total_mb": _mb(raw.get("mem_total_kb")),
            "available_mb": _mb(raw.get("mem_available_kb")),
            "free_mb": _mb(raw.get("mem_free_kb")),
            "swap_total_mb": _mb(raw.get("swap_total_kb")),
        },
        "disks": disks,
        "ipv4": ipv4,
        "python": _version(raw.get("python")),
        "docker": _version(raw.get("docker")),
        "compose": compose_v2 or compose_v1,
        "compose_v2": compose_v2,
        "compose_v1": compose_v1,
        "init": init,
        "pkg_mgr": _PKG_MGR.get(pkg_mgr or "", pkg_mgr),
        "user": {
            "name": raw.get("user"),
            "uid": int(raw["uid"]) if raw.get("uid", "").isdigit() else None,
            "gid": int(raw["gid"]) if raw.get("gid", "").isdigit() else None,
            "home": raw.get("home"),
            "shell": raw.get("shell") or None,
        },
        "uptime_seconds": float(raw["uptime"]) if _version(raw.get("uptime")) else None,
        "date": raw.get("date"),
    }
    os = nested["os"]
    memory = nested["memory"]
    flat: dict[str, Any] = {
        "ansible_hostname": nested["hostname"].split(".")[0],
        "ansible_nodename": nested["hostname"],
        "ansible_fqdn": nested["fqdn"],
        "ansible_system": nested["system"],
        "ansible_kernel": nested["kernel"],
        "ansible_kernel_version": raw.get("kernel_version"),
        "ansible_architecture": nested["arch"],
        "ansible_machine": nested["arch"],
        "ansible_distribution": os["distribution"],
        "ansible_distribution_version": os["version"],
        "ansible_distribution_major_version": os["major_version"],
        "ansible_distribution_release": os["codename"],
        "ansible_os_family": os["family"],
        "ansible_processor_vcpus": nested["cpus"],
        "ansible_processor_count": nested["cpus"],
        "ansible_memtotal_mb": memory["total_mb"],
        "ansible_memfree_mb": memory["free_mb"],
        "ansible_swaptotal_mb": memory["swap_total_mb"],
        "ansible_mounts": [
            {
                "mount": d["mount"],
                "device": d["device"],
                "size_total": d["size_mb"] * 1024 * 1024,
                "size_available": d["available_mb"] * 1024 * 1024,
            }
            for d in disks
        ],
        "ansible_default_ipv4": ipv4 or {},
        "ansible_python_version": nested["python"],
        "ansible_service_mgr": init,
        "ansible_pkg_mgr": nested["pkg_mgr"],
        "ansible_user_id": nested["user"]["name"],
        "ansible_user_uid": nested["user"]["uid"],
        "ansible_user_gid": nested["user"]["gid"],
        "ansible_user_dir": nested["user"]["home"],
        "ansible_user_shell": nested["user"]["shell"],
        "ansible_docker_version": nested["docker"],
        "ansible_docker_compose_version": nested["compose"],
    }
    return nested, flat


class FactsModule(Module):
    """`facts` (aliases `setup`, `gather_facts`): one remote call gathering host facts.

    Outcome.facts (and result) hold the flat Ansible names (`ansible_distribution`, ...),
    an `ansible_facts` dict of the same without the prefix, and the nested `facts` dict
    (`facts.os.distribution`, `facts.memory.total_mb`, `facts.disks`, `facts.docker`, ...).
    Always ok, never changed; runs in check mode too. `gather_subset`/`filter` are accepted
    for Ansible compatibility; `filter` keeps only flat names matching the glob.
    """

    name: ClassVar[str] = "facts"
    aliases: ClassVar[tuple[str, ...]] = ("setup", "gather_facts")
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "gather_subset": {"anyOf": [{"type": "string"}, {"type": "array"}]},
            "gather_timeout": {"type": "integer"},
            "filter": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        },
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """The fixed facts script: no user value reaches it."""
        return RemoteStep(FACTS_SCRIPT, timeout=float(args.get("gather_timeout") or 60))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Flat Ansible names plus the nested `facts` dict, as facts and as the result."""
        if output.exit_code != 0 and not output.stdout:
            return Outcome("failed", msg=output.stderr.strip() or f"exit {output.exit_code}")
        nested, flat = parse_facts(output.stdout)
        patterns = args.get("filter")
        if patterns:
            wanted = [patterns] if isinstance(patterns, str) else list(patterns)
            flat = {k: v for k, v in flat.items() if any(fnmatch.fnmatch(k, p) for p in wanted)}
        facts = {
            **flat,
            "ansible_facts": {k.removeprefix("ansible_"): v for k, v in flat.items()},
            "facts": nested,
        }
        os = nested["os"]
        msg = (
            f"{nested['hostname']}: {os['distribution']} {os['version']} {nested['arch']}, "
            f"{nested['cpus']} CPUs, {nested['memory']['total_mb']} MB"
        )
        return Outcome("ok", msg=msg, result=facts, facts=facts)


class PingModule(Module):
    """`ping`: proves the host runs commands (`echo pong`); ok with `ping: pong`."""

    name: ClassVar[str] = "ping"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"data": {"type": "string", "default": "pong"}},
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """`echo pong`."""
        return RemoteStep("echo pong")

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """ok when the host answered pong; Ansible's `data: crash` makes it fail on purpose."""
        data = args.get("data", "pong")
        if output.exit_code != 0 or output.stdout.strip() != "pong":
            return Outcome("failed", msg=output.stderr.strip() or "no pong")
        if data == "crash":
            return Outcome("failed", msg="boom (data=crash)", result={"ping": data})
        return Outcome("ok", msg="pong", result={"ping": data})
