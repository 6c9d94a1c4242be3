"""Hardware, mount, network and virtualization facts in the shapes Ansible's Linux
collectors give them, read from the facts script's output (see `facts_ansible`)."""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Any

from machineroom.modules.facts_ansible import ScriptOutput, _int

# ---------------------------------------------------------------------------- hardware


def cpu_facts(out: ScriptOutput, architecture: str | None) -> dict[str, Any]:
    """processor, processor_count/cores/threads_per_core/vcpus/nproc: Ansible's counting
    over /proc/cpuinfo (sockets by physical id, cores from `cpu cores`, threads by siblings)."""
    processor: list[str] = []
    sockets: dict[str, int] = {}
    cores: dict[str, int] = {}
    physid, coreid = "0", "0"
    flags: list[str] | None = None
    count = vendor_n = model_n = proc_n = 0
    for line in out.blocks.get("cpuinfo", "").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "flags":
            flags = value.split()
        elif key in ("model name", "Processor", "vendor_id", "cpu", "Vendor", "processor"):
            processor.append(value)
            vendor_n += key == "vendor_id"
            model_n += key == "model name"
            proc_n += key == "processor"
            count += 1
        elif key == "physical id":
            physid = value
            sockets.setdefault(physid, 1)
        elif key == "core id":
            coreid = value
            cores.setdefault(coreid, 1)
        elif key == "cpu cores":
            sockets[physid] = int(value)
        elif key == "siblings":
            cores[coreid] = int(value)
    if vendor_n and vendor_n == model_n:
        count = vendor_n
    if (architecture or "").startswith(("armv", "aarch", "ppc")):
        count = proc_n
    n_sockets = len(sockets) if sockets else count
    first_socket = next(iter(sockets.values()), 0)
    n_cores = first_socket or 1
    threads = round(next(iter(cores.values())) / n_cores) if cores else round(1 / n_cores)
    nproc = _count_cpus(out.get("cpus_allowed")) or proc_n
    facts: dict[str, Any] = {} if flags is None else {"flags": flags}
    return {
        **facts,
        "processor": processor,
        "processor_count": n_sockets,
        "processor_cores": n_cores,
        "processor_threads_per_core": threads,
        "processor_vcpus": threads * n_sockets * n_cores,
        "processor_nproc": nproc,
    }


def _count_cpus(text: str) -> int:
    """CPUs in a list like "0-3,8,10-11" (Cpus_allowed_list: what sched_getaffinity gives)."""
    count = 0
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit():
            count += (int(last) - int(first) + 1) if last.isdigit() else 1
    return count


def memory_facts(out: ScriptOutput) -> dict[str, Any]:
    """memtotal_mb, memfree_mb, swaptotal_mb, swapfree_mb and the memory_mb dict."""
    mem: dict[str, int] = {}
    for line in out.blocks.get("meminfo", "").splitlines():
        key, _, value = line.partition(":")
        number = _int(value.split()[0] if value.split() else None)
        if number is not None:
            mem[key.strip().lower()] = number // 1024
    if not mem:
        return {}
    facts: dict[str, Any] = {
        f"{k}_mb": mem[k] for k in ("memtotal", "swaptotal", "memfree", "swapfree") if k in mem
    }
    total, free = mem.get("memtotal"), mem.get("memfree")
    nocache_free = None
    if free is not None and "cached" in mem and "buffers" in mem:
        nocache_free = mem["cached"] + free + mem["buffers"]
    facts["memory_mb"] = {
        "real": {
            "total": total,
            "used": total - free if total is not None and free is not None else None,
            "free": free,
        },
        "nocache": {
            "free": nocache_free,
            "used": total - nocache_free if total is not None and nocache_free else None,
        },
        "swap": {
            "total": mem.get("swaptotal"),
            "free": mem.get("swapfree"),
            "used": mem["swaptotal"] - mem["swapfree"]
            if "swaptotal" in mem and "swapfree" in mem
            else None,
            "cached": mem.get("swapcached"),
        },
    }
    return facts


_SIZES = (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))


def bytes_to_human(size: int) -> str:
    """Ansible's `bytes_to_human`: "20.00 GB", "512.00 Bytes"."""
    for suffix, limit in _SIZES:
        if size >= limit:
            return f"{size / limit:.2f} {suffix}B"
    return f"{size:.2f} Bytes"


