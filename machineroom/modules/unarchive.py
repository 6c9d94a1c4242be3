"""`unarchive`: unpack a tar (plain, gz, bz2, xz, zst) or zip archive into a folder on the
host, as Ansible's module does, in one sh step.

The archive is a local file (found as copy finds `src`, streamed on stdin: as in Ansible it
travels on every run), a file already on the host (`remote_src`), or a URL (downloaded on the
host with curl or wget). Whether it is already unpacked is decided as Ansible decides it: for
tar, GNU tar's `--diff` against `dest` (missing files, modification times, sizes, contents,
links; mode and owner unless `mode`/`owner`/`group` are given, which are then set on every
member); for zip, the members unpacked into a temp folder are compared with `dest` (`cmp`).
Only then is the archive extracted. Unlike Ansible, check mode gives an answer for tar
archives too (it reports whether it would unpack) instead of skipping the task.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.errors import InputError
from machineroom.modules import files_sh
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

LIST_MARKER = "@@machineroom-files@@"

# Settings first: dest, src, from (stdin|url|remote), creates, check, keep_newer, mode,
# owner, group, and the functions mr_extra (extra_opts), mr_members (include),
# mr_excludes_tar / mr_excludes_zip.
BODY = r"""set -f
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
mr_say() { printf '%s=%s\n' "$1" "$2"; }
mr_b64() { printf '%s' "$1" | base64 | tr -d '\n'; }
work=
trap 'rm -rf -- ${work:+"$work"}' EXIT
if [ -n "$creates" ] && [ -e "$creates" ]; then mr_say skipped 1; exit 0; fi
[ -d "$dest" ] || mr_fail "Destination '$dest' is not a directory"
work=$(mktemp -d) || mr_fail "cannot create a temporary folder"
case $from in
  stdin) arc=$work/archive; cat > "$arc" || mr_fail "Source '$src' failed to transfer" ;;
  url)
    arc=$work/archive
    if command -v curl >/dev/null 2>&1; then
      curl -fsSL -o "$arc" -- "$src" 2>"$work/err" \
        || mr_fail "Failed to download $src: $(tail -n 1 "$work/err")"
    elif command -v wget >/dev/null 2>&1; then
      wget -q -O "$arc" -- "$src" 2>"$work/err" \
        || mr_fail "Failed to download $src: $(tail -n 1 "$work/err")"
    else mr_fail "unarchive needs curl or wget on the host to download $src"; fi ;;
  *) arc=$src
    [ -e "$arc" ] || mr_fail "Source '$src' does not exist"
    [ -r "$arc" ] || mr_fail "Source '$src' not readable" ;;
esac
[ -s "$arc" ] || mr_fail "Invalid archive '$src', the file is 0 bytes"
magic=$(od -An -tx1 -N6 -- "$arc" | tr -d ' \n')
case $magic in
  504b0304*|504b0506*) handler=ZipArchive ;;
  1f8b*) handler=TgzArchive flag=-z ;;
  425a68*) handler=TarBzipArchive flag=-j ;;
  fd377a585a00) handler=TarXzArchive flag=-J ;;
  28b52ffd*) handler=TarZstdArchive flag=--zstd ;;
  *) handler=TarArchive flag= ;;
esac
mr_say handler "$handler"
nohandler="Failed to find handler for \"$src\". Make sure the required command to extract\
 the file is installed."
if [ "$handler" = ZipArchive ]; then
  command -v unzip >/dev/null 2>&1 || mr_fail "$nohandler Command \"unzip\" not found."
  unzip -Z1 "$arc" > "$work/list" 2>"$work/err" \
    || mr_fail "Failed to find handler for \"$src\": $(tail -n 1 "$work/err")"
  mkdir "$work/x"
  unzip -qq -o "$arc" $(mr_members) $(mr_excludes_zip) -d "$work/x" 2>"$work/err" \
    || mr_fail "cannot read $src: $(tail -n 1 "$work/err")"
  differs=0
  while IFS= read -r m; do
    [ -e "$work/x/$m" ] || [ -h "$work/x/$m" ] || continue   # excluded
    if [ -d "$work/x/$m" ]; then [ -d "$dest/$m" ] || differs=1
    elif [ -h "$work/x/$m" ]; then
      [ "$(readlink -- "$work/x/$m")" = "$(readlink -- "$dest/$m" 2>/dev/null)" ] || differs=1
    else cmp -s -- "$work/x/$m" "$dest/$m" || differs=1; fi
    [ "$differs" = 0 ] || break
  done < "$work/list"
  extract() { unzip -qq -o "$arc" $(mr_members) $(mr_excludes_zip) $(mr_extra) -d "$dest"; }
  cmd="unzip -o $src -d $dest"
