"""`stat`: what a path on the host is (kind, mode, owner, times, checksum), as Ansible's stat.

One POSIX sh step, read-only: GNU `stat --printf` for the numbers, `test -r/-w/-x` for the
access bits (as the login or become user), `readlink` for links, `<algo>sum` for the checksum,
`file` for the MIME type and `lsattr` for the attributes when they are present. The result
is registered under `stat` with Ansible's key names; never changed, so check mode runs it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import stat as st
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)
from machineroom.modules.files_sh import failure, parse_report

ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")

# lsattr's flag letters -> the names Ansible reports in `attributes`
ATTRIBUTE_NAMES = {
    "A": "noatime",
    "a": "append",
    "c": "compressed",
    "C": "nocow",
    "d": "nodump",
    "D": "dirsync",
    "e": "extents",
    "E": "encrypted",
    "F": "casefold",
    "h": "blocksize",
    "i": "immutable",
    "I": "indexed",
    "j": "journalled",
    "m": "dontcompress",
    "N": "inline",
    "P": "projinherit",
    "s": "zero",
    "S": "synchronous",
    "t": "notail",
    "T": "blockroot",
    "u": "undelete",
    "V": "verity",
    "x": "dax",
    "X": "compressedraw",
    "Z": "compresseddirty",
}

# $p: the path; $st: `stat` or `stat -L` (follow). Every line is key=value of our own
# making; names that could hold any byte (link targets, MIME output) travel base64-encoded.
BODY = r"""set -f
mr_b64() { base64 | tr -d '\n'; }
if [ "$follow" = 1 ]; then st='stat -L'; [ -e "$p" ] || { echo exists=0; exit 0; }
else st=stat; [ -e "$p" ] || [ -h "$p" ] || { echo exists=0; exit 0; }; fi
echo exists=1
fmt='raw=%f %u %g %s %i %d %h %b %B %t %T\natime=%x\nmtime=%y\nctime=%z\n'
$st --printf="${fmt}pw_name=%U\ngr_name=%G\n" -- "$p" || exit 1
[ -r "$p" ] && echo readable=1
[ -w "$p" ] && echo writeable=1
[ -x "$p" ] && echo executable=1
if [ "$follow" != 1 ] && [ -h "$p" ]; then
  printf 'lnk_target=%s\n' "$(readlink -- "$p" | mr_b64)"
  printf 'lnk_source=%s\n' "$(readlink -f -- "$p" | mr_b64)"
fi
# a link is checksummed only when followed (Ansible: only when lstat says regular file)
if [ "$checksum" != "" ] && [ -f "$p" ] && [ -r "$p" ] && { [ "$follow" = 1 ] || ! [ -h "$p" ]; }
then
  if sum=$("${checksum}sum" < "$p"); then printf 'checksum=%s\n' "${sum%% *}"
  else exit 1; fi
fi
if [ "$mime" = 1 ]; then
  if command -v file >/dev/null 2>&1; then
    printf 'mime=%s\n' "$(file -b --mime-type --mime-encoding -- "$p" 2>/dev/null | mr_b64)"
  else echo mime=; fi
fi
if [ "$attrs" = 1 ] && command -v lsattr >/dev/null 2>&1; then
  a=$(lsattr -vd -- "$p" 2>/dev/null) && printf 'lsattr=%s\n' "$(printf '%s' "$a" | mr_b64)"
fi
exit 0
"""


class StatModule(Module):
    """Read a path's status; `stat.exists` is false for a missing path (not a failure)."""

    name: ClassVar[str] = "stat"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "follow": {"type": "boolean", "default": False},
            "get_checksum": {"type": "boolean", "default": True},
            "checksum_algorithm": {"enum": list(ALGORITHMS), "default": "sha1"},
            "get_mime": {"type": "boolean", "default": True},
            "get_attributes": {"type": "boolean", "default": True},
        },
        "required": ["path"],
        "additionalProperties": False,
        # Ansible's names for the same arguments
        "x-aliases": {
            "dest": "path",
            "name": "path",
            "checksum": "checksum_algorithm",
            "checksum_algo": "checksum_algorithm",
            "mime": "get_mime",
            "mime_type": "get_mime",
            "mime-type": "get_mime",
            "attr": "get_attributes",
            "attributes": "get_attributes",
        },
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """One read-only script; the same in check mode."""
        algorithm = str(args.get("checksum_algorithm") or "sha1")
        checksum = algorithm if args.get("get_checksum", True) else ""
        settings = (
            f"p={quote(args['path'])} follow={int(bool(args.get('follow', False)))} "
            f"checksum={quote(checksum)} mime={int(bool(args.get('get_mime', True)))} "
            f"attrs={int(bool(args.get('get_attributes', True)))}\n"
        )
        return RemoteStep(settings + BODY)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """`stat` as Ansible names its keys; never changed."""
        path = str(args["path"])
        if output.exit_code != 0:
            return failure(output, "stat")
        report, _ = parse_report(output.stdout)
        if report.get("exists") != "1":
            return Outcome("ok", msg=f"{path} does not exist", result={"stat": {"exists": False}})
        info = _status(path, report)
        if args.get("get_mime", True):
            info["mimetype"] = info["charset"] = "unknown"
            mime = _decoded(report.get("mime", ""))
            if ";" in mime and "charset=" in mime:
                kind, _, charset = mime.partition(";")
                info["mimetype"] = kind.strip()
                info["charset"] = charset.split("=", 1)[1].strip()
        if args.get("get_attributes", True):
            info.update(_attributes(_decoded(report.get("lsattr", ""))))
        kind = "directory" if info["isdir"] else "link" if info["islnk"] else "file"
        return Outcome("ok", msg=f"{path}: {kind}, mode {info['mode']}", result={"stat": info})


