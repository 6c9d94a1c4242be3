"""The facts script's output read into the names and shapes of Ansible's setup module.

One function per fact subset turns what the script printed (`facts_script`) into the facts
Ansible's collectors return for it, without the `ansible_` prefix: `platform` gives system,
kernel, hostname, fqdn, ...; `hardware` gives processor*, mem*, memory_mb, devices, ...
Where Ansible's rule is simple it is followed to the letter (processor counts, mounts kept,
service_mgr, the default route's interface data); the sources are the files Ansible reads.
"""

from __future__ import annotations

import base64
import configparser
import datetime
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

BEGIN = "@@mr begin "
END = "@@mr end"


@dataclass
class ScriptOutput:
    """The script's output split: single values (a key may repeat) and named blocks."""

    values: dict[str, list[str]] = field(default_factory=dict)
    blocks: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        """The last value printed under `key`, or `default`."""
        found = self.values.get(key)
        return found[-1] if found else default

    def all(self, key: str) -> list[str]:
        """Every value printed under `key`, in order."""
        return self.values.get(key, [])


def parse_output(stdout: str) -> ScriptOutput:
    """Split the script's stdout into values and blocks."""
    out = ScriptOutput()
    block: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if block is not None:
            if line == END:
                out.blocks[block] = "\n".join(lines)
                block, lines = None, []
            else:
                lines.append(line)
        elif line.startswith(BEGIN):
            block = line[len(BEGIN) :].strip()
        elif "\t" in line:
            key, _, value = line.partition("\t")
            out.values.setdefault(key, []).append(value)
    return out


# ---------------------------------------------------------------------------- platform


def _int(text: str | None, default: int | None = None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return default


_64BIT = re.compile(r"^(x86_64|amd64|aarch64|arm64|ppc64.*|s390x|riscv64|mips64.*|loongarch64)$")


def platform_facts(out: ScriptOutput) -> dict[str, Any]:
    """system, kernel, kernel_version, machine, architecture, hostname, nodename, fqdn,
    domain, userspace_bits/architecture, machine_id."""
    system, kernel, machine = ([*out.get("uname").split(" ", 2), "", "", ""])[:3]
    node = out.get("nodename")
    fqdn = out.get("fqdn") or node
    bits = "64" if _64BIT.match(machine) else "32"
    facts: dict[str, Any] = {
        "system": system or None,
        "kernel": kernel or None,
        "kernel_version": out.get("kernel_version") or None,
        "machine": machine or None,
        "architecture": machine or None,
        "userspace_bits": bits,
        "fqdn": fqdn,
        "hostname": node.split(".")[0],
        "nodename": node,
        "domain": ".".join(fqdn.split(".")[1:]),
    }
    if machine == "x86_64":
        facts["userspace_architecture"] = "x86_64"
    elif re.match(r"i[3-6]86", machine):
        facts["architecture"] = facts["userspace_architecture"] = "i386"
    if out.get("machine_id"):
        facts["machine_id"] = out.get("machine_id")
    return facts


# ---------------------------------------------------------------------------- distribution

# os-release ID -> Ansible's distribution name, where it is not ID capitalized
DISTRIBUTION_NAMES = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "raspbian": "Debian",
    "linuxmint": "Linux Mint",
    "rhel": "RedHat",
    "centos": "CentOS",
    "fedora": "Fedora",
    "rocky": "Rocky",
    "almalinux": "AlmaLinux",
    "ol": "OracleLinux",
    "amzn": "Amazon",
    "alpine": "Alpine",
    "arch": "Archlinux",
    "opensuse-leap": "openSUSE Leap",
    "opensuse-tumbleweed": "openSUSE Tumbleweed",
    "opensuse": "openSUSE",
    "sles": "SLES",
    "sles_sap": "SLES_SAP",
    "kali": "Kali",
    "devuan": "Devuan",
    "pop": "Pop!_OS",
    "gentoo": "Gentoo",
    "void": "Void",
    "clear-linux-os": "Clear Linux OS",
}
# Ansible's OS_FAMILY_MAP (the common part)
_FAMILY_MEMBERS = {
    "RedHat": "RedHat RHEL Fedora CentOS Scientific OracleLinux Amazon AlmaLinux Rocky "
    "CloudLinux EuroLinux TencentOS openEuler Alibaba",
    "Debian": "Debian Ubuntu Raspbian Neon Kali Devuan SteamOS Parrot Deepin Uos",
    "Suse": "SuSE SLES SLED openSUSE SLES_SAP SUSE_LINUX",
    "Archlinux": "Archlinux Antergos Manjaro",
    "Gentoo": "Gentoo Funtoo",
    "Alpine": "Alpine",
    "ClearLinux": "",
}
OS_FAMILY = {n: fam for fam, names in _FAMILY_MEMBERS.items() for n in names.split()}
OS_FAMILY.update(
    {
        "Linux Mint": "Debian",
        "Pop!_OS": "Debian",
        "openSUSE Leap": "Suse",
        "openSUSE Tumbleweed": "Suse",
        "Clear Linux OS": "ClearLinux",
    }
)
# what Ansible calls the file it parsed, by family
_FILE_VARIETY = {"RedHat": "RedHat", "Suse": "SUSE", "Alpine": "Alpine", "Archlinux": "Archlinux"}


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines (values may be quoted) -> dict."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value.strip("\"'")]
            found[key.strip()] = " ".join(words)
    return found