else
  tar $flag -tf "$arc" $(mr_excludes_tar) -- $(mr_members) > "$work/list" 2>"$work/err" \
    || mr_fail "$nohandler $(tail -n 1 "$work/err")"
  # the empty name --strip-components leaves of a top folder is no difference (as Ansible)
  tar $flag -d -f "$arc" -C "$dest" $(mr_excludes_tar) $(mr_extra) -- $(mr_members) 2>&1 \
    | grep -v ': : Warning: Cannot stat: No such file or directory$' > "$work/diff"
  uid=$(id -u)
  differs=$(grep -E -c \
    -e ': Mod time differs$' -e ': Warning: Cannot stat: No such file or directory$' \
    -e ': Size differs$' -e ': Contents differ$' -e ': Symlink differs$' \
    -e ': Invalid (owner|group)' -e ': (Not a directory|File type differs)' \
    "$work/diff" | tr -d ' ')
  if [ -z "$mode" ] && grep -q ': Mode differs$' "$work/diff"; then differs=1; fi
  if [ "$uid" = 0 ] && [ -z "$owner" ] && grep -q ': Uid differs$' "$work/diff"; then differs=1; fi
  if [ "$uid" = 0 ] && [ -z "$group" ] && grep -q ': Gid differs$' "$work/diff"; then differs=1; fi
  [ "$differs" = 0 ] || differs=1
  extract() {
    tar $flag -x -f "$arc" -C "$dest" $keep $(mr_excludes_tar) $(mr_extra) -- $(mr_members)
  }
  cmd="tar $flag -x -f $src -C $dest"
fi
mr_say differs "$differs"
if [ "$differs" = 1 ] && [ "$check" = 0 ]; then
  out=$(extract 2>&1); rc=$?
  mr_say rc "$rc"; mr_say cmd "$(mr_b64 "$cmd")"; mr_say out "$(mr_b64 "$out")"
  [ "$rc" = 0 ] || mr_fail "failed to unpack $src to $dest: $out"
fi
# mode, owner and group on every member (and each top folder), as Ansible sets them
attrs=0
if [ -n "$mode$owner$group" ] && [ "$check" = 0 ]; then
  { cat "$work/list"; sed -n 's|^\([^/]*\)/.*|\1|p' "$work/list" | sort -u; } > "$work/all"
  while IFS= read -r m; do
    p=$dest/${m%/}
    [ -e "$p" ] && [ ! -h "$p" ] || continue
    set -- $(stat -c '%a %U %G %u %g' -- "$p")
    if [ -n "$mode" ]; then
      if [ "$mode_sym" = 1 ]; then
        chmod "$mode" "$p" && [ "$(stat -c %a -- "$p")" = "$1" ] || attrs=1
      elif [ "$1" != "$mode" ]; then chmod "$mode" "$p" || mr_fail "cannot chmod $p"; attrs=1; fi
    fi
    if [ -n "$owner" ] && [ "$owner" != "$2" ] && [ "$owner" != "$4" ]; then
      chown -- "$owner" "$p" || mr_fail "cannot chown $p"; attrs=1; fi
    if [ -n "$group" ] && [ "$group" != "$3" ] && [ "$group" != "$5" ]; then
      chgrp -- "$group" "$p" || mr_fail "cannot chgrp $p"; attrs=1; fi
  done < "$work/all"