def device_facts(out: ScriptOutput) -> dict[str, Any]:
    """devices (block devices: size, sectors, partitions, ...), dmi facts, uptime_seconds."""
    devices: dict[str, Any] = {}
    for line in out.all("device"):
        name, sectors, sector_size, removable, rotational, virtual, model, vendor = (
            line.split("\t") + [""] * 8
        )[:8]
        count, unit = _int(sectors, 0) or 0, _int(sector_size, 512) or 512
        devices[name] = {
            "holders": [],
            "host": "",
            "links": {"ids": [], "labels": [], "masters": [], "uuids": []},
            "model": model.strip() or None,
            "partitions": {},
            "removable": removable or "0",
            "rotational": rotational or "0",
            "sectors": count,
            "sectorsize": str(unit),
            "size": bytes_to_human(count * unit),
            "vendor": vendor.strip() or None,
            "virtual": _int(virtual, 1),
        }
    for line in out.all("partition"):
        disk, part, sectors, start, sector_size = (line.split("\t") + [""] * 5)[:5]
        if disk in devices:
            count, unit = _int(sectors, 0) or 0, _int(sector_size, 512) or 512
            devices[disk]["partitions"][part] = {
                "holders": [],
                "links": {"ids": [], "labels": [], "masters": [], "uuids": []},
                "sectors": count,
                "sectorsize": unit,
                "size": bytes_to_human(count * unit),
                "start": start,
                "uuid": None,
            }
    facts: dict[str, Any] = {"devices": devices, "device_links": _device_links(out)}
    for name in _DMI:
        value = out.get(f"dmi_{name}").strip() or "NA"
        facts["system_vendor" if name == "sys_vendor" else name] = value
    facts["form_factor"] = _FORM_FACTORS.get(out.get("dmi_chassis_type").strip(), "NA")
    load = out.get("loadavg").split()
    if len(load) >= 3:
        facts["loadavg"] = {"1m": float(load[0]), "5m": float(load[1]), "15m": float(load[2])}
    uptime = out.get("uptime").split(" ")[0]
    if uptime:
        facts["uptime_seconds"] = int(float(uptime))
    return facts


_DMI = [
    *("bios_date", "bios_vendor", "bios_version", "board_asset_tag", "board_name"),
    *("board_serial", "board_vendor", "board_version", "chassis_asset_tag", "chassis_serial"),
    *("chassis_vendor", "chassis_version", "product_name", "product_serial", "product_uuid"),
    *("product_version", "sys_vendor"),
]
# SMBIOS chassis types, as Ansible names them
_FORM_FACTORS = {
    str(index): name
    for index, name in enumerate(
        shlex.split(
            "Unknown Other Unknown Desktop 'Low Profile Desktop' 'Pizza Box' 'Mini Tower' Tower "
            "Portable Laptop Notebook 'Hand Held' 'Docking Station' 'All In One' 'Sub Notebook' "
            "Space-saving 'Lunch Box' 'Main Server Chassis' 'Expansion Chassis' 'Sub Chassis' "
            "'Bus Expansion Chassis' 'Peripheral Chassis' 'RAID Chassis' 'Rack Mount Chassis' "
            "'Sealed-case PC' 'Multi-system' CompactPCI AdvancedTCA Blade 'Blade Enclosure' "
            "Tablet Convertible Detachable 'IoT Gateway' 'Embedded PC' 'Mini PC' 'Stick PC'"
        )
    )
}
_LINK_KINDS = {"by-id": "ids", "by-uuid": "uuids", "by-label": "labels"}


def _disk_links(out: ScriptOutput) -> list[tuple[str, str, str]]:
    """(kind, link name, device) from `ls -l /dev/disk/by-*`: ("uuids", "abcd-1234", "vda1")."""
    found = []
    kind = ""
    for line in out.blocks.get("disk_links", "").splitlines():
        if line.startswith("/dev/disk/") and line.endswith(":"):
            kind = _LINK_KINDS.get(line[len("/dev/disk/") : -1], "")
            continue
        match = re.search(r" (\S+) -> (\S+)$", line)
        if match and kind:
            found.append((kind, match.group(1), match.group(2).rsplit("/", 1)[-1]))
    return found


