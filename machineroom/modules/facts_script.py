"""The sh script of the `facts` module, assembled from one part per fact subset.

Each part prints what it reads in one of two shapes, which `facts_ansible.parse_output` reads
back: `key<TAB>value` lines for single values, and blocks between `@@mr begin NAME` and
`@@mr end` for whole files or command outputs (/proc/cpuinfo, `ip -o addr`, ...). Text that
may hold anything (facts.d files, the environment) is base64 or shell-quoted, never framed
raw. Parts read files with the shell's `read` where they can: a fork costs about a
millisecond, and the whole script stays within a few dozen.
"""

from __future__ import annotations

from collections.abc import Iterable

from machineroom.modules.base import quote

# Helpers every part may use. `k` prints one value; `dump` prints a file as a block without
# forking (the last line may lack its newline); `rd` reads a file's first line into $v.
PRELUDE = r"""
k() { printf '%s\t%s\n' "$1" "$2"; }
dump() { [ -r "$1" ] || return 0; echo "@@mr begin $2"
  while IFS= read -r __l || [ -n "$__l" ]; do printf '%s\n' "$__l"; done < "$1"; echo "@@mr end"; }
rd() { v=; [ -r "$1" ] && IFS= read -r v < "$1" 2>/dev/null; return 0; }
"""

# The environment first, before the script sets anything (`export -p` is a builtin).
ENV = r"""
echo "@@mr begin env"; export -p; echo "@@mr end"
"""

PLATFORM = r"""
rd /proc/sys/kernel/hostname; k nodename "${v:-$(uname -n)}"
k fqdn "$(hostname -f 2>/dev/null || uname -n)"
k uname "$(uname -srm)"
rd /proc/sys/kernel/version; k kernel_version "${v:-$(uname -v)}"
rd /var/lib/dbus/machine-id; [ -n "$v" ] || rd /etc/machine-id; k machine_id "$v"
"""

DISTRIBUTION = r"""
dump /etc/os-release os_release
[ -r /etc/os-release ] || dump /usr/lib/os-release os_release
rd /etc/debian_version; k debian_version "$v"
for f in /etc/redhat-release /etc/centos-release /etc/oracle-release /etc/alpine-release \
  /etc/arch-release /etc/SuSE-release /etc/gentoo-release /etc/system-release; do
  [ -e "$f" ] && { rd "$f"; k release_file "$f	$v"; }
done
"""

LSB = r"""
dump /etc/lsb-release lsb_release
command -v lsb_release >/dev/null 2>&1 && k lsb_release_bin yes
"""

DATE_TIME = r"""
__d=$(date '+%s %N %Z %z'); k date_time "$__d"
case $__d in *" UTC "*|*" GMT "*) ;; *) k tz_dst "$(date -d @962409600 +%Z 2>/dev/null)";; esac
"""

DNS = r"""
dump /etc/resolv.conf resolv_conf
"""

USER = r"""
while read -r __a __b __c; do case $__a in Uid:|Gid:) k "$__a" "$__b $__c";; esac
done < /proc/self/status 2>/dev/null
__u=${LOGNAME:-${USER:-}}; [ -n "$__u" ] || __u=$(id -un); k user "$__u"
k passwd "$(getent passwd "$__u" 2>/dev/null)"
"""

SERVICE_MGR = r"""
rd /proc/1/comm; k proc_1 "$v"
[ -L /sbin/init ] && k sbin_init "$(readlink /sbin/init)"
command -v systemctl >/dev/null 2>&1 && k systemctl yes
command -v initctl >/dev/null 2>&1 && k initctl yes
for f in /run/systemd/system/ /dev/.run/systemd/ /dev/.systemd/ /etc/init/ /sbin/openrc \
  /etc/init.d/ /etc/dinit.d/; do [ -e "$f" ] && k exists "$f"; done
"""

PKG_MGR = r"""
for m in apt-get dnf5 dnf yum apk zypper pacman pkg opkg emerge xbps-install; do
  command -v "$m" >/dev/null 2>&1 && k pkg_bin "$m"
done
"""