fi
mr_say attrs "$attrs"
stat -c 'dest_mode=%a
dest_owner=%U
dest_group=%G
dest_uid=%u
dest_gid=%g
dest_size=%s' -- "$dest"
printf '%s\n' "$LIST_MARKER"
cat "$work/list"
"""


def words_function(name: str, words: list[str]) -> str:
    """An sh function printing `words` one a line: expanded unquoted with `set -f` and IFS
    at its default, each word stays one argument unless it holds white space."""
    if not words:
        return f"{name}() {{ :; }}\n"
    for word in words:
        if any(c in word for c in " \t\n"):
            raise InputError(f"unarchive: {word!r}: spaces in names are not supported here")
    return f"{name}() {{ printf '%s\\n' {' '.join(quote(w) for w in words)}; }}\n"


class UnarchiveModule(Module):
    """Unpack an archive into a folder on the host, only when it is not unpacked already."""

    name: ClassVar[str] = "unarchive"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "src": {"type": "string", "minLength": 1},
            "dest": {"type": "string", "minLength": 1},
            "remote_src": {"type": "boolean", "default": False},
            "copy": {"type": "boolean"},
            "creates": {"type": "string"},
            "list_files": {"type": "boolean", "default": False},
            "extra_opts": {"type": "array", "items": {"type": "string"}, "default": []},
            "exclude": {"type": "array", "items": {"type": "string"}, "default": []},
            "include": {"type": "array", "items": {"type": "string"}, "default": []},
            "keep_newer": {"type": "boolean", "default": False},
            "validate_certs": {"type": "boolean", "default": True},
            "decrypt": {"type": "boolean", "default": True},
            "io_buffer_size": {"type": "integer"},
            **files_sh.ATTR_PROPS,
        },
        "required": ["src", "dest"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Fetch or receive the archive, compare, extract when it differs, set attributes."""
        src, dest = str(args["src"]), str(args["dest"])
        remote = bool(args.get("remote_src")) or args.get("copy") is False
        stdin = None
        if "://" in src:
            source = "url"
        elif remote:
            source = "remote"
        else:
            source = "stdin"
            stdin = ctx.read_file(src)
        if args.get("include") and args.get("exclude"):
            raise InputError("unarchive: include and exclude exclude each other")
        mode, symbolic = files_sh.parse_mode(args.get("mode"))
        excludes = [str(p).rstrip("/") for p in args.get("exclude") or []]
        settings = {
            "dest": dest.rstrip("/") or "/",
            "src": src,
            "from": source,
            "creates": args.get("creates") or "",
            "check": int(ctx.check),
            "keep": "--keep-newer-files" if args.get("keep_newer") else "",
            "mode": mode,
            "mode_sym": int(symbolic),
            "owner": args.get("owner") or "",
            "group": args.get("group") or "",
            "FAIL_MARKER": files_sh.FAIL_MARKER,
            "LIST_MARKER": LIST_MARKER,
        }
        script = "".join(
            [
                *(f"{k}={quote(v)}\n" for k, v in settings.items()),
                words_function("mr_extra", [str(w) for w in args.get("extra_opts") or []]),
                words_function("mr_members", [str(w) for w in args.get("include") or []]),
                words_function("mr_excludes_tar", [f"--exclude={p}" for p in excludes]),
                words_function("mr_excludes_zip", ["-x", *excludes] if excludes else []),
                BODY,
            ]
        )
        return RemoteStep(script, stdin=stdin)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Ansible's result keys: dest, src, handler, files (list_files), extract_results."""
        if output.exit_code != 0:
            return files_sh.failure(output, "unarchive")
        head, _, listing = output.stdout.partition(LIST_MARKER + "\n")
        report, _ = files_sh.parse_report(head)
        src, dest = str(args["src"]), str(args["dest"])
        if report.get("skipped") == "1":
            msg = f"skipped, since {args.get('creates')} exists"
            return Outcome("ok", msg=msg, result={"skipped": True})
        result: dict[str, Any] = {
            "dest": dest,
            "src": src,
            "handler": report.get("handler", ""),
            "state": "directory",
            "mode": files_sh.show_mode(report.get("dest_mode", "")),
            "owner": report.get("dest_owner", ""),
            "group": report.get("dest_group", ""),
            "uid": int(report.get("dest_uid") or 0),
            "gid": int(report.get("dest_gid") or 0),
            "size": int(report.get("dest_size") or 0),
        }
        if args.get("list_files"):
            result["files"] = listing.splitlines()
        if "rc" in report:
            result["extract_results"] = {
                "cmd": _text(report.get("cmd", "")),
                "rc": int(report["rc"]),
                "out": _text(report.get("out", "")),
                "err": "",
            }
        unpacked = report.get("differs") == "1"
        changed = unpacked or report.get("attrs") == "1"
        if not changed:
            return Outcome("ok", msg=f"{src} is already unpacked in {dest}", result=result)
        verb = "would unpack" if ctx.check else "unpacked"
        what = f"{src} {verb} into {dest}" if unpacked else f"{dest}: attributes changed"
        return Outcome("changed", msg=what, result=result)


def _text(encoded: str) -> str:
    return base64.b64decode(encoded).decode("utf-8", "replace")
