"""`facts` (setup, gather_facts) and `ping`.

`facts` gathers everything in one remote command: a sh script (`facts_script`) reading
/etc/os-release, /proc, /sys, `ip`, `stat -f`, ... and printing what it found, no Python
needed on the target. `interpret()` builds two views of the same data: Ansible's names and
shapes (`ansible_distribution`, `ansible_default_ipv4`, `ansible_mounts`, ... both as
top-level variables and under `ansible_facts`, see `facts_ansible`), and machineroom's
nested `facts` dict (`facts.os.version`, `facts.memory.total_mb`, `facts.disks`, ...).
`gather_subset` picks the script's parts as Ansible picks its collectors; `filter` keeps
the facts matching its globs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from machineroom.modules import facts_ansible as fa
from machineroom.modules import facts_hardware as fh
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)
from machineroom.modules.facts_script import build_script

# Ansible's collectors that `min` (and `!all`) keeps
_MIN_NAMES = "apparmor caps cmdline date_time distribution dns env fips local lsb pkg_mgr platform"
MINIMAL = frozenset(
    [*_MIN_NAMES.split(), "python", "selinux", "service_mgr", "ssh_pub_keys", "user"]
)
# every other subset name Ansible accepts, with the collector it selects (fact ids too)
_ALIASES = {
    **{n: "hardware" for n in ("devices", "dmi", "mounts", "processor", "memory_mb")},
    **{n: "hardware" for n in ("processor_count", "processor_cores", "memtotal_mb")},
    **{n: "network" for n in ("interfaces", "default_ipv4", "default_ipv6")},
    **{n: "network" for n in ("all_ipv4_addresses", "all_ipv6_addresses")},
    **{n: "virtual" for n in ("virtualization_type", "virtualization_role")},
    **{n: "platform" for n in ("system", "kernel", "machine", "architecture", "machine_id")},
    **{n: "distribution" for n in ("os_family", "distribution_version")},
    **{n: "distribution" for n in ("distribution_release", "distribution_major_version")},
    **{n: "user" for n in ("user_id", "user_uid", "user_gid", "user_dir", "user_shell")},
    "ssh_host_pub_keys": "ssh_pub_keys",
    "system_capabilities": "caps",
}
# collectors that gather nothing here, accepted as Ansible does
_NOTHING = frozenset({"facter", "ohai", "systemd", "caps"})
# `docker` (machineroom's: engine and compose versions) only when named: it runs docker
VALID = MINIMAL | frozenset({"hardware", "network", "virtual", "chroot", "loadavg"}) | _NOTHING
# collector -> the script parts it needs (service_mgr needs the platform's system, ...)
_PARTS = {
    "apparmor": ("security",),
    "selinux": ("security",),
    "fips": ("security",),
    "cmdline": ("security",),
    "ssh_pub_keys": ("security",),
    "hardware": ("hardware", "mounts"),
    "loadavg": ("hardware",),
    "service_mgr": ("service_mgr", "platform"),
    "pkg_mgr": ("pkg_mgr", "distribution", "platform"),
}


class SubsetError(ValueError):
    """A gather_subset name Ansible would not accept either."""


def collectors_for(gather_subset: Any) -> set[str]:
    """Ansible's gather_subset rule: min always, then additions, then exclusions
    (`!all` leaves min, `!min` removes it too), names explicitly asked for kept."""
    if gather_subset is None or gather_subset == []:
        gather_subset = ["all"]
    items = [gather_subset] if isinstance(gather_subset, str) else list(gather_subset)
    words = [w.strip() for item in items for w in str(item).split(",") if w.strip()]
    added: set[str] = set()
    excluded: set[str] = set()
    explicit: set[str] = set()
    for word in ["min", *words]:
        negate = word.startswith("!")
        name = word[1:] if negate else word
        if name == "min":
            (excluded if negate else added).update(MINIMAL)
        elif name == "all":
            if negate:
                excluded.update(VALID - MINIMAL)
            else:
                added.update(VALID)
        else:
            collector = _ALIASES.get(name, name)
            if negate:
                excluded.add(collector)
            elif collector not in VALID and collector != "docker":
                allowed = ", ".join(sorted(VALID | set(_ALIASES)))
                raise SubsetError(f"Bad subset '{name}' given: allowed are all, min, {allowed}")
            else:
                explicit.add(collector)
                added.add(collector)
    return added - (excluded - explicit)


# collector -> the facts it gathers (no `ansible_` prefix), for subset_for_facts
_GATHERS = {
    "platform": "architecture domain fqdn hostname kernel kernel_version machine machine_id "
    "nodename system userspace_architecture userspace_bits",
    "distribution": "distribution distribution_file_parsed distribution_file_path "
    "distribution_file_variety distribution_major_version distribution_minor_version "
    "distribution_release distribution_version os_family",
    "hardware": "bios_date bios_vendor bios_version board_asset_tag board_name board_serial "
    "board_vendor board_version chassis_asset_tag chassis_serial chassis_vendor "
    "chassis_version device_links devices flags form_factor loadavg memfree_mb memory_mb "
    "memtotal_mb mounts processor processor_cores processor_count processor_nproc "
    "processor_threads_per_core processor_vcpus product_name product_serial product_uuid "
    "product_version swapfree_mb swaptotal_mb system_vendor uptime_seconds",
    "network": "all_ipv4_addresses all_ipv6_addresses default_ipv4 default_ipv6 interfaces",
    "user": "effective_group_id effective_user_id real_group_id real_user_id user_dir "
    "user_gecos user_gid user_id user_shell user_uid",
    "virtual": "virtualization_role virtualization_tech_guest virtualization_tech_host "
    "virtualization_type",
    "cmdline": "cmdline proc_cmdline",
    "chroot": "is_chroot",
    "python": "python python_version",
    "selinux": "selinux selinux_python_present",
    "docker": "docker_version docker_compose_version",
    **{name: name for name in ("apparmor", "fips", "date_time", "dns", "env", "local")},
    **{name: name for name in ("lsb", "pkg_mgr", "service_mgr")},
}
_FACT_COLLECTORS = {fact: c for c, facts in _GATHERS.items() for fact in facts.split()}


def subset_for_facts(names: Iterable[str]) -> list[str] | None:
    """The smallest gather_subset that gathers these facts (`ansible_distribution` or
    `distribution`), for a play known to read only them; None when it could read any
    (`ansible_facts` or machineroom's `facts` named). An unknown name may be an interface's
    (`ansible_eth0`): the network facts are gathered for it."""
    collectors: set[str] = set()
    for name in names:
        bare = name if name == "ansible_local" else name.removeprefix("ansible_")
        if bare in ("facts", "ansible_facts"):
            return None
        if bare == "ansible_local":
            collectors.add("local")
        elif bare.startswith("ssh_host_key_"):
            collectors.add("ssh_pub_keys")
        else:
            collectors.add(_FACT_COLLECTORS.get(bare, "network"))
    return ["!all", "!min", *sorted(collectors)]


def script_parts(collectors: set[str]) -> set[str]:
    """The facts_script parts these collectors need."""
    parts: set[str] = set()
    for name in collectors - _NOTHING:
        parts.update(_PARTS.get(name, (name,)))
    return parts


def ansible_facts(out: fa.ScriptOutput, parts: set[str], collectors: set[str]) -> dict[str, Any]:
    """The facts Ansible's collectors would return, without the `ansible_` prefix."""
    facts: dict[str, Any] = {}
    platform = fa.platform_facts(out)
    distribution = fa.distribution_facts(out)
    if "platform" in parts:
        facts.update(platform)
    if "distribution" in parts:
        facts.update(distribution)
    simple = {
        "lsb": fa.lsb_facts,
        "date_time": fa.date_time_facts,
        "dns": fa.dns_facts,
        "env": fa.env_facts,
        "user": fa.user_facts,
        "python": fa.python_facts,
        "local": fa.local_facts,
        "network": fh.network_facts,
        "virtual": fh.virtual_facts,
        "chroot": fa.chroot_facts,
    }
    for name, read in simple.items():
        if name in parts:
            facts.update(read(out))
    if "python" in parts and "platform" in parts and "python_version" not in facts:
        facts["python_version"] = None  # no Python on the host
    if "service_mgr" in parts:
        facts.update(fa.service_mgr_facts(out, platform["system"]))
    if "pkg_mgr" in parts:
        facts.update(fa.pkg_mgr_facts(out, distribution["os_family"]))
    if "security" in parts:
        security = fa.security_facts(out)
        wanted = {
            "selinux": ("selinux", "selinux_python_present"),
            "apparmor": ("apparmor",),
            "fips": ("fips",),
            "cmdline": ("cmdline", "proc_cmdline"),
        }
        keep = {key for name, keys in wanted.items() if name in collectors for key in keys}
        facts.update(
            {
                k: v
                for k, v in security.items()
                if k in keep or (k.startswith("ssh_host_key_") and "ssh_pub_keys" in collectors)
            }
        )
    if "hardware" in parts:
        facts.update(fh.cpu_facts(out, platform["architecture"]))
        facts.update(fh.memory_facts(out))
        facts.update(fh.device_facts(out))
    if "mounts" in parts:
        facts.update(fh.mount_facts(out))
    if "docker" in parts:
        facts["docker_version"] = _version(out.get("docker"))
        facts["docker_compose_version"] = _version(out.get("compose")) or _version(
            out.get("compose_v1")
        )
    return facts


_VERSION = re.compile(r"(\d+(?:\.\d+)+)")
_MODEL = re.compile(r"^model name\s*: (.*)$", re.MULTILINE)


def _version(text: str | None) -> str | None:
    """The first dotted version number in a tool's banner ("Docker version 28.2.2, ...")."""
    if not text:
        return None
    match = _VERSION.search(text)
    return match.group(1) if match else None


def nested_facts(out: fa.ScriptOutput, facts: Mapping[str, Any]) -> dict[str, Any]:
    """machineroom's own view: `facts.os.*`, `facts.memory.*`, `facts.disks`, docker, ..."""
    osr = fa.parse_os_release(out.blocks.get("os_release", ""))
    version = facts.get("distribution_version")
    version = version if version and version != "NA" else None
    mem: dict[str, int] = {}
    for line in out.blocks.get("meminfo", "").splitlines():
        key, _, value = line.partition(":")
        if value.split() and value.split()[0].isdigit():
            mem[key] = int(value.split()[0]) // 1024
    disks = []
    mounts: dict[str, str] = {}
    for line in out.blocks.get("mounts", "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.setdefault(fh._unescape(fields[1]), fh._unescape(fields[0]))
    for mount, size in fh.statfs_sizes(out).items():
        if not size["size_total"]:
            continue  # pseudo filesystems, as `df` leaves them out
        used = size["size_total"] - size["size_free"]
        free = size["size_available"]
        disks.append(
            {
                "mount": mount,
                "device": mounts.get(mount, ""),
                "size_mb": size["size_total"] // 2**20,
                "used_mb": used // 2**20,
                "available_mb": free // 2**20,
                # as df rounds it: up
                "use_percent": -(-100 * used // (used + free)) if used + free else None,
            }
        )
    docker = facts.get("docker_version")
    compose_v2 = _version(out.get("compose"))
    compose_v1 = _version(out.get("compose_v1"))
    default = facts.get("default_ipv4") or {}
    proc_1 = out.get("proc_1") or None
    if "/run/systemd/system/" in out.all("exists"):
        proc_1 = "systemd"
    return {
        "hostname": facts.get("nodename", ""),
        "fqdn": facts.get("fqdn") or facts.get("nodename", ""),
        "os": {
            "id": osr.get("ID", "").lower() or None,
            "family": facts.get("os_family"),
            "distribution": facts.get("distribution"),
            "version": version,
            "major_version": version.split(".")[0] if version else None,
            "codename": osr.get("VERSION_CODENAME") or None,
            "pretty_name": osr.get("PRETTY_NAME") or None,
        },
        "system": facts.get("system"),
        "kernel": facts.get("kernel"),
        "arch": facts.get("architecture"),
        "cpus": facts.get("processor_nproc") or facts.get("processor_vcpus") or 0,
        "cpu_model": next(iter(_MODEL.findall(out.blocks.get("cpuinfo", ""))), None),
        "memory": {
            "total_mb": mem.get("MemTotal", 0),
            "available_mb": mem.get("MemAvailable", 0),
            "free_mb": mem.get("MemFree", 0),
            "swap_total_mb": mem.get("SwapTotal", 0),
        },
        "disks": disks,
        "ipv4": {k: default.get(k, "") for k in ("address", "interface", "gateway")}
        if default
        else None,
        "python": (facts.get("python") or {}).get("executable") and facts.get("python_version"),
        "docker": docker,
        "compose": compose_v2 or compose_v1,
        "compose_v2": compose_v2,
        "compose_v1": compose_v1,
        "init": proc_1,
        "pkg_mgr": facts.get("pkg_mgr"),
        "user": {
            "name": facts.get("user_id"),
            "uid": facts.get("user_uid"),
            "gid": facts.get("user_gid"),
            "home": facts.get("user_dir"),
            "shell": facts.get("user_shell"),
        },
        "uptime_seconds": facts.get("uptime_seconds"),
        "date": (facts.get("date_time") or {}).get("iso8601"),
    }


def parse_facts(
    stdout: str, gather_subset: Any = ("all", "docker")
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The script's output -> (machineroom's nested facts, Ansible's `ansible_*` facts)."""
    collectors = collectors_for(list(gather_subset))
    out = fa.parse_output(stdout)
    gathered = ansible_facts(out, script_parts(collectors), collectors)
    return nested_facts(out, gathered), {f"ansible_{k}": v for k, v in gathered.items()}


def _unprefixed(name: str) -> str:
    return name if name == "ansible_local" else name.removeprefix("ansible_")


def _wanted(patterns: Any) -> list[str]:
    if not patterns:
        return []
    return [patterns] if isinstance(patterns, str) else [str(p) for p in patterns]


def filter_facts(facts: Mapping[str, Any], patterns: list[str]) -> dict[str, Any]:
    """Ansible's `filter`: keep `ansible_*` names matching a glob (`dist*` means
    `ansible_dist*` too); no pattern or `*` keeps everything."""
    if not patterns or patterns == ["*"]:
        return dict(facts)
    kept = {}
    for name, value in facts.items():
        for pattern in patterns:
            bare = not pattern.startswith(("ansible_", "facter", "ohai"))
            if (
                not pattern
                or fnmatch.fnmatch(name, pattern)
                or (bare and fnmatch.fnmatch(name, "ansible_" + pattern))
            ):
                kept[name] = value
    return kept


class FactsModule(Module):
    """`facts` (aliases `setup`, `gather_facts`): one remote call gathering host facts.

    Outcome.facts (and result) hold Ansible's names with the prefix (`ansible_distribution`,
    `ansible_eth0`, ...), an `ansible_facts` dict of the same without it (merged into the
    facts an earlier call gathered, as Ansible's fact cache does), and, for a full gather,
    machineroom's nested `facts` dict. Always ok, never changed; runs in check mode too.
    """

    name: ClassVar[str] = "facts"
    in_programs: ClassVar[bool] = True  # the first step of a host's first program
    sets_facts: ClassVar[bool] = True
    aliases: ClassVar[tuple[str, ...]] = ("setup", "gather_facts")
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "gather_subset": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "gather_timeout": {"type": "integer", "minimum": 1},
            "filter": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "fact_path": {"type": "string", "default": "/etc/ansible/facts.d"},
        },
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """The script's parts for the subsets asked for; no user value runs unquoted."""
        try:
            collectors = collectors_for(args.get("gather_subset"))
        except SubsetError as exc:
            return RemoteStep(f"echo {quote(str(exc))} >&2; exit 2")
        interpreter = ctx.vars.get("ansible_python_interpreter")
        python = str(interpreter) if interpreter and "{" not in str(interpreter) else None
        script = build_script(
            script_parts(collectors),
            python,
            str(args.get("fact_path") or "/etc/ansible/facts.d"),
        )
        # Under sh (dash on Debian), not the login shell: bash takes about 10 ms more for it.
        return RemoteStep(f"sh -c {quote(script)}", timeout=float(args.get("gather_timeout") or 60))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Ansible's facts (prefixed, and under `ansible_facts`) plus the nested `facts`."""
        if output.exit_code != 0:
            return Outcome("failed", msg=output.stderr.strip() or f"exit {output.exit_code}")
        collectors = collectors_for(args.get("gather_subset"))
        parts = script_parts(collectors)
        out = fa.parse_output(output.stdout)
        gathered = ansible_facts(out, parts, collectors)
        prefixed = {f"ansible_{k}": v for k, v in gathered.items()}
        wanted = _wanted(args.get("filter"))
        flat = filter_facts(prefixed, wanted)
        subset = args.get("gather_subset") or ["all"]
        subset = [subset] if isinstance(subset, str) else list(subset)
        earlier = ctx.vars.get("ansible_facts")
        merged = dict(earlier) if isinstance(earlier, Mapping) else {}
        # ansible_local keeps its prefix under ansible_facts, as Ansible's namespace_facts
        merged.update({_unprefixed(k): v for k, v in flat.items()})
        # Ansible's own two facts, filtered like the rest (a filtered call keeps the old ones)
        merged.update(filter_facts({"gather_subset": subset, "module_setup": True}, wanted))
        facts: dict[str, Any] = {**flat, "ansible_facts": merged}
        # the nested view needs the whole picture (a filter narrows only the Ansible names)
        full = {"platform", "distribution", "hardware", "network"} <= collectors
        if full:
            facts["facts"] = nested_facts(out, gathered)
        msg = self._summary(gathered)
        return Outcome("ok", msg=msg, result=facts, facts=facts)

    @staticmethod
    def _summary(facts: Mapping[str, Any]) -> str:
        return (
            f"{facts.get('nodename', '?')}: {facts.get('distribution', '?')} "
            f"{facts.get('distribution_version', '')} {facts.get('architecture', '')}, "
            f"{facts.get('processor_vcpus', '?')} CPUs, {facts.get('memtotal_mb', '?')} MB"
        )


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
