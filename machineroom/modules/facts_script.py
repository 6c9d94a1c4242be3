"""The sh script of the `facts` module, assembled from one part per fact subset.

Each part prints what it reads in one of two shapes, which `facts_ansible.parse_output` reads
back: `key<TAB>value` lines for single values, and blocks between `@@mr begin NAME` and
`@@mr end` for whole files or command outputs (/proc/meminfo, `ip -o addr`, ...). Text that
may hold anything (facts.d files, the environment) is base64 or shell-quoted, never framed
raw.

What it costs the host is the point (about 20 ms of CPU for a full gather, 7 for `min`):
every program started costs 1-3 ms, and dash's `read` takes a file a byte per system call
(2 ms for /proc/meminfo). So a part has two halves. `run` is sh that needs no file contents:
builtin tests and globs, and the few programs nothing else can replace (`date`, `stat -f`,
`ip`, the interpreter's `--version`). `read` only names files: `@r MODE KEY PATH` (which
the builder turns into `set -- "$@" MODE KEY PATH`) queues PATH, and ONE awk at the end
reads every queued file (with getline, so a missing or unreadable one is skipped, not fatal)
and prints it in the part's shape. Docker's and compose's banners (a Go program each, 20+
ms) are kept in a cache file on the host, keyed by the binaries' and plugin folders' inode,
size, mtime and ctime (one `stat`), and rerun when one changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from machineroom.modules.base import quote

# Helpers every part may use. `k` prints one value; `rd` reads a (short) file's first line
# into $v; `pth` finds a program on $PATH into $p without the fork of `$(command -v ..)`.
PRELUDE = r"""
k() { printf '%s\t%s\n' "$1" "$2"; }
rd() { v=; [ -r "$1" ] && IFS= read -r v < "$1" 2>/dev/null; return 0; }
pth() { p=; case $1 in */*) [ -x "$1" ] && p=$1; return 0;; esac
  __o=$IFS; IFS=:; for __d in $PATH; do
    [ -f "${__d:-.}/$1" ] && [ -x "${__d:-.}/$1" ] && { p=${__d:-.}/$1; break; }
  done; IFS=$__o; return 0; }
"""

# The files the `read` halves queued (`@r MODE KEY PATH`, appended to "$@"), read by one awk.
# Modes: b a block (the whole file), v `KEY<TAB>first line`, f `KEY<TAB>PATH<TAB>first line`,
# c the lines of /proc/cpuinfo Ansible counts, s ids and CPU affinity from a status file,
# p KEY's passwd line (else getent's), e PID 1's container= variable, h the fqdn of host KEY
# as `hostname -f` finds it in /etc/hosts (else, or when NSS asks DNS first, hostname -f),
# d a block device and P a partition of it (KEY: name and virtual flag / disk name), i a
# network interface (KEY: name, PCI id, bridge or bonding, speed).
AWK = r"""
# (a file that fails to read, not to open, stops mawk: such files are read by the sh)
function line(p,   l, r) { ok = 0; r = (getline l < p); close(p); if (r < 0) return ""
  ok = 1; return l }
function block(n, p, m,   l, r, f) {
  r = (getline l < p); if (r < 0) return
  print "@@mr begin " n
  while (r > 0) {
    if (m != "c") print l
    else if (l ~ /^flags[ \t]*:/) { if (!f) print l; f = 1 }
    else if (l ~ /^(processor|vendor_id|model name|physical id|core id|cpu cores)[ \t]*:/ ||
      l ~ /^(siblings|Processor|cpu|Vendor)[ \t]*:/) print l
    r = (getline l < p)
  }
  close(p); print "@@mr end"
}
function status(p,   l, a) {
  while ((getline l < p) > 0) { split(l, a)
    if (a[1] == "Uid:" || a[1] == "Gid:") print a[1] "\t" a[2] " " a[3]
    else if (a[1] == "Cpus_allowed_list:") print "cpus_allowed\t" a[2] }
  close(p)
}
function passwd(u, p,   l, a, c) {
  while ((getline l < p) > 0) {
    split(l, a, ":"); if (a[1] == u) { close(p); print "passwd\t" l; return } }
  close(p)
  # quoted for sh (\047 is '): any name NSS may know (SSSD's user@domain, DOMAIN\user)
  if (u == "" || u ~ /^-/ || u ~ /[\047\n]/) return
  c = "getent passwd \047" u "\047 2>/dev/null"; l = ""; c | getline l; close(c)
  print "passwd\t" l
}
function environ(p,   s, l, f, c) {
  if (length("a\0b") == 3) { s = RS; RS = "\0"
    while ((getline l < p) > 0) if (!f && substr(l, 1, 10) == "container=") f = l
    close(p); RS = s }
  else {  # an awk whose strings end at a NUL (BWK, busybox): tr makes them lines
    c = "tr \"\\000\" \"\\n\" 2>/dev/null < " p
    while ((c | getline l) > 0) if (!f && substr(l, 1, 10) == "container=") f = l
    close(c) }
  print "pid1_container\t" f
}
function fqdn(n, p,   l, a, i, c, f, s) {
  s = "/etc/nsswitch.conf"  # /etc/hosts only when it is asked first (or no NSS: musl)
  while ((getline l < s) > 0) if (l ~ /^[ \t]*hosts[ \t]*:/) { sub(/:/, " ", l); split(l, a)
    if (a[2] != "files") f = "-" }
  close(s)
  while (!f && (getline l < p) > 0) { sub(/#.*/, "", l); c = split(l, a)
    for (i = 2; i <= c; i++) if (tolower(a[i]) == tolower(n)) { f = a[2]; break } }
  close(p)
  if (f == "-") f = ""
  if (!f) { c = "hostname -f 2>/dev/null"; c | getline f; close(c) }
  print "fqdn\t" (f != "" ? f : n)
}
function device(k, d,   s, a) {
  s = line(d "/queue/hw_sector_size"); split(k, a, "\t")
  print "device\t" a[1] "\t" line(d "/size") "\t" s "\t" line(d "/removable") "\t" \
    line(d "/queue/rotational") "\t" a[2] "\t" line(d "/device/model") "\t" \
    line(d "/device/vendor")
  ss = s
}
function iface(k, d,   a, x) {
  split(k, a, "\t"); x = a[3]; if (x == "bonding") x = x " " line(d "/bonding/slaves")
  print "iface\t" a[1] "\t" line(d "/address") "\t" line(d "/mtu") "\t" \
    line(d "/operstate") "\t" line(d "/type") "\t" line(d "/flags") "\t" a[4] "\t" a[2] \
    "\t" x
}
BEGIN {
  for (i = 1; i + 2 < ARGC; i += 3) {
    m = ARGV[i]; k = ARGV[i + 1]; p = ARGV[i + 2]
    if (m == "b" || m == "c") block(k, p, m)
    else if (m == "v") { l = line(p); if (ok) print k "\t" l }
    else if (m == "f") { l = line(p); if (ok) print k "\t" p "\t" l }
    else if (m == "s") status(p)
    else if (m == "p") passwd(k, p)
    else if (m == "e") environ(p)
    else if (m == "h") fqdn(k, p)
    else if (m == "d") device(k, p)
    else if (m == "P") print "partition\t" k "\t" line(p "/size") "\t" line(p "/start") "\t" ss
    else if (m == "i") iface(k, p)
  }
  exit
}
"""


@dataclass(frozen=True)
class Part:
    """One subset's sh: `run` (in order, before any file is read; may use "$@" but leaves it
    empty) and `read` (queues files for the awk with `@r MODE KEY PATH`)."""

    run: str = ""
    read: str = ""


# The environment first, before the script sets anything (`export -p` is a builtin).
ENV = Part(run='echo "@@mr begin env"; export -p; echo "@@mr end"')

# /proc/sys/kernel/arch (Linux 6.1+) spares `uname -m`
PLATFORM = Part(
    run=r"""
