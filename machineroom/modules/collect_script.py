"""The collection script (one remote command a host) and the parser of what it prints
(the `collect` module's build and interpret; `machineroom collect` runs it on the fleet).

The script is POSIX sh and reads /proc, `df` and `docker ps`: no Python and no agent on the
host. It prints one `key<TAB>fields` line per reading; each custom collector's output sits
between `\\036collector<TAB>NAME` and `\\036end<TAB>NAME<TAB>EXIT_CODE` lines (ASCII record
separator: a JSON printer never starts a line with it).

`parse_collection` turns that into metric samples (names in docs/fleet.md), the container
list, and raw counters kept for the next collection: CPU use and network rates are computed
from the difference between two collections, like `sar` does, not by sleeping on the host
(`add_rates` does that part, so that a collection read on a worker can get its rates later,
against the counters the database holds).
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from machineroom.errors import InputError

SCRIPT_VERSION = 1
COLLECTOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
DEFAULT_COLLECTOR_TIMEOUT = 20  # seconds a custom collector may run on the host
PROBE_TIMEOUT = 10  # seconds df and `docker ps` may take (a hung NFS mount hangs df)
MAX_CUSTOM_METRICS = 200  # numbers taken from one collector's JSON

# Where `collect --install-restricted-key` puts the script the restricted key is forced to run.
INSTALLED_SCRIPT = "/usr/local/lib/machineroom/collect.sh"
# Sent over a restricted key: sshd ignores it and runs the forced command instead.
RESTRICTED_COMMAND = "machineroom-collect"

# Filesystems that hold no user data; mounts under these folders are the kernel's.
_PSEUDO_FS = (
    "proc|sysfs|devtmpfs|devpts|cgroup|cgroup2|mqueue|debugfs|tracefs|securityfs|pstore|"
    "bpf|configfs|fusectl|hugetlbfs|autofs|binfmt_misc|nsfs|squashfs|efivarfs|rpc_pipefs"
)

# Interfaces left out of the fleet's network rate (their counters are still stored).
_VIRTUAL_INTERFACES = (
    "docker",
    "veth",
    "br-",
    "virbr",
    "cni",
    "flannel",
    "cali",
    "vxlan",
    "kube-",
    "lxcbr",
)

BUILTIN_SCRIPT = rf"""LC_ALL=C; export LC_ALL
printf 'v\t{SCRIPT_VERSION}\n'
read -r up _ < /proc/uptime && printf 'uptime\t%s\n' "$up"
read -r l1 l5 l15 _ < /proc/loadavg && printf 'load\t%s\t%s\t%s\n' "$l1" "$l5" "$l15"
read -r _ u n s i w q sq st _ < /proc/stat && printf 'cpu\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
  "$u" "$n" "$s" "$i" "$w" "$q" "$sq" "${{st:-0}}"
printf 'cpus\t%s\n' "$(getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
while read -r k v _; do
  case $k in MemTotal:|MemAvailable:|SwapTotal:|SwapFree:) printf 'mem\t%s\t%s\n' "$k" "$v";;
  esac
done < /proc/meminfo
# A hung network mount must not hang the collection: df (and docker) get a time limit.
P=${{MACHINEROOM_PROBE_TIMEOUT:-{PROBE_TIMEOUT}}}
T=; command -v timeout >/dev/null 2>&1 && T="timeout $P"
disks=$($T df -P -k -T 2>/dev/null); [ $? -eq 124 ] &&
  printf 'problem\tdf timed out after %s s (a hung mount?)\n' "$P"
printf '%s\n' "$disks" | awk 'NR > 1 && $2 !~ /^({_PSEUDO_FS})$/ {{
  m = $7; for (i = 8; i <= NF; i++) m = m " " $i
  if (m !~ /^\/(proc|sys|dev|run)(\/|$)/) print "disk\t" m "\t" $3 "\t" $4 "\t" $5 }}'
awk -F'[: ]+' 'NR > 2 {{ sub(/^ +/, ""); split($0, f, /[: ]+/);
  if (f[1] != "lo") print "net\t" f[1] "\t" f[2] "\t" f[10] }}' /proc/net/dev 2>/dev/null
if ! command -v docker >/dev/null 2>&1; then :
elif [ -z "${{DOCKER_HOST:-}}" ] && [ ! -S /var/run/docker.sock ]; then
  printf 'docker\tdown\n'  # installed, not running: skip starting the client (~20 ms)