def distribution_facts(out: ScriptOutput) -> dict[str, Any]:
    """distribution, distribution_version/major/minor/release, os_family, distribution_file_*."""
    osr = parse_os_release(out.blocks.get("os_release", ""))
    os_id = osr.get("ID", "").lower()
    system = out.get("uname").split(" ")[0] or "Linux"
    name = DISTRIBUTION_NAMES.get(os_id) or (os_id.capitalize() if os_id else system)
    version = osr.get("VERSION_ID", "")
    debian_version = out.get("debian_version")
    release_files = dict(line.split("\t", 1) for line in out.all("release_file") if "\t" in line)
    if name == "Debian" and debian_version[:1].isdigit():
        version = debian_version  # "12.11", as Ansible reads /etc/debian_version
    elif name in ("RedHat", "CentOS", "Rocky", "AlmaLinux", "OracleLinux", "Fedora"):
        text = release_files.get("/etc/redhat-release", "")
        found = re.search(r"release ([\d.]+)", text)
        if found:
            version = found.group(1)
    elif name == "Alpine" and "/etc/alpine-release" in release_files:
        version = release_files["/etc/alpine-release"]
    release = osr.get("VERSION_CODENAME") or osr.get("UBUNTU_CODENAME") or ""
    if not release and name in ("RedHat", "CentOS", "Rocky", "AlmaLinux", "OracleLinux"):
        found = re.search(r"\((.*)\)", release_files.get("/etc/redhat-release", ""))
        release = found.group(1) if found else ""
    family = OS_FAMILY.get(name, name)
    parts = version.split(".")
    facts: dict[str, Any] = {
        "distribution": name,
        "distribution_version": version or "NA",
        "distribution_major_version": parts[0] if version else "NA",
        "distribution_release": release or "NA",
        "os_family": family,
    }
    if len(parts) > 1:
        facts["distribution_minor_version"] = parts[1]
    if osr:
        path = "/etc/os-release"
        if family == "RedHat" and "/etc/redhat-release" in release_files:
            path = "/etc/redhat-release"
        elif family == "Alpine" and "/etc/alpine-release" in release_files:
            path = "/etc/alpine-release"
        facts["distribution_file_path"] = path
        facts["distribution_file_variety"] = _FILE_VARIETY.get(family, family)
        facts["distribution_file_parsed"] = True
    return facts