rd /proc/sys/kernel/hostname; __n=${v:-$(uname -n)}; k nodename "$__n"
rd /proc/sys/kernel/ostype; __s=$v; rd /proc/sys/kernel/osrelease; __r=$v
rd /proc/sys/kernel/arch
if [ -n "$__s" ] && [ -n "$__r" ] && [ -n "$v" ]; then k uname "$__s $__r $v"
else k uname "$(uname -srm)"; fi
rd /proc/sys/kernel/version; k kernel_version "${v:-$(uname -v)}"
rd /var/lib/dbus/machine-id; [ -n "$v" ] || rd /etc/machine-id; k machine_id "$v"
""",
    read='@r h "$__n" /etc/hosts',
)

DISTRIBUTION = Part(
    read=r"""
if [ -r /etc/os-release ]; then @r b os_release /etc/os-release
else @r b os_release /usr/lib/os-release; fi
@r v debian_version /etc/debian_version
for f in /etc/redhat-release /etc/centos-release /etc/oracle-release /etc/alpine-release \
  /etc/arch-release /etc/SuSE-release /etc/gentoo-release /etc/system-release; do
  [ -e "$f" ] && @r f release_file "$f"
done
"""
)

LSB = Part(
    run="command -v lsb_release >/dev/null 2>&1 && k lsb_release_bin yes",
    read="@r b lsb_release /etc/lsb-release",
)

DATE_TIME = Part(
    run=r"""
