"""`find`: files matching conditions under folders, as Ansible's module returns them.

The host lists what it walks (`find`, each entry `stat`ed: no Python there); every filter
runs here, with Python's `fnmatch` and `re` as Ansible applies them, and the entries are put
in the order Ansible's `os.walk` gives (per folder: files, then folders, then each folder's
content). Only `contains` and `get_checksum` need the host again: a second command greps
(`grep -E`, Python's syntax translated as lineinfile does) and checksums just the candidates.
Never changes anything.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from machineroom.errors import InputError
from machineroom.modules import files_sh
from machineroom.modules.base import (
    CommandOutput,
    Conversation,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

# %f raw mode (hex), then the numbers, the names, the path last (it may hold spaces).
STAT_FORMAT = "S %f %u %g %s %i %d %h %.9X %.9Y %.9Z %U %G %n"

# $L: -L to follow links; $maxdepth: find's option or empty; the paths are "$@".
WALK = r"""set -f
printf 'T %s\n' "$(date +%s.%N)"
i=0
for p in "$@"; do
  if [ -d "$p" ]; then
    printf 'P %s\n' "$i"
    find $L "$p" -mindepth 1 $maxdepth -exec stat -c "$fmt" -- {} + 2>&1
  else
    printf 'N %s\n' "$i"
  fi
  i=$((i + 1))
done
exit 0
"""

# The candidates' paths on stdin, one a line; a line of results per path, in order.
CHECK = r"""set -f
while IFS= read -r f; do
  hit=1
  if [ -n "$re" ]; then grep -q $whole -E -e "$re" -- "$f" 2>/dev/null || hit=0; fi
  sum=-
  if [ "$hit" = 1 ] && [ -n "$algo" ]; then
    sum=$("${algo}sum" < "$f" 2>/dev/null) && sum=${sum%% *} || sum=-
  fi
  printf 'C %s %s\n' "$hit" "$sum"
done
"""

UNITS_AGE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
UNITS_SIZE = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
ALGORITHMS = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]


@dataclass
class Entry:
    """One walked path and its `stat` (lstat: a link is reported as a link, as Ansible)."""

    path: str
    raw_mode: int
    fields: list[str]

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.raw_mode)

    def info(self) -> dict[str, Any]:
        """Ansible's `statinfo()` keys."""
        m = self.raw_mode
        uid, gid, size, inode, dev, nlink = (int(x) for x in self.fields[:6])
        atime, mtime, ctime = (float(x) for x in self.fields[6:9])
        pw_name, gr_name = self.fields[9:11]
        return {
            "path": self.path,
            "mode": f"{stat.S_IMODE(m):04o}",
            "isdir": stat.S_ISDIR(m),
            "ischr": stat.S_ISCHR(m),
            "isblk": stat.S_ISBLK(m),
            "isreg": stat.S_ISREG(m),
            "isfifo": stat.S_ISFIFO(m),
            "islnk": stat.S_ISLNK(m),
            "issock": stat.S_ISSOCK(m),
            "uid": uid,
            "gid": gid,
            "size": size,
            "inode": inode,
            "dev": dev,
            "nlink": nlink,
            "atime": atime,
            "mtime": mtime,
            "ctime": ctime,
            "gr_name": "" if gr_name == "UNKNOWN" else gr_name,
            "pw_name": "" if pw_name == "UNKNOWN" else pw_name,
            "wusr": bool(m & stat.S_IWUSR),
            "rusr": bool(m & stat.S_IRUSR),
            "xusr": bool(m & stat.S_IXUSR),
            "wgrp": bool(m & stat.S_IWGRP),
            "rgrp": bool(m & stat.S_IRGRP),
            "xgrp": bool(m & stat.S_IXGRP),
            "woth": bool(m & stat.S_IWOTH),
            "roth": bool(m & stat.S_IROTH),
            "xoth": bool(m & stat.S_IXOTH),
            "isuid": bool(m & stat.S_ISUID),
            "isgid": bool(m & stat.S_ISGID),
        }


def parse_amount(value: str | None, units: Mapping[str, int], what: str) -> int | None:
    """`age: 2d` / `size: -10m` in seconds or bytes, as Ansible reads them."""
    if value is None:
        return None
    m = re.match(r"^(-?\d+)(s|m|h|d|w|b|k|g|t)?$", str(value).lower())
    if not m or (m.group(2) and m.group(2) not in units):
        raise InputError(f"find: failed to process {what} {value!r}", expected="like 2d or -10m")
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


