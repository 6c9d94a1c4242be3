"""`copy`: put content (inline or a local file) at a path on the host, as Ansible's module.

One remote command: the content travels on stdin into a temp file beside `dest` (in check
mode, in $TMPDIR), and `files_sh.mr_put` compares it with `dest` and renames it into place
only when content or attributes differ. `template` reuses this with rendered content.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import posixpath
from collections.abc import Mapping
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
from machineroom.modules.copy_folder import copy_folder

COPY_PROPS: dict[str, Any] = {
    "dest": {"type": "string", "minLength": 1},
    **files_sh.ATTR_PROPS,
    "force": {"type": "boolean", "default": True},
    "backup": {"type": "boolean", "default": False},
    "validate": {"type": "string"},
    "follow": {"type": "boolean", "default": False},
}


def copy_step(
    content: bytes | os.PathLike[str],
    dest: str,
    src_name: str | None,
    args: Mapping[str, Any],
    ctx: ModuleContext,
    remote_src: str = "",
) -> RemoteStep:
    """The script that installs `content` at `dest` (or dest/src_name when dest is a folder).

    `content` is bytes or a local file's path (streamed from disk on the command's stdin).
    Which of the two `dest` is only the host knows, so both paths are in the script.
    With `remote_src` the content is that file (or folder, REMOTE_DIR) on the host instead.
    """
    into = posixpath.join(dest, src_name) if src_name else ""
    directory_mode, _ = files_sh.parse_mode(args.get("directory_mode"))
    sums = None if remote_src else content_sums(content)
    lines = [
        files_sh.library("put", "tmp"),
        files_sh.common_vars(ctx.check, ctx.diff, dest),
        files_sh.attr_vars(args),
        files_sh.validate_vars(args.get("validate")),
        f"backup={int(bool(args.get('backup', False)))} force={int(args.get('force', True))}\n",
        f"dest={quote(dest)} dir={quote(files_sh.folder(dest))} into={quote(into)} made=0\n",
        f"src={quote(remote_src)} follow={int(bool(args.get('follow')))} "
        f"directory_mode={quote(directory_mode)}\n",
    ]
    if into or remote_src:
        lines.append(MKDIRS)
    if remote_src:
        lines.append(REMOTE_SOURCE)
    lines.append(PLACE)
    if sums is None:
        lines.append(FILL)
    else:
        sha1, md5, size = sums
        lines.append(
            f"want_sum={sha1} want_size={size}\n{SAME}"
            f"mr_say checksum {sha1}; mr_say md5sum {md5}; mr_say size {size}\n"
        )
    lines.append(IDS)
    return RemoteStep("".join(lines), stdin=None if remote_src else content)


# Local files up to this size are hashed on the controller (once per file and version: the
# cache), so that a host whose file matches is asked one `sha1sum` instead of a temp file.
SUM_LIMIT = 256 << 20


def content_sums(content: bytes | os.PathLike[str]) -> tuple[str, str, int] | None:
    """(sha1, md5, size) of the content, None for a local file too big or unreadable (the
    host then hashes the temp file as before)."""
    if isinstance(content, bytes):
        sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
        return sha1, hashlib.md5(content, usedforsecurity=False).hexdigest(), len(content)
    path = os.fspath(content)
    try:
        info = os.stat(path)
    except OSError:
        return None
    if info.st_size > SUM_LIMIT:
        return None
    return _file_sums(path, info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=256)
def _file_sums(path: str, mtime_ns: int, size: int) -> tuple[str, str, int] | None:
    sha1 = hashlib.sha1(usedforsecurity=False)
    md5 = hashlib.md5(usedforsecurity=False)
    read = 0
    try:
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                sha1.update(piece)
                md5.update(piece)
                read += len(piece)
    except OSError:
        return None
    return (sha1.hexdigest(), md5.hexdigest(), read) if read == size else None


# mr_mkdirs DIR: mkdir -p, then directory_mode on each folder it made (for a folder as dest
# and remote_src only).
MKDIRS = r"""mr_mkdirs() {
  mr_d=$1 mr_made=
  while [ ! -d "$mr_d" ]; do mr_made="$mr_d
$mr_made"; mr_d=$(dirname -- "$mr_d"); done
  mkdir -p -- "$1" || return 1
  [ -n "$directory_mode" ] || return 0
  printf '%s' "$mr_made" | while IFS= read -r mr_d; do
    [ -z "$mr_d" ] || chmod -- "$directory_mode" "$mr_d" || return 1
  done
}
"""
# remote_src: a missing source fails; a folder is copied as Ansible does (`dir` into
# dest/dir, `dir/` its content into dest), changed when `diff -r` finds a difference.
REMOTE_SOURCE = r"""[ -e "$src" ] || mr_fail "Source $src not found"
if [ -d "$src" ]; then
  case $src in */) from=${src%/} to=${dest%/} ;; *) from=$src to=${dest%/}/${src##*/} ;; esac
  mr_say dir_copy 1
  if [ -d "$to" ] && diff -r -- "$from" "$to" >/dev/null 2>&1; then mr_say content 0
  else
    mr_say content 1
    if [ "$CHECK" = 0 ]; then
      mr_mkdirs "$to" || mr_fail "cannot create $to"
      cp -RP -- "$from/." "$to/" || mr_fail "cannot copy $from to $to"
    fi
  fi
  if [ "$CHECK" = 0 ]; then
    [ -z "$owner" ] || chown -R -- "$owner" "$to" || mr_fail "cannot chown $to"
    [ -z "$group" ] || chgrp -R -- "$group" "$to" || mr_fail "cannot chgrp $to"
  fi
  mr_say path "$(printf '%s' "$to" | base64 | tr -d '
')"
  exit 0
fi
"""
# Where the file goes: a folder as dest (existing, or named with a trailing /) takes the
# file inside it; in check mode a missing folder may be one an earlier task would create (as
# Ansible, report the file as to be created rather than fail); `follow` writes through a
# link at dest to the file it names (Ansible's `follow`). Then one stat of dest.
# mr_drain: read the content sent on stdin when it is not needed (none with remote_src).
PLACE = r"""mr_drain() { [ -n "$src" ] || cat >/dev/null; }
if [ -d "$dest" ] || [ "${dest%/}" != "$dest" ]; then
  [ -n "$into" ] || mr_fail "$dest is a directory: name the file, or use src"
  if [ ! -d "$dest" ]; then made=1; if [ "$CHECK" = 0 ]; then
    mr_mkdirs "$dest" || mr_fail "cannot create $dest"; fi; fi
  dir=${dest%/}; dest=$into; mr_say into 1
fi
if [ "$force" = 0 ] && [ -e "$dest" ]; then mr_drain; mr_say skipped 1; exit 0; fi
if [ ! -d "$dir" ] && [ "$made" = 0 ]; then mr_drain
  [ "$CHECK" = 1 ] || mr_fail "destination directory $dir does not exist"
  mr_say exists 0; mr_say content 1; mr_say attrs 0; exit 0; fi
if [ "$follow" = 1 ] && [ -h "$dest" ]; then
  dest=$(readlink -f -- "$dest") || mr_fail "cannot resolve $dest"; dir=${dest%/*}
fi
if [ -e "$dest" ] && [ ! -d "$dest" ]; then mr_attrs "$dest" || mr_fail "cannot stat $dest"; fi
"""
# The content is known here: when dest has the same size and SHA-1 it is left alone and the
# content on stdin is not read (the connection allows that); else as FILL, checksums known
# (and no cmp in mr_put when size or SHA-1 said that the content differs).
SAME = r"""mr_new= mr_differs=
if [ "$mr_attrs_of" != "$dest" ]; then :
elif [ "$cur_size" != "$want_size" ]; then mr_differs=1
elif mr_s=$(sha1sum <"$dest"); then
  if [ "${mr_s%% *}" = "$want_sum" ]; then mr_new=$dest; else mr_differs=1; fi
fi
if [ -z "$mr_new" ]; then
  mr_tmp_near "$dir"; mr_new=$mr_t1
  cat >"$mr_t1" || mr_fail "cannot write $mr_t1"
fi
"""
# The content unknown here (remote_src, a big local file): into a temp file, then Ansible's
# result keys for the file as it will be: checksum (sha1), md5sum, size.
FILL = r"""mr_tmp_near "$dir"; mr_new=$mr_t1
if [ -n "$src" ]; then cat -- "$src" >"$mr_t1" || mr_fail "cannot read $src"
else cat >"$mr_t1" || mr_fail "cannot write $mr_t1"; fi
mr_s=$(sha1sum <"$mr_t1"); mr_say checksum "${mr_s%% *}"
mr_s=$(md5sum <"$mr_t1"); mr_say md5sum "${mr_s%% *}"
mr_s=$(wc -c <"$mr_t1"); mr_say size "${mr_s##* }"
"""
# uid and gid as they will be (said before mr_put, whose diff comes last)
IDS = r"""if [ "$mr_attrs_of" != "$dest" ]; then mr_id; cur_uid=$my_uid cur_gid=$my_gid; fi
case $owner in
'') mr_say uid "$cur_uid" ;;
*[!0-9]*) mr_say uid "$(id -u -- "$owner" 2>/dev/null)" ;;
*) mr_say uid "$owner" ;;
esac
case $group in
'') mr_say gid "$cur_gid" ;;
*[!0-9]*) mr_say gid "$(getent group -- "$group" | cut -d: -f3)" ;;
*) mr_say gid "$group" ;;
esac
mr_put "$mr_new" "$dest" "$mr_differs"
"""


def copy_outcome(
    dest: str, into: str, ctx: ModuleContext, output: CommandOutput, what: str, src: str = ""
) -> Outcome:
    """Outcome of `copy_step`'s script."""
    if output.exit_code != 0:
        return files_sh.failure(output, what)
    report, diff_text = files_sh.parse_report(output.stdout)
    path = into if report.get("into") == "1" else dest
    if report.get("dir_copy") == "1":  # remote_src: a folder
        folder = base64.b64decode(report.get("path", "")).decode("utf-8", "replace")
        if report.get("content") != "1":
            return Outcome("ok", msg=f"{folder} already matches", result={"dest": folder})
        verb = "would copy" if ctx.check else "copied"
        return Outcome("changed", msg=f"{verb} into {folder}", result={"dest": folder})
    if report.get("skipped") == "1":
        return Outcome("ok", msg=f"{path} exists and force is off", result={"dest": path})
    changed, diff, result = files_sh.file_outcome(
        path, report, diff_text, check=ctx.check, want_diff=ctx.diff
    )
    result["state"] = "file"
    for key in ("checksum", "md5sum"):
        if report.get(key):
            result[key] = report[key]
    for key in ("size", "uid", "gid"):
        if report.get(key, "").strip().isdigit():
            result[key] = int(report[key])
    if src:
        result["src"] = src
    if not changed:
        return Outcome("ok", msg=files_sh.nothing_to_do(path, ctx.check), result=result)
    verb = "would update" if ctx.check else "updated"
    if report.get("exists") != "1":
        verb = "would create" if ctx.check else "created"
    return Outcome("changed", msg=f"{verb} {path}", diff=diff, result=result)


class CopyModule(Module):
    """Copy `content` or the local file `src` to `dest` on the host."""

    name: ClassVar[str] = "copy"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "src": {"type": "string", "minLength": 1},
            "content": {"type": "string"},
            "remote_src": {"type": "boolean", "default": False},
            "directory_mode": files_sh.MODE_SCHEMA,
            "local_follow": {"type": "boolean", "default": True},
            **COPY_PROPS,
        },
        "required": ["dest"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Content from `content` or `src`, then the shared copy script."""
        if args.get("remote_src"):
            src, name = self._source(args, remote=True)
            return copy_step(b"", args["dest"], name, args, ctx, remote_src=str(src or ""))
        content, name = self._content(args, ctx)
        return copy_step(content, args["dest"], name, args, ctx)

    def converse(self, args: Mapping[str, Any], ctx: ModuleContext) -> Conversation | None:
        """A local folder as `src` (copy_folder's two steps); None for a file or content."""
        src = args.get("src")
        if not src or args.get("remote_src") or "content" in args:
            return None
        folder = ctx.local_folder(str(src))
        return None if folder is None else copy_folder(folder, args, ctx)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the content or the attributes differed."""
        _, name = self._source(args, remote=bool(args.get("remote_src")))
        into = posixpath.join(args["dest"], name) if name else ""
        return copy_outcome(args["dest"], into, ctx, output, "copy", str(args.get("src") or ""))

    @staticmethod
    def _source(args: Mapping[str, Any], remote: bool = False) -> tuple[str | None, str | None]:
        src = args.get("src")
        if src is not None and "content" in args:
            raise InputError("copy: give src or content, not both")
        if src is None and "content" not in args:
            raise InputError("copy: nothing to copy", expected="src or content")
        if remote and src is None:
            raise InputError("copy: remote_src needs src", expected="a path on the host")
        if src is not None and src.endswith("/") and not remote:
            raise InputError(f"copy: src {src!r} is a folder", expected="a file")
        return src, posixpath.basename(src.rstrip("/")) if src else None

    def _content(
        self, args: Mapping[str, Any], ctx: ModuleContext
    ) -> tuple[bytes | os.PathLike[str], str | None]:
        src, name = self._source(args)
        if src is None:
            return str(args["content"]).encode(), None
        return ctx.read_file(src), name