__d=$(date '+%s %N %Z %z'); k date_time "$__d"
case $__d in *" UTC "*|*" GMT "*) ;; *) k tz_dst "$(date -d @962409600 +%Z 2>/dev/null)";; esac
"""
)

DNS = Part(read="@r b resolv_conf /etc/resolv.conf")

USER = Part(
    run='__u=${LOGNAME:-${USER:-}}; [ -n "$__u" ] || __u=$(id -un); k user "$__u"',
    read='@r s - /proc/self/status; @r p "$__u" /etc/passwd',
)

# /sbin/init's target matters only by its name; `-ef` spares `readlink` when it is systemd
SERVICE_MGR = Part(
    run=r"""
rd /proc/1/comm; k proc_1 "$v"
if [ -L /sbin/init ]; then
  if [ /sbin/init -ef /lib/systemd/systemd ] || [ /sbin/init -ef /usr/lib/systemd/systemd ]
  then k sbin_init /lib/systemd/systemd; else k sbin_init "$(readlink /sbin/init)"; fi
fi
command -v systemctl >/dev/null 2>&1 && k systemctl yes
command -v initctl >/dev/null 2>&1 && k initctl yes
for f in /run/systemd/system/ /dev/.run/systemd/ /dev/.systemd/ /etc/init/ /sbin/openrc \
  /etc/init.d/ /etc/dinit.d/; do [ -e "$f" ] && k exists "$f"; done
"""
)

PKG_MGR = Part(
    run=r"""
for m in apt-get dnf5 dnf yum apk zypper pacman pkg opkg emerge xbps-install; do
  command -v "$m" >/dev/null 2>&1 && k pkg_bin "$m"
done
"""
)

SECURITY = Part(
    run="[ -e /sys/kernel/security/apparmor ] && k apparmor yes",
    read=r"""
if [ -r /sys/fs/selinux/enforce ]; then
  @r v selinux_enforce /sys/fs/selinux/enforce; @r v selinux_policyvers /sys/fs/selinux/policyvers
  @r b selinux_config /etc/selinux/config
fi
@r v fips /proc/sys/crypto/fips_enabled
@r b cmdline /proc/cmdline
for f in /etc/ssh/ssh_host_*_key.pub; do [ -r "$f" ] && @r f ssh_host_key "$f"; done
""",
)

PYTHON = Part(
    run=r"""