def _device_links(out: ScriptOutput) -> dict[str, dict[str, list[str]]]:
    """device_links: {ids|uuids|labels|masters: {device: [link names]}}."""
    links: dict[str, dict[str, list[str]]] = {"ids": {}, "labels": {}, "masters": {}, "uuids": {}}
    for kind, name, device in _disk_links(out):
        links[kind].setdefault(device, []).append(name)
    return links


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(text: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def mount_facts(out: ScriptOutput) -> dict[str, Any]:
    """mounts as Ansible lists them (devices that are paths or host:/path, fstype not none),
    with statvfs sizes, block and inode counts, and the uuid (N/A when unknown)."""
    sizes = _statfs(out)
    uuids = {"/dev/" + dev: name for kind, name, dev in _disk_links(out) if kind == "uuids"}
    mounts = []
    for line in out.blocks.get("mounts", "").splitlines():
        fields = [_unescape(f) for f in line.split()]
        if len(fields) < 4:
            continue
        device, mount, fstype, options = fields[:4]
        if (not device.startswith(("/", "\\")) and ":/" not in device) or fstype == "none":
            continue
        entry: dict[str, Any] = {
            "mount": mount,
            "device": device,
            "fstype": fstype,
            "options": options,
            "dump": _int(fields[4] if len(fields) > 4 else None, 0),
            "passno": _int(fields[5] if len(fields) > 5 else None, 0),
        }
        entry.update({k: v for k, v in sizes.get(mount, {}).items() if k != "size_free"})
        entry["uuid"] = uuids.get(device, "N/A")
        mounts.append(entry)
    return {"mounts": mounts}


def _statfs(out: ScriptOutput) -> dict[str, dict[str, int]]:
    """`stat -f -c '%S %s %b %f %a %c %d %n'` lines -> statvfs sizes by mount point."""
    sizes: dict[str, dict[str, int]] = {}
    for line in out.blocks.get("statfs", "").splitlines():
        parts = line.split(" ", 7)
        if len(parts) < 8 or not all(p.isdigit() for p in parts[:7]):
            continue
        frsize, bsize, blocks, free, avail, files, ffree = (int(p) for p in parts[:7])
        sizes[parts[7]] = {
            "size_free": frsize * free,  # for machineroom's `facts.disks` (used = total - free)
            "size_total": frsize * blocks,
            "size_available": frsize * avail,
            "block_size": bsize,
            "block_total": blocks,
            "block_available": avail,
            "block_used": blocks - avail,
            "inode_total": files,
            "inode_available": ffree,
            "inode_used": files - ffree,
        }
    return sizes


def statfs_sizes(out: ScriptOutput) -> dict[str, dict[str, int]]:
    """Sizes of every mount with data (machineroom's `facts.disks`), by mount point."""
    return _statfs(out)


# ---------------------------------------------------------------------------- network

_IFACE_TYPES = {"1": "ether", "32": "infiniband", "512": "ppp", "772": "loopback"}
_IFACE_TYPES["65534"] = "tunnel"


def _route(text: str) -> dict[str, str]:
    words = text.split()
    found = {}
    for key, name in (("src", "address"), ("dev", "interface"), ("via", "gateway")):
        if key in words[:-1]:
            found[name] = words[words.index(key) + 1]
    return found


def network_facts(out: ScriptOutput) -> dict[str, Any]:
    """interfaces, one dict per interface, default_ipv4/ipv6, all_ipv4/ipv6_addresses."""
    interfaces: dict[str, dict[str, Any]] = {}
    for line in out.all("iface"):
        name, mac, mtu, oper, kind, flags, speed, pci, extra = (line.split("\t") + [""] * 9)[:9]
        info: dict[str, Any] = {"device": name}
        if mac and mac != "00:00:00:00:00:00":
            info["macaddress"] = mac
        if mtu.isdigit():
            info["mtu"] = int(mtu)
        if oper:
            info["active"] = oper != "down"
        info["type"] = _IFACE_TYPES.get(kind, "unknown")
        words = extra.split()
        if words[:1] == ["bridge"]:
            info["type"], info["interfaces"] = "bridge", words[1:]
        elif words[:1] == ["bonding"]:
            info["type"], info["slaves"] = "bonding", words[1:]
        if pci:
            info["pciid"] = pci
        if speed.lstrip("-").isdigit():
            info["speed"] = int(speed)
        if flags.startswith("0x"):
            info["promisc"] = bool(int(flags, 16) & 0x100)
        interfaces[name] = info
    lines = out.blocks.get("ip", "").splitlines()
    routes = {
        line.split()[0]: line for line in lines if line.split() and line.split()[0][-1] != ":"
    }
    v4 = _route(routes.get("8.8.8.8", ""))
    v6 = _route(routes.get("2404:6800:400a:800::1012", ""))
    all4: list[str] = []
    all6: list[str] = []
    for line in lines:
        words = line.split("\\")[0].split()  # `ip -o`: the address, then "\" and lifetimes
        if len(words) < 4 or words[2] not in ("inet", "inet6"):
            continue
        device = words[1].split("@")[0]
        info = interfaces.setdefault(device, {"device": device})
        if words[2] == "inet":
            address, _, prefix = words[3].partition("/")
            prefix = prefix or "32"
            network = ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)
            broadcast = words[words.index("brd") + 1] if "brd" in words else ""
            entry = {
                "address": address,
                "broadcast": broadcast,
                "netmask": str(network.netmask),
                "network": str(network.network_address),
                "prefix": prefix,
            }
            if "secondary" in words or "ipv4" in info:
                info.setdefault("ipv4_secondaries", []).append(entry)
            else:
                info["ipv4"] = entry
            if v4.get("address") == address:
                v4.update({k: entry[k] for k in ("broadcast", "netmask", "network", "prefix")})
                v4["alias"] = words[-1]  # the label (eth0, eth0:1)
                _link_of(v4, info)
            if not address.startswith("127."):
                all4.append(address)
        else:
            address, _, prefix = words[3].partition("/")
            scope = words[words.index("scope") + 1] if "scope" in words else ""
            info.setdefault("ipv6", []).append(
                {"address": address, "prefix": prefix, "scope": scope}
            )
            if v6.get("address") == address:
                v6.update({"prefix": prefix, "scope": scope})
                _link_of(v6, info)
            if address != "::1":
                all6.append(address)
    facts: dict[str, Any] = {
        "interfaces": list(interfaces),
        "default_ipv4": v4 if "interface" in v4 else {},
        "default_ipv6": v6 if "interface" in v6 else {},
        "all_ipv4_addresses": all4,
        "all_ipv6_addresses": all6,
    }
    for name, info in interfaces.items():
        facts[name.replace(":", "_").replace("-", "_").replace(".", "_")] = info
    return facts