def lsb_facts(out: ScriptOutput) -> dict[str, Any]:
    """lsb: from /etc/lsb-release, else (when lsb_release exists) what it would print."""
    lsb: dict[str, str] = {}
    file = parse_os_release(out.blocks.get("lsb_release", ""))
    if file:
        keys = {"DISTRIB_ID": "id", "DISTRIB_RELEASE": "release"}
        keys.update({"DISTRIB_DESCRIPTION": "description", "DISTRIB_CODENAME": "codename"})
        lsb = {name: file[key] for key, name in keys.items() if file.get(key)}
    elif out.get("lsb_release_bin"):
        osr = parse_os_release(out.blocks.get("os_release", ""))
        os_id = osr.get("ID", "").lower()
        lsb = {
            "id": DISTRIBUTION_NAMES.get(os_id, os_id.capitalize()),
            "description": osr.get("PRETTY_NAME", ""),
            "release": osr.get("VERSION_ID", ""),
            "codename": osr.get("VERSION_CODENAME", ""),
        }
        lsb = {k: v for k, v in lsb.items() if v}
    if "release" in lsb:
        lsb["major_release"] = lsb["release"].split(".")[0]
    return {"lsb": lsb}


# ---------------------------------------------------------------------------- small ones


def date_time_facts(out: ScriptOutput) -> dict[str, Any]:
    """date_time: Ansible's 20 fields, from one `date +'%s %N %Z %z'` on the host."""
    epoch, nanos, tz, offset = ([*out.get("date_time").split(" "), "0", "0", "", ""])[:4]
    if not epoch.isdigit():
        return {}
    micro = int(nanos[:6].ljust(6, "0")) if nanos.isdigit() else 0
    sign = -1 if offset.startswith("-") else 1
    digits = offset.lstrip("+-")
    minutes = int(digits[:2] or 0) * 60 + int(digits[2:4] or 0) if digits.isdigit() else 0
    zone = datetime.timezone(datetime.timedelta(minutes=sign * minutes))
    now = datetime.datetime.fromtimestamp(int(epoch), tz=zone).replace(microsecond=micro)
    utc = now.astimezone(datetime.UTC)
    return {
        "date_time": {
            "year": now.strftime("%Y"),
            "month": now.strftime("%m"),
            "weekday": now.strftime("%A"),
            "weekday_number": now.strftime("%w"),
            "weeknumber": now.strftime("%W"),
            "day": now.strftime("%d"),
            "hour": now.strftime("%H"),
            "minute": now.strftime("%M"),
            "second": now.strftime("%S"),
            "epoch": epoch,
            "epoch_int": epoch,
            "date": now.strftime("%Y-%m-%d"),
            "time": now.strftime("%H:%M:%S"),
            "iso8601_micro": utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "iso8601": utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "iso8601_basic": now.strftime("%Y%m%dT%H%M%S%f"),
            "iso8601_basic_short": now.strftime("%Y%m%dT%H%M%S"),
            "tz": tz,
            "tz_dst": out.get("tz_dst") or tz,
            "tz_offset": offset,
        }
    }


def dns_facts(out: ScriptOutput) -> dict[str, Any]:
    """dns: nameservers, domain, search, sortlist, options from /etc/resolv.conf."""
    dns: dict[str, Any] = {}
    for line in out.blocks.get("resolv_conf", "").splitlines():
        tokens = line.split()
        if not tokens or tokens[0][0] in "#;":
            continue
        head, rest = tokens[0], tokens[1:]
        if head == "nameserver":
            dns.setdefault("nameservers", []).extend(rest)
        elif head == "domain" and rest:
            dns["domain"] = rest[0]
        elif head in ("search", "sortlist"):
            dns[head] = list(rest)
        elif head == "options":
            dns["options"] = {
                o.split(":", 1)[0]: (o.split(":", 1)[1] if ":" in o else True) for o in rest
            }
    return {"dns": dns}


def env_facts(out: ScriptOutput) -> dict[str, Any]:
    """env: the environment the step ran with (from `export -p`)."""
    env: dict[str, str] = {}
    try:
        words = shlex.split(out.blocks.get("env", ""))
    except ValueError:
        words = []
    for word in words:
        name, sep, value = word.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            env[name] = value
    return {"env": env}