__py=
for __c in $MR_PY python3 python; do pth "$__c"; [ -n "$p" ] && { __py=$p; break; }; done
[ -n "$__py" ] && { k python_executable "$__py"; k python_banner "$("$__py" --version 2>&1)"; }
"""
)

# facts.d: each *.fact file base64-encoded (an executable one: its output, and its status).
LOCAL = Part(
    run=r"""
if [ -d "$MR_FACT_PATH" ]; then
  for f in "$MR_FACT_PATH"/*.fact; do
    [ -e "$f" ] || continue
    if [ -x "$f" ]; then __raw=$("$f" 2>/dev/null); __rc=$?
      k local_exec "$f	$__rc	$(printf '%s' "$__raw" | base64 | tr -d '\n')"
    else k local_file "$f	0	$(base64 < "$f" | tr -d '\n')"; fi
  done
fi
"""
)

HARDWARE = Part(
    read=r"""
@r c cpuinfo /proc/cpuinfo; @r s - /proc/self/status; @r b meminfo /proc/meminfo
@r v uptime /proc/uptime; @r v loadavg /proc/loadavg
for f in bios_date bios_vendor bios_version board_asset_tag board_name board_serial \
  board_vendor board_version chassis_asset_tag chassis_serial chassis_vendor chassis_version \
  chassis_type \
  product_name product_serial product_uuid product_version sys_vendor; do
  @r v "dmi_$f" "/sys/devices/virtual/dmi/id/$f"
done
for d in /sys/block/*; do
  [ -e "$d" ] || continue; n=${d##*/}
  [ -e "$d/device" ] && virt=0 || virt=1
  @r d "$n	$virt" "$d"
  for p in "$d/$n"*; do [ -e "$p/partition" ] && @r P "$n	${p##*/}" "$p"; done
done
"""
)

# Mounts: /proc/mounts, then one `stat -f` over every mount point that holds data
# (pseudo filesystems left out), in the order given; escaped names are decoded first.
MOUNTS = Part(
    run=r"""
__mt=/etc/mtab; [ -r "$__mt" ] || __mt=/proc/mounts
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
set --
if [ -d /dev/disk ]; then
  echo "@@mr begin disk_links"; ls -l /dev/disk/by-uuid /dev/disk/by-id /dev/disk/by-label \
    /dev/disk/by-dname 2>/dev/null; echo "@@mr end"
fi
""",
    read='@r b mounts "$__mt"',
)

# An interface's PCI id is its device link's last name: `cd -P` resolves it (no readlink).
NETWORK = Part(
    run=r"""
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
""",
    read=r"""