def _link_of(default: dict[str, Any], info: dict[str, Any]) -> None:
    default["macaddress"] = info.get("macaddress", "unknown")
    if "mtu" in info:
        default["mtu"] = info["mtu"]
    default["type"] = info.get("type", "unknown")


# ---------------------------------------------------------------------------- virtual

_KVM_PRODUCTS = ("KVM", "KVM Server", "Bochs", "AHV", "CloudStack KVM Hypervisor")
_KVM_BIOS = ("Amazon EC2", "DigitalOcean", "Hetzner", "Linode")


def virtual_facts(out: ScriptOutput) -> dict[str, Any]:
    """virtualization_type/role and _tech_guest/_tech_host, in Ansible's order of checks
    (container signs first, then DMI product and vendor names, then the hypervisor flag)."""
    guest: list[str] = []
    found: tuple[str, str] | None = None

    def see(tech: str, role: str = "guest") -> None:
        nonlocal found
        if tech not in guest:
            guest.append(tech)
        found = found or (tech, role)

    for line in out.blocks.get("cgroup1", "").splitlines():
        if re.search(r"/docker(/|-[0-9a-f]+\.scope)", line):
            see("docker")
        if "/lxc/" in line or "/machine.slice/machine-lxc" in line:
            see("lxc")
    container = out.get("pid1_container").partition("=")[2]
    if container:
        see(container if container in ("lxc", "podman") else "container")
    if out.get("openvz"):
        see("openvz", out.get("openvz"))
    if out.get("systemd_container"):
        see(out.get("systemd_container"))
    if out.get("dockerenv"):
        see("docker")
    if out.get("containerenv"):
        see("podman")
    containers = {"docker", "lxc", "podman", "openvz", "containerd"}
    if set(guest) & containers and "container" not in guest:
        guest.append("container")
    product, vendor, bios = out.get("virt_product"), out.get("virt_vendor"), out.get("virt_bios")
    machine: str | None = None
    if product in _KVM_PRODUCTS or bios in _KVM_BIOS or vendor == "QEMU":
        machine = "kvm"
    elif product.startswith("VMware"):
        machine = "VMware"
    elif bios == "innotek GmbH":
        machine = "virtualbox"
    elif bios == "Xen" or out.get("xen"):
        machine = "xen"
    elif vendor == "Microsoft Corporation":
        machine = "VirtualPC"
    elif product in ("OpenStack Compute", "OpenStack Nova"):
        machine = "openstack"
    elif out.get("hypervisor_flag"):
        machine = "kvm"
    if machine:
        see(machine)
    kind, role = found or ("NA", "NA")
    return {
        "virtualization_type": kind,
        "virtualization_role": role,
        "virtualization_tech_guest": sorted(guest),  # a set in Ansible: any order
        "virtualization_tech_host": [],
    }