else
  if out=$($T docker ps -a \
      --format '{{{{.Names}}}}\t{{{{.Image}}}}\t{{{{.State}}}}\t{{{{.Status}}}}' 2>&1); then
    printf 'docker\tok\n'
    [ -n "$out" ] && printf '%s\n' "$out" | while IFS= read -r line; do
      printf 'container\t%s\n' "$line"; done
  else
    printf 'docker\terror\t%s\n' "$(printf '%s' "$out" | head -n 1)"
  fi
fi
"""


@dataclass(frozen=True)
class Collector:
    """A custom collector from the inventory: a command line printing JSON."""

    name: str
    command: str
    timeout: int = DEFAULT_COLLECTOR_TIMEOUT


def collectors_from(declared: Any, host_id: str, where: str) -> tuple[Collector, ...]:
    """The custom collectors a host's `collectors` variable declares: a mapping of name to a
    command line, or to {command, timeout}. `where` (the variable's origin) starts errors."""
    if declared is None:
        return ()
    if not isinstance(declared, Mapping):
        raise InputError(
            f"{where}: host {host_id}: collectors must be a mapping of name to command, "
            f"not {type(declared).__name__}"
        )
    result = []
    for name, spec in declared.items():
        name = str(name)
        if not COLLECTOR_NAME.fullmatch(name):
            raise InputError(
                f"{where}: host {host_id}: collector name {name!r} must start with a letter "
                "and hold only letters, digits, '_' and '-'"
            )
        timeout: Any = DEFAULT_COLLECTOR_TIMEOUT
        command: Any = spec
        if isinstance(spec, Mapping):
            command, timeout = spec.get("command"), spec.get("timeout", timeout)
            unknown = set(spec) - {"command", "timeout"}
            if unknown:
                raise InputError(
                    f"{where}: host {host_id}: collector {name}: unknown key "
                    f"{sorted(unknown)[0]!r}; expected command and timeout"
                )
        if not isinstance(command, str) or not command.strip():
            raise InputError(
                f"{where}: host {host_id}: collector {name}: expected a command line that "
                "prints JSON"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise InputError(
                f"{where}: host {host_id}: collector {name}: timeout must be a whole number "
                "of seconds"
            )
        result.append(Collector(name, str(command), int(timeout)))
    return tuple(result)


def is_collection(exit_code: int, stdout: str) -> bool:
    """Whether a command's output is a collection (the script may exit non-zero after its
    first line when a probe failed: what it printed still counts)."""
    return exit_code == 0 or stdout.startswith("v\t")


def failure_of(exit_code: int, stdout: str, stderr: str) -> str:
    """Why a command's output is no collection, in one line."""
    lines = (stderr or stdout or "").strip().splitlines()
    tail = lines[-1] if lines else ""
    return f"the collection script exited {exit_code}" + (f": {tail}" if tail else "")


def build_script(collectors: tuple[Collector, ...] = ()) -> str:
    """The whole collection script for a host with these custom collectors.

    A collector's command is the user's own shell command line (like the `shell` module);
    its name is checked against COLLECTOR_NAME before it gets here, and is quoted anyway.
    """
    parts = [BUILTIN_SCRIPT]
    for item in collectors:
        name = shlex.quote(item.name)
        runner = f"timeout {int(item.timeout)} sh -c {shlex.quote(item.command)}"
        parts.append(
            f"printf '\\036collector\\t%s\\n' {name}\n"
            f"if command -v timeout >/dev/null 2>&1; then {runner} </dev/null 2>&1\n"
            f"else sh -c {shlex.quote(item.command)} </dev/null 2>&1; fi\n"
            f"rc=$?; printf '\\n\\036end\\t%s\\t%s\\n' {name} \"$rc\"\n"
        )
    return "".join(parts)


@dataclass
class ParsedCollection:
    """One host's readings: metric samples, containers, counters, collector problems."""

    metrics: dict[str, float] = field(default_factory=dict)
    containers: list[dict[str, str]] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # e.g. "collector pop: exit 127: ..."


def parse_collection(
    stdout: str, previous_counters: Mapping[str, float] | None = None, at: int = 0
) -> ParsedCollection:
    """The script's output -> metrics (rates against `previous_counters`, taken at their
    `at` key), containers and the counters to keep for next time."""
    parsed = ParsedCollection()
    raw: dict[str, list[str]] = {}
    disks: list[list[str]] = []
    nets: list[list[str]] = []
    docker_state: list[str] = []
    # split('\n'), not splitlines(): that one also splits at \036, our marker.
    lines = iter(stdout.split("\n"))
    for line in lines:
        key, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if key == "\036collector":
            _parse_custom(fields[0], lines, parsed)
        elif key == "disk":
            disks.append(fields)
        elif key == "net":
            nets.append(fields)
        elif key == "mem":
            raw["mem_" + fields[0].rstrip(":")] = fields[1:]
        elif key == "docker":
            docker_state = fields
        elif key == "problem":
            parsed.problems.append(rest)
        elif key == "container" and len(fields) >= 3:
            name, image, state = fields[:3]
            status = fields[3] if len(fields) > 3 else ""
            parsed.containers.append(
                {"name": name, "image": image, "state": state, "status": status}
            )
        elif key:
            raw[key] = fields
    _basic(raw, parsed)
    _cpu_counters(raw, parsed)
    _disks(disks, parsed)
    _network_counters(nets, parsed)
    if docker_state[:1] == ["ok"]:
        running = sum(1 for c in parsed.containers if c["state"] == "running")
        parsed.metrics["containers_total"] = float(len(parsed.containers))
        parsed.metrics["containers_running"] = float(running)
    elif docker_state[:1] == ["down"]:
        parsed.problems.append("docker: the daemon is not running")
    elif docker_state[:1] == ["error"]:
        reason = " ".join(docker_state[1:]).strip()
        if "Cannot connect to the Docker daemon" in reason:
            reason = "the daemon is not running"
        parsed.problems.append("docker: " + reason)
    add_rates(parsed, previous_counters or {}, at)
    return parsed


def add_rates(parsed: ParsedCollection, previous: Mapping[str, float], at: int) -> None:
    """CPU use and network rates of `parsed` (taken at unix time `at`) against the counters
    of the host's previous collection; again on the same collection, the last call counts."""
    _cpu(parsed, previous, at)
    _network(parsed, previous, at)
    parsed.counters["at"] = float(at)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _basic(raw: dict[str, list[str]], parsed: ParsedCollection) -> None:
    metrics = parsed.metrics
    uptime = _number(raw.get("uptime", [None])[0])
    if uptime is not None:
        metrics["uptime_seconds"] = uptime
    for name, text in zip(("load1", "load5", "load15"), raw.get("load", []), strict=False):
        value = _number(text)
        if value is not None:
            metrics[name] = value
    cpus = _number(raw.get("cpus", [None])[0])
    if cpus:
        metrics["cpus"] = cpus
    total = _number(raw.get("mem_MemTotal", [None])[0])
    available = _number(raw.get("mem_MemAvailable", [None])[0])
    if total:
        metrics["mem_total_bytes"] = total * 1024
        if available is not None:
            metrics["mem_available_bytes"] = available * 1024
            metrics["mem_used_pct"] = round(100.0 * (total - available) / total, 2)
    swap_total = _number(raw.get("mem_SwapTotal", [None])[0])
    swap_free = _number(raw.get("mem_SwapFree", [None])[0])
    if swap_total is not None and swap_free is not None:
        metrics["swap_used_pct"] = (
            round(100.0 * (swap_total - swap_free) / swap_total, 2) if swap_total else 0.0
        )


def _cpu_counters(raw: dict[str, list[str]], parsed: ParsedCollection) -> None:
    ticks = [_number(t) for t in raw.get("cpu", [])]
    if len(ticks) < 4 or any(t is None for t in ticks):
        return
    values = [float(t or 0.0) for t in ticks]
    parsed.counters["cpu_idle"] = values[3] + (values[4] if len(values) > 4 else 0.0)  # + iowait
    parsed.counters["cpu_total"] = sum(values)


def _cpu(parsed: ParsedCollection, previous: Mapping[str, float], at: int) -> None:
    idle, total = parsed.counters.get("cpu_idle"), parsed.counters.get("cpu_total")
    if idle is None or total is None:
        return
    uptime = parsed.metrics.get("uptime_seconds")
    boot = at - uptime if uptime is not None else None
    if boot is not None:
        parsed.counters["boot"] = boot
    before_idle, before_total = previous.get("cpu_idle"), previous.get("cpu_total")
    before_boot = previous.get("boot")
    same_boot = boot is None or before_boot is None or abs(boot - before_boot) < 120
    if (
        before_idle is not None
        and before_total is not None
        and same_boot
        and total > before_total
        and idle >= before_idle
    ):
        # Busy share since the last collection; since boot on the first one (or after a reboot).
        share = 1 - (idle - before_idle) / (total - before_total)
    elif total > 0:
        share = 1 - idle / total
    else:
        return
    parsed.metrics["cpu_used_pct"] = round(100.0 * min(max(share, 0.0), 1.0), 2)


def _disks(disks: list[list[str]], parsed: ParsedCollection) -> None:
    worst = None
    for fields in disks:
        if len(fields) < 3:
            continue
        mount, size_kb, used_kb = fields[0], _number(fields[1]), _number(fields[2])
        avail_kb = _number(fields[3]) if len(fields) > 3 else None
        if size_kb is None or used_kb is None or size_kb <= 0:
            continue
        # As df computes it: used of what the user can have (used + available), so a root
        # filesystem with its 5 % reserve reads 100 % when full, and a shared pool (btrfs,
        # ZFS, thin volumes) reads its real fill, not used / pool size.
        room = used_kb + avail_kb if avail_kb is not None else size_kb
        pct = round(100.0 * used_kb / room, 2) if room > 0 else 0.0
        parsed.metrics[f"disk_used_pct:{mount}"] = pct
        parsed.metrics[f"disk_used_bytes:{mount}"] = used_kb * 1024
        parsed.metrics[f"disk_size_bytes:{mount}"] = size_kb * 1024
        if avail_kb is not None:
            parsed.metrics[f"disk_avail_bytes:{mount}"] = avail_kb * 1024
        worst = pct if worst is None else max(worst, pct)
    if worst is not None:
        parsed.metrics["disk_used_pct_max"] = worst


def _network_counters(nets: list[list[str]], parsed: ParsedCollection) -> None:
    for fields in nets:
        if len(fields) < 3:
            continue
        iface = fields[0]
        if fields[1] == "0" and fields[2] == "0":
            continue  # an interface that never carried a byte (ifb, dummy, down)
        for direction, text in (("rx", fields[1]), ("tx", fields[2])):
            value = _number(text)
            if value is None:
                continue
            parsed.metrics[f"net_{direction}_bytes:{iface}"] = value
            parsed.counters[f"net_{direction}:{iface}"] = value


def _network(parsed: ParsedCollection, previous: Mapping[str, float], at: int) -> None:
    rates = {"rx": 0.0, "tx": 0.0}
    have_rate = False
    before_at = previous.get("at")
    for key, value in parsed.counters.items():
        if not key.startswith(("net_rx:", "net_tx:")):
            continue
        direction, iface = key[4:6], key[7:]
        old = previous.get(key)
        if iface.startswith(_VIRTUAL_INTERFACES):
            continue  # bridges and container ends repeat what a real interface carried
        if old is not None and before_at is not None and at > before_at and value >= old:
            rates[direction] += (value - old) / (at - before_at)
            have_rate = True
    if have_rate:
        parsed.metrics["net_rx_bytes_per_s"] = round(rates["rx"], 2)
        parsed.metrics["net_tx_bytes_per_s"] = round(rates["tx"], 2)
    else:
        parsed.metrics.pop("net_rx_bytes_per_s", None)
        parsed.metrics.pop("net_tx_bytes_per_s", None)


def _parse_custom(name: str, lines: Any, parsed: ParsedCollection) -> None:
    """Read one collector's output up to its end marker; store its numbers as metrics."""
    body: list[str] = []
    code = None
    for line in lines:
        if line.startswith("\036end\t"):
            parts = line.split("\t")
            code = parts[2] if len(parts) > 2 else None
            break
        body.append(line)
    text = "\n".join(body).strip()
    if code != "0":
        tail = text.split("\n")[-1][:200] if text else ""
        reason = "timed out" if code == "124" else f"exit {code}"
        parsed.problems.append(f"collector {name}: {reason}" + (f": {tail}" if tail else ""))
        parsed.metrics[f"{name}.ok"] = 0.0
        return
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        parsed.problems.append(f"collector {name}: output is not JSON ({exc.msg} at {exc.pos})")
        parsed.metrics[f"{name}.ok"] = 0.0
        return
    numbers: dict[str, float] = {}
    _flatten(name, document, numbers)
    for metric in sorted(numbers)[:MAX_CUSTOM_METRICS]:
        parsed.metrics[metric] = numbers[metric]
    if len(numbers) > MAX_CUSTOM_METRICS:
        parsed.problems.append(
            f"collector {name}: kept {MAX_CUSTOM_METRICS} of {len(numbers)} numbers"
        )
    parsed.metrics[f"{name}.ok"] = 1.0


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    """Numbers and booleans of a JSON document, named by their path (`pop.net.rx`)."""
    if isinstance(value, bool):
        out[prefix] = 1.0 if value else 0.0
    elif isinstance(value, int | float):
        if math.isfinite(value):
            out[prefix] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            out_key = re.sub(r"[^A-Za-z0-9_:-]", "_", str(key))
            _flatten(f"{prefix}.{out_key}", item, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(f"{prefix}.{index}", item, out)