__wd=$PWD
for d in /sys/class/net/*; do
  [ -d "$d" ] || continue; n=${d##*/}
  pci=; [ -e "$d/device" ] && cd -P "$d/device" 2>/dev/null && pci=${PWD##*/}
  br=; [ -e "$d/bridge" ] && { br=bridge
    for b in "$d"/brif/*; do [ -e "$b" ] && br="$br ${b##*/}"; done; }
  [ -e "$d/bonding" ] && br=bonding
  sp=; [ -e "$d/speed" ] && { rd "$d/speed"; sp=$v; }  # EINVAL when down: mawk would stop
  @r i "$n	$pci	$br	$sp" "$d"
done
cd "$__wd" 2>/dev/null
""",
)

VIRTUAL = Part(
    run=r"""
[ -e /.dockerenv ] || [ -e /.dockerinit ] && k dockerenv yes
[ -e /run/.containerenv ] && k containerenv yes
[ -e /proc/vz ] && [ ! -e /proc/lve ] && { [ -e /proc/bc ] && k openvz host || k openvz guest; }
[ -e /proc/xen ] && k xen yes
""",
    read=r"""
@r b cgroup1 /proc/1/cgroup
[ -r /proc/1/environ ] && @r e - /proc/1/environ
@r v systemd_container /run/systemd/container
@r v virt_product /sys/devices/virtual/dmi/id/product_name
@r v virt_vendor /sys/devices/virtual/dmi/id/sys_vendor
@r v virt_bios /sys/devices/virtual/dmi/id/bios_vendor
""",
)

# / against PID 1's root with test's -ef (no `stat`); `stat` only when PID 1's is hidden
CHROOT = Part(
    run=r"""
[ -n "${debian_chroot:-}" ] && k debian_chroot yes
if [ -e /proc/1/root/. ]; then [ / -ef /proc/1/root/. ] && k root_same yes || k root_same no
else echo "@@mr begin root_stat"; stat -c '%d %i' / 2>/dev/null; echo "@@mr end"; fi
"""
)

# machineroom's own: the Docker engine and compose versions (banners), when docker exists;
# from the cache while the binaries, plugin folders and docker's config are unchanged.
DOCKER = Part(
    run=r"""
pth docker; __dk=$p; pth docker-compose; __dv=$p
if [ -n "$__dk$__dv" ]; then
  __dc=${DOCKER_CONFIG:-${HOME:-/nonexistent}/.docker}
  set -f; set -- $(stat -L -c '%n %i %s %Y %Z' ${__dk:+"$__dk"} ${__dv:+"$__dv"} "$__dc" \
    "$__dc/config.json" "$__dc/cli-plugins" "$__dc/cli-plugins/docker-compose" \
    /usr/local/lib/docker/cli-plugins /usr/local/lib/docker/cli-plugins/docker-compose \
    /usr/local/libexec/docker/cli-plugins /usr/local/libexec/docker/cli-plugins/docker-compose \
    /usr/lib/docker/cli-plugins /usr/lib/docker/cli-plugins/docker-compose \
    /usr/libexec/docker/cli-plugins /usr/libexec/docker/cli-plugins/docker-compose \
    2>/dev/null); set +f
  __fp="v1 $*"; set --
  __cf=${HOME:+$HOME/.cache/machineroom/docker-facts}; __hit=
  if [ -n "$__cf" ] && [ -r "$__cf" ]; then
    { IFS= read -r __l; if [ "$__l" = "$__fp" ]; then __hit=1
      while IFS= read -r __l; do printf '%s\n' "$__l"; done; fi; } < "$__cf"
  fi
  if [ -z "$__hit" ]; then
    __o=$(
      [ -n "$__dk" ] && { k docker "$("$__dk" --version 2>/dev/null)"
        k compose "$("$__dk" compose version 2>/dev/null | head -n1)"; }
      [ -n "$__dv" ] && k compose_v1 "$("$__dv" version 2>/dev/null | head -n1)"
    )
    printf '%s\n' "$__o"
    [ -n "$__cf" ] && case $__o in *"	Docker version "*|*"	docker-compose version "*)
      { [ -d "${__cf%/*}" ] || mkdir -p "${__cf%/*}"
        printf '%s\n%s\n' "$__fp" "$__o" > "$__cf.$$" && mv -f "$__cf.$$" "$__cf"; } 2>/dev/null
    esac
  fi
fi
"""
)

# subset -> its script part, in the order they run
PARTS: dict[str, Part] = {
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
    asked = set(parts)
    wanted = [part for name, part in PARTS.items() if name in asked]
    lines = [p.run for p in wanted if p is ENV]  # first: it must see nothing the script sets
    lines.append(PRELUDE)
    lines.append(f"MR_PY={quote(python) if python else ''}")
    lines.append(f"MR_FACT_PATH={quote(fact_path)}")
    lines += [p.run for p in wanted if p.run and p is not ENV]
    reads = [p.read for p in wanted if p.read]
    if reads:
        # "$@" collects the awk's arguments, three a file (the runs left it empty)
        lines.append("set --")
        lines += [text.replace("@r ", 'set -- "$@" ') for text in reads]
        lines.append(f'awk {quote(AWK)} "$@"')
    lines.append("exit 0")
    return "\n".join(lines)