def name_filter(args: Mapping[str, Any]) -> Callable[[str], bool]:
    """Ansible's `pfilter`: patterns (glob or regex) and excludes on the entry's name."""
    use_regex = bool(args.get("use_regex"))
    patterns = list(args.get("patterns") or []) or ([".*"] if use_regex else ["*"])
    excludes = list(args.get("excludes") or [])
    if use_regex:
        try:
            pats = [re.compile(p) for p in patterns]
            excl = [re.compile(e) for e in excludes]
        except re.error as exc:
            raise InputError(f"find: invalid regular expression: {exc}") from None

        def regex(name: str) -> bool:
            return any(p.match(name) for p in pats) and not any(e.match(name) for e in excl)

        return regex

    def glob(name: str) -> bool:
        hit = any(fnmatch.fnmatch(name, p) for p in patterns)
        return hit and not any(fnmatch.fnmatch(name, e) for e in excludes)

    return glob


def mode_filter(value: Any, exact: bool) -> Callable[[int], bool]:
    """Ansible's `mode_filter` for octal modes."""
    if value in (None, ""):
        return lambda m: True
    if not isinstance(value, str) or not re.fullmatch(r"0?o?[0-7]{1,4}", value):
        raise InputError(
            f"find: mode {value!r} is not an octal string", expected="a string like '0644'"
        )
    want = int(value.replace("o", ""), 8)
    if exact:
        return lambda m: stat.S_IMODE(m) == want
    return lambda m: bool(stat.S_IMODE(m) & want)


def walk_order(top: str, entries: list[Entry], follow: bool) -> list[tuple[Entry, int]]:
    """The entries under `top` in os.walk's order, each with its depth; os.walk visits a
    folder's files, then its folders, then walks each folder (links only when following)."""
    children: dict[str, list[Entry]] = {}
    for entry in entries:
        children.setdefault(posixpath.dirname(entry.path), []).append(entry)
    out: list[tuple[Entry, int]] = []
    stack = [(posixpath.normpath(top), 1)]
    while stack:
        root, depth = stack.pop(0)
        here = children.get(root, [])
        dirs = [e for e in here if e.is_dir or (follow and e.path in children)]
        files = [e for e in here if e not in dirs]
        out += [(e, depth) for e in files + dirs]
        stack[0:0] = [(e.path, depth + 1) for e in dirs]
    return out