def _status(path: str, report: Mapping[str, str]) -> dict[str, Any]:
    """The numeric fields of `stat --printf`'s `raw` line, named as Ansible names them."""
    raw = report["raw"].split()
    mode = int(raw[0], 16)
    uid, gid, size, inode, dev, nlink, blocks, block_size = (int(x) for x in raw[1:9])
    info: dict[str, Any] = {
        "exists": True,
        "path": path,
        "mode": f"{st.S_IMODE(mode):04o}",
        "isdir": st.S_ISDIR(mode),
        "ischr": st.S_ISCHR(mode),
        "isblk": st.S_ISBLK(mode),
        "isreg": st.S_ISREG(mode),
        "isfifo": st.S_ISFIFO(mode),
        "islnk": st.S_ISLNK(mode),
        "issock": st.S_ISSOCK(mode),
        "uid": uid,
        "gid": gid,
        "size": size,
        "inode": inode,
        "dev": dev,
        "nlink": nlink,
        "atime": _epoch(report.get("atime", "")),
        "mtime": _epoch(report.get("mtime", "")),
        "ctime": _epoch(report.get("ctime", "")),
        "wusr": bool(mode & st.S_IWUSR),
        "rusr": bool(mode & st.S_IRUSR),
        "xusr": bool(mode & st.S_IXUSR),
        "wgrp": bool(mode & st.S_IWGRP),
        "rgrp": bool(mode & st.S_IRGRP),
        "xgrp": bool(mode & st.S_IXGRP),
        "woth": bool(mode & st.S_IWOTH),
        "roth": bool(mode & st.S_IROTH),
        "xoth": bool(mode & st.S_IXOTH),
        "isuid": bool(mode & st.S_ISUID),
        "isgid": bool(mode & st.S_ISGID),
        "blocks": blocks,
        "block_size": block_size,
        # major/minor (hex in stat's %t %T) packed as Linux's st_rdev
        "device_type": _rdev(int(raw[9], 16), int(raw[10], 16)),
        "readable": report.get("readable") == "1",
        "writeable": report.get("writeable") == "1",
        "executable": report.get("executable") == "1",
    }
    for name in ("pw_name", "gr_name"):
        if report.get(name, "UNKNOWN") != "UNKNOWN":
            info[name] = report[name]
    if info["islnk"]:
        info["lnk_source"] = _decoded(report.get("lnk_source", "")).removesuffix("\n")
        info["lnk_target"] = _decoded(report.get("lnk_target", "")).removesuffix("\n")
    if "checksum" in report:
        info["checksum"] = report["checksum"]
    return info


def _rdev(major: int, minor: int) -> int:
    """os.makedev's encoding of a device number (glibc)."""
    return (
        ((major & 0xFFFFF000) << 32)
        | ((major & 0xFFF) << 8)
        | ((minor & 0xFFFFFF00) << 12)
        | (minor & 0xFF)
    )


def _epoch(text: str) -> float:
    """`2026-12-04 17:53:49.123456789 +0000` (stat's %y) as seconds since the epoch."""
    try:
        day, clock, zone = text.split()
        whole, _, fraction = clock.partition(".")
        moment = datetime.datetime.strptime(f"{day} {whole} {zone}", "%Y-%m-%d %H:%M:%S %z")
        return moment.timestamp() + float(f"0.{fraction or 0}")
    except ValueError:
        return 0.0


def _decoded(text: str) -> str:
    try:
        return base64.b64decode(text).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return ""


def _attributes(lsattr: str) -> dict[str, Any]:
    """`version`, `attr_flags`, `attributes` from `lsattr -vd` (None/''/[] without it)."""
    found: dict[str, Any] = {"version": None, "attributes": [], "attr_flags": ""}
    words = lsattr.split()
    if len(words) >= 2:
        flags = words[1].replace("-", "")
        found["version"] = words[0]
        found["attr_flags"] = flags
        found["attributes"] = [ATTRIBUTE_NAMES[f] for f in flags if f in ATTRIBUTE_NAMES]
    return found