SECURITY = r"""
if [ -r /sys/fs/selinux/enforce ]; then
  rd /sys/fs/selinux/enforce; k selinux_enforce "$v"
  rd /sys/fs/selinux/policyvers; k selinux_policyvers "$v"
  dump /etc/selinux/config selinux_config
fi
[ -e /sys/kernel/security/apparmor ] && k apparmor yes
rd /proc/sys/crypto/fips_enabled; k fips "$v"
dump /proc/cmdline cmdline
for f in /etc/ssh/ssh_host_*_key.pub; do [ -r "$f" ] && { rd "$f"; k ssh_host_key "$f	$v"; }; done
"""

PYTHON = r"""
__py=
for __c in $MR_PY python3 python; do
  __p=$(command -v "$__c" 2>/dev/null) && { __py=$__p; break; }
done
[ -n "$__py" ] && { k python_executable "$__py"; k python_banner "$("$__py" --version 2>&1)"; }
"""

# facts.d: each *.fact file base64-encoded (an executable one: its output, and its status).
LOCAL = r"""
if [ -d "$MR_FACT_PATH" ]; then
  for f in "$MR_FACT_PATH"/*.fact; do
    [ -e "$f" ] || continue
    if [ -x "$f" ]; then __raw=$("$f" 2>/dev/null); __rc=$?
      k local_exec "$f	$__rc	$(printf '%s' "$__raw" | base64 | tr -d '\n')"
    else k local_file "$f	0	$(base64 < "$f" | tr -d '\n')"; fi
  done
fi
"""

HARDWARE = r"""
echo "@@mr begin cpuinfo"
awk '/^flags[[:space:]]*:/ { if (!f) print; f = 1; next }
  /^(processor|vendor_id|model name|physical id|core id|cpu cores|siblings)[[:space:]]*:/
  /^(Processor|cpu|Vendor)[[:space:]]*:/' /proc/cpuinfo 2>/dev/null
echo "@@mr end"
while read -r __a __b; do [ "$__a" = Cpus_allowed_list: ] && k cpus_allowed "$__b"
done < /proc/self/status 2>/dev/null
dump /proc/meminfo meminfo
rd /proc/uptime; k uptime "$v"
rd /proc/loadavg; k loadavg "$v"
for f in bios_date bios_vendor bios_version board_asset_tag board_name board_serial \
  board_vendor board_version chassis_asset_tag chassis_serial chassis_vendor chassis_version \
  chassis_type \
  product_name product_serial product_uuid product_version sys_vendor; do
  f=/sys/devices/virtual/dmi/id/$f; [ -r "$f" ] && { rd "$f"; k "dmi_${f##*/}" "$v"; }
done
for d in /sys/block/*; do
  [ -e "$d" ] || continue; n=${d##*/}
  rd "$d/size"; s=$v; rd "$d/queue/hw_sector_size"; ss=$v; rd "$d/removable"; rm=$v
  rd "$d/queue/rotational"; ro=$v; rd "$d/device/model"; mo=$v; rd "$d/device/vendor"; ve=$v
  [ -e "$d/device" ] && virt=0 || virt=1
  k device "$n	$s	$ss	$rm	$ro	$virt	$mo	$ve"
  for p in "$d/$n"*; do [ -e "$p/partition" ] || continue
    rd "$p/size"; ps=$v; rd "$p/start"; k partition "$n	${p##*/}	$ps	$v	$ss"; done
done
"""

# Mounts: /proc/mounts, then one `stat -f` over every mount point that holds data
# (pseudo filesystems left out), in the order given; escaped names are decoded first.
MOUNTS = r"""
__mt=/etc/mtab; [ -r "$__mt" ] || __mt=/proc/mounts
dump "$__mt" mounts
set --
while read -r __dev __mnt __fs __rest; do
  case $__fs in proc|sysfs|devpts|cgroup|cgroup2|securityfs|debugfs|tracefs|mqueue|pstore|\
bpf|configfs|fusectl|hugetlbfs|autofs|binfmt_misc|rpc_pipefs|nsfs|efivarfs|selinuxfs|devtmpfs)
    continue ;; esac
  case $__mnt in *\\*)
    __mnt=$(printf '%b' "$(printf '%s' "$__mnt" | sed 's/\\\([0-7]\)/\\0\1/g')");; esac
  set -- "$@" "$__mnt"
done < "$__mt"
echo "@@mr begin statfs"
[ "$#" -gt 0 ] && stat -f -c '%S %s %b %f %a %c %d %n' "$@" 2>/dev/null
echo "@@mr end"
if [ -d /dev/disk ]; then
  echo "@@mr begin disk_links"; ls -l /dev/disk/by-uuid /dev/disk/by-id /dev/disk/by-label \
    /dev/disk/by-dname 2>/dev/null; echo "@@mr end"
fi
"""