class FindModule(Module):
    """Find files on the host by name, age, size, type, mode and content."""

    name: ClassVar[str] = "find"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "paths": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "patterns": {"type": "array", "items": {"type": "string"}, "default": []},
            "excludes": {"type": "array", "items": {"type": "string"}},
            "contains": {"type": "string"},
            "read_whole_file": {"type": "boolean", "default": False},
            "file_type": {"enum": ["any", "directory", "file", "link"], "default": "file"},
            "age": {"type": ["string", "integer"]},
            "age_stamp": {"enum": ["atime", "ctime", "mtime"], "default": "mtime"},
            "size": {"type": ["string", "integer"]},
            "recurse": {"type": "boolean", "default": False},
            "hidden": {"type": "boolean", "default": False},
            "follow": {"type": "boolean", "default": False},
            "get_checksum": {"type": "boolean", "default": False},
            "checksum_algorithm": {"enum": ALGORITHMS, "default": "sha1"},
            "use_regex": {"type": "boolean", "default": False},
            "depth": {"type": "integer"},
            "mode": {"type": ["string", "integer"]},
            "exact_mode": {"type": "boolean", "default": True},
            "encoding": {"type": "string"},
            "limit": {"type": "integer"},
        },
        "required": ["paths"],
        "additionalProperties": False,
        "x-aliases": {
            "name": "paths",
            "path": "paths",
            "pattern": "patterns",
            "exclude": "excludes",
            "checksum": "checksum_algorithm",
            "checksum_algo": "checksum_algorithm",
        },
    }

    def converse(self, args: Mapping[str, Any], ctx: ModuleContext) -> Conversation:
        """Walk on the host, filter here; grep and checksum the candidates when asked."""
        paths = [str(p) for p in args["paths"]]
        age = parse_amount(args.get("age"), UNITS_AGE, "age")
        size = parse_amount(args.get("size"), UNITS_SIZE, "size")
        if args.get("limit") is not None and int(args["limit"]) <= 0:
            raise InputError(f"find: limit cannot be {args['limit']} (use None for unlimited)")
        names = name_filter(args)
        modes = mode_filter(args.get("mode"), bool(args.get("exact_mode", True)))
        contains = args.get("contains")
        grep = f"^({files_sh.ere(str(contains), 'contains')})" if contains else ""
        if contains and args.get("read_whole_file"):
            grep = files_sh.ere(str(contains), "contains")
        recurse, depth = bool(args.get("recurse")), args.get("depth") or 0
        maxdepth = "" if recurse and not depth else f"-maxdepth {depth + 1 if recurse else 1}"
        follow = bool(args.get("follow"))
        script = (
            f"L={'-L' if follow else ''} maxdepth={quote(maxdepth)} fmt={quote(STAT_FORMAT)}\n"
            f"set -- {' '.join(quote(p) for p in paths)}\n" + WALK
        )
        output = yield RemoteStep(script)
        if output.exit_code != 0:
            return files_sh.failure(output, "find")
        now, walked, skipped = self._parse(output, paths)
        file_type = str(args.get("file_type") or "file")
        stamp = ["atime", "mtime", "ctime"].index(str(args.get("age_stamp") or "mtime"))
        limit = args.get("limit")
        picked: list[Entry] = []
        looked = 0
        hidden = bool(args.get("hidden"))
        for index, top in enumerate(paths):
            if index not in walked:
                continue
            for entry, level in walk_order(top, walked[index], follow):
                looked += 1
                if recurse and depth and level > depth:
                    continue
                base = posixpath.basename(entry.path)
                if base.startswith(".") and not hidden:
                    continue
                m = entry.raw_mode
                if file_type == "directory" and not stat.S_ISDIR(m):
                    continue
                if file_type == "file" and not stat.S_ISREG(m):
                    continue
                if file_type == "link" and not stat.S_ISLNK(m):
                    continue
                if not (names(base) and modes(m)):
                    continue
                if age is not None:
                    elapsed = now - float(entry.fields[6 + stamp])
                    if not (elapsed >= age if age >= 0 else elapsed <= -age):
                        continue
                if size is not None and stat.S_ISREG(m):
                    n = int(entry.fields[2])
                    if not (n >= size if size >= 0 else n <= -size):
                        continue
                picked.append(entry)
                if limit is not None and len(picked) >= int(limit) and not grep:
                    break
        want_sum = bool(args.get("get_checksum"))
        candidates = [e for e in picked if stat.S_ISREG(e.raw_mode)]
        checks: dict[str, tuple[bool, str]] = {}
        if candidates and ((contains and file_type == "file") or want_sum):
            algo = str(args.get("checksum_algorithm") or "sha1") if want_sum else ""
            whole = "-z" if args.get("read_whole_file") else ""
            script = (
                f"re={quote(grep if file_type == 'file' else '')} algo={quote(algo)} "
                f"whole={whole}\n" + CHECK
            )
            listing = "".join(e.path + "\n" for e in candidates).encode()
            second = yield RemoteStep(script, stdin=listing)
            if second.exit_code != 0:
                return files_sh.failure(second, "find")
            lines = [line for line in second.stdout.splitlines() if line.startswith("C ")]
            for entry, line in zip(candidates, lines, strict=False):
                _, flag, digest = line.split(" ", 2)
                checks[entry.path] = (flag == "1", "" if digest == "-" else digest)
        files: list[dict[str, Any]] = []
        for entry in picked:
            matches, digest = checks.get(entry.path, (True, ""))
            if not matches:
                continue
            info = entry.info()
            if want_sum and digest:
                info["checksum"] = digest
            files.append(info)
        msg = "All paths examined"
        if limit is not None and len(files) >= int(limit):
            files = files[: int(limit)]
            msg = "Limit of matches reached"
        if skipped:
            msg = "Not all paths examined, check warnings for details"
        return Outcome(
            "ok",
            msg=msg,
            result={
                "files": files,
                "matched": len(files),
                "examined": looked,
                "skipped_paths": skipped,
                "warnings": [
                    f"Skipped '{p}' path due to this access issue: {why}"
                    for p, why in skipped.items()
                ],
            },
        )

    def _parse(
        self, output: CommandOutput, paths: list[str]
    ) -> tuple[float, dict[int, list[Entry]], dict[str, str]]:
        """(the host's time, entries per walked path, skipped paths and why)."""
        now = 0.0
        walked: dict[int, list[Entry]] = {}
        skipped: dict[str, str] = {}
        current: list[Entry] | None = None
        for line in output.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "T":
                now = float(rest)
            elif kind == "P":
                current = walked.setdefault(int(rest), [])
            elif kind == "N":
                current = None
                skipped[paths[int(rest)]] = f"'{paths[int(rest)]}' is not a directory"
            elif kind == "S" and current is not None:
                parts = rest.split(" ", 12)
                if len(parts) == 13:
                    path = posixpath.normpath(parts[12])
                    current.append(Entry(path, int(parts[0], 16), parts[1:12]))
            elif line.startswith("find: ") and current is not None:
                # permission denied and friends: Ansible skips them too
                skipped[line[6:].split(":")[0].strip("'‘’")] = line[6:]
        return now, walked, skipped