def user_facts(out: ScriptOutput) -> dict[str, Any]:
    """user_id, user_uid, user_gid, user_gecos, user_dir, user_shell, real/effective ids."""
    real_uid, effective_uid = [*out.get("Uid:").split(), "", ""][:2]
    real_gid, effective_gid = [*out.get("Gid:").split(), "", ""][:2]
    fields = (out.get("passwd").split("\n")[0].split(":") + [""] * 7)[:7]
    uid, gid = _int(effective_uid), _int(effective_gid)
    return {
        "user_id": out.get("user") or fields[0] or None,
        "user_uid": _int(fields[2], uid),
        "user_gid": _int(fields[3], gid),
        "user_gecos": fields[4],
        "user_dir": fields[5] or None,
        "user_shell": fields[6] or None,
        "real_user_id": _int(real_uid),
        "effective_user_id": uid,
        "real_group_id": _int(real_gid),
        # as Ansible's (os.getgid() for both)
        "effective_group_id": _int(real_gid),
    }


_PROC_1_NAMES = {
    "procd": "openwrt_init",
    "runit-init": "runit",
    "svscan": "svc",
    "openrc-init": "openrc",
}


def service_mgr_facts(out: ScriptOutput, system: str | None) -> dict[str, Any]:
    """service_mgr, by Ansible's rule: PID 1's name unless it is init or a shell; then
    systemd when it booted the host, upstart, openrc, systemd as /sbin/init, sysvinit."""
    proc_1 = out.get("proc_1").strip() or None
    if proc_1 is None and out.get("sbin_init"):
        proc_1 = out.get("sbin_init").rsplit("/", 1)[-1]
    if proc_1 is not None and (proc_1 == "init" or proc_1.endswith("sh")):
        proc_1 = None
    exists = set(out.all("exists"))
    systemctl = bool(out.get("systemctl"))
    name = "service"
    if proc_1 is not None:
        name = _PROC_1_NAMES.get(proc_1, proc_1)
    elif system == "Linux":
        booted = {"/run/systemd/system/", "/dev/.run/systemd/", "/dev/.systemd/"}
        sbin_init = out.get("sbin_init").rsplit("/", 1)[-1]
        if systemctl and booted & exists:
            name = "systemd"
        elif out.get("initctl") and "/etc/init/" in exists:
            name = "upstart"
        elif "/sbin/openrc" in exists:
            name = "openrc"
        elif systemctl and sbin_init == "systemd":
            name = "systemd"
        elif "/etc/init.d/" in exists:
            name = "sysvinit"
        elif "/etc/dinit.d/" in exists:
            name = "dinit"
    return {"service_mgr": name}


_PKG_NAMES = {
    "apt-get": "apt",
    "dnf5": "dnf5",
    "xbps-install": "xbps",
    "emerge": "portage",
    "pkg": "pkgng",
}


def pkg_mgr_facts(out: ScriptOutput, family: str | None) -> dict[str, Any]:
    """pkg_mgr: the family's own manager when present (apt on Debian, dnf/yum on RedHat)."""
    found = [_PKG_NAMES.get(b, b) for b in out.all("pkg_bin")]
    if family == "Debian":
        return {"pkg_mgr": "apt"}
    if family == "RedHat":
        for name in ("dnf5", "dnf", "yum"):
            if name in found:
                return {"pkg_mgr": name}
    return {"pkg_mgr": found[0] if found else "unknown"}