NETWORK = r"""
# one `ip` for the addresses and both default routes (-force: one failing line stops nothing)
if command -v ip >/dev/null 2>&1; then
  echo "@@mr begin ip"
  ip -o -force -batch - 2>/dev/null <<'MR_IP'
addr show
route get 8.8.8.8
route get 2404:6800:400a:800::1012
MR_IP
  echo "@@mr end"
fi
for d in /sys/class/net/*; do
  [ -d "$d" ] || continue; n=${d##*/}
  rd "$d/address"; mac=$v; rd "$d/mtu"; mtu=$v; rd "$d/operstate"; op=$v; rd "$d/type"; ty=$v
  rd "$d/flags"; fl=$v; sp=; [ -e "$d/speed" ] && { rd "$d/speed"; sp=$v; }
  pci=; [ -e "$d/device" ] && pci=$(readlink "$d/device")
  br=; [ -e "$d/bridge" ] && { br=bridge
    for b in "$d"/brif/*; do [ -e "$b" ] && br="$br ${b##*/}"; done; }
  [ -e "$d/bonding" ] && { rd "$d/bonding/slaves"; br="bonding $v"; }
  k iface "$n	$mac	$mtu	$op	$ty	$fl	$sp	${pci##*/}	$br"
done
"""

VIRTUAL = r"""
dump /proc/1/cgroup cgroup1
[ -r /proc/1/environ ] &&
  k pid1_container "$(tr '\0' '\n' < /proc/1/environ 2>/dev/null | grep '^container=')"
[ -e /.dockerenv ] || [ -e /.dockerinit ] && k dockerenv yes
[ -e /run/.containerenv ] && k containerenv yes
rd /run/systemd/container; k systemd_container "$v"
[ -e /proc/vz ] && [ ! -e /proc/lve ] && { [ -e /proc/bc ] && k openvz host || k openvz guest; }
[ -e /proc/xen ] && k xen yes
rd /sys/devices/virtual/dmi/id/product_name; k virt_product "$v"
rd /sys/devices/virtual/dmi/id/sys_vendor; k virt_vendor "$v"
rd /sys/devices/virtual/dmi/id/bios_vendor; k virt_bios "$v"
"""

CHROOT = r"""
[ -n "${debian_chroot:-}" ] && k debian_chroot yes
echo "@@mr begin root_stat"; stat -c '%d %i' / /proc/1/root/. 2>/dev/null; echo "@@mr end"
"""

# machineroom's own: the Docker engine and compose versions (banners), when docker exists.
DOCKER = r"""
if command -v docker >/dev/null 2>&1; then
  k docker "$(docker --version 2>/dev/null)"
  k compose "$(docker compose version 2>/dev/null | head -n1)"
fi
command -v docker-compose >/dev/null 2>&1 &&
  k compose_v1 "$(docker-compose version 2>/dev/null | head -n1)"
"""

# subset -> its script part, in the order they run
PARTS: dict[str, str] = {
    "env": ENV,
    "platform": PLATFORM,
    "distribution": DISTRIBUTION,
    "lsb": LSB,
    "date_time": DATE_TIME,
    "dns": DNS,
    "user": USER,
    "service_mgr": SERVICE_MGR,
    "pkg_mgr": PKG_MGR,
    "security": SECURITY,
    "python": PYTHON,
    "local": LOCAL,
    "hardware": HARDWARE,
    "mounts": MOUNTS,
    "network": NETWORK,
    "virtual": VIRTUAL,
    "chroot": CHROOT,
    "docker": DOCKER,
}


def build_script(parts: Iterable[str], python: str | None, fact_path: str) -> str:
    """The script for these parts (names of PARTS). `python` is the interpreter to describe
    (the host's `ansible_python_interpreter`), tried before python3 and python."""
    wanted = set(parts)
    # The env part comes first so that it sees nothing the script sets.
    lines = [ENV] if "env" in wanted else []
    lines.append(PRELUDE)
    lines.append(f"MR_PY={quote(python) if python else ''}")
    lines.append(f"MR_FACT_PATH={quote(fact_path)}")
    lines += [text for name, text in PARTS.items() if name in wanted and name != "env"]
    lines.append("exit 0")
    return "\n".join(lines)