def security_facts(out: ScriptOutput) -> dict[str, Any]:
    """selinux, apparmor, fips, cmdline/proc_cmdline, ssh host keys."""
    facts: dict[str, Any] = {}
    if out.get("selinux_enforce"):
        config = parse_os_release(out.blocks.get("selinux_config", ""))
        mode = "enforcing" if out.get("selinux_enforce") == "1" else "permissive"
        facts["selinux"] = {
            "status": "enabled",
            "mode": mode,
            "config_mode": config.get("SELINUX", "unknown"),
            "type": config.get("SELINUXTYPE", "unknown"),
            "policyvers": _int(out.get("selinux_policyvers")),
        }
    else:
        facts["selinux"] = {"status": "disabled"}
    facts["selinux_python_present"] = True
    facts["apparmor"] = {"status": "enabled" if out.get("apparmor") else "disabled"}
    facts["fips"] = out.get("fips") == "1"
    if "cmdline" in out.blocks:
        cmdline: dict[str, Any] = {}
        proc_cmdline: dict[str, Any] = {}
        for word in out.blocks["cmdline"].split():
            key, sep, value = word.partition("=")
            cmdline[key] = value if sep else True
            if key in proc_cmdline:
                previous = proc_cmdline[key]
                proc_cmdline[key] = [*(previous if isinstance(previous, list) else [previous])]
                proc_cmdline[key].append(value if sep else True)
            else:
                proc_cmdline[key] = value if sep else True
        facts["cmdline"], facts["proc_cmdline"] = cmdline, proc_cmdline
    for line in out.all("ssh_host_key"):
        path, _, text = line.partition("\t")
        found = re.search(r"ssh_host_(\w+)_key\.pub$", path)
        words = text.split()
        if found and len(words) >= 2:
            facts[f"ssh_host_key_{found.group(1)}_public"] = words[1]
            facts[f"ssh_host_key_{found.group(1)}_public_keytype"] = words[0]
    return facts


_PY_BANNER = re.compile(r"Python (\d+)\.(\d+)\.(\d+)(?:(a|b|rc)(\d+))?")
_LEVELS = {"a": "alpha", "b": "beta", "rc": "candidate"}


def python_facts(out: ScriptOutput) -> dict[str, Any]:
    """python (version, version_info, executable, has_sslcontext, type), python_version;
    from the interpreter's `--version` banner: nothing when the host has no Python."""
    banner = out.get("python_banner")
    found = _PY_BANNER.search(banner)
    if not found:
        return {}
    major, minor, micro = int(found.group(1)), int(found.group(2)), int(found.group(3))
    level = _LEVELS.get(found.group(4) or "", "final")
    serial = int(found.group(5) or 0)
    return {
        "python": {
            "executable": out.get("python_executable"),
            "has_sslcontext": True,
            "type": "PyPy" if "PyPy" in banner else "cpython",
            "version": {
                "major": major,
                "micro": micro,
                "minor": minor,
                "releaselevel": level,
                "serial": serial,
            },
            "version_info": [major, minor, micro, level, serial],
        },
        "python_version": f"{major}.{minor}.{micro}",
    }


def _decode(text: str) -> str:
    try:
        return base64.b64decode(text).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "\ufffd"


def local_facts(out: ScriptOutput) -> dict[str, Any]:
    """local: each facts.d `NAME.fact` as JSON, else INI (sections of options), as Ansible."""
    local: dict[str, Any] = {}
    for line in sorted([*out.all("local_file"), *out.all("local_exec")]):
        path, rc, encoded = [*line.split("\t"), "", ""][:3]
        name = path.rsplit("/", 1)[-1].removesuffix(".fact")
        if rc != "0":
            local[name] = f"Failure executing fact script ({path}), rc: {rc}"
            continue
        text = _decode(encoded)
        if text == "\ufffd":
            local[name] = f'error loading fact - output of running "{path}" was not utf-8'
            continue
        try:
            local[name] = json.loads(text)
            continue
        except ValueError:
            pass
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text)
            local[name] = {s: dict(parser.items(s, raw=False)) for s in parser.sections()}
        except configparser.Error:
            local[name] = f"error loading facts as JSON or ini - please check content: {path}"
    return {"local": local}


def chroot_facts(out: ScriptOutput) -> dict[str, Any]:
    """is_chroot: / is not PID 1's root (or, unreadable, / is not inode 2)."""
    if out.get("debian_chroot"):
        return {"is_chroot": True}
    if out.get("root_same"):
        return {"is_chroot": out.get("root_same") != "yes"}
    pairs = out.blocks.get("root_stat", "").split()
    if len(pairs) >= 4:
        return {"is_chroot": pairs[:2] != pairs[2:4]}
    if len(pairs) == 2:
        return {"is_chroot": pairs[1] != "2"}
    return {"is_chroot": None}
