"""`copy` with `src` a local folder, as Ansible's copy: `conf.d/` puts the folder's contents
into `dest`, `conf.d` the folder itself (dest/conf.d), recursively.

Two round trips at most. First a script naming every file and folder (with the file's SHA-1)
asks the host which files are missing or differ and which need only mode/owner/group; nothing
is sent when all match (and nothing more in check mode). Then only the files that differ
travel, as a tar stream of index-named members (`0`, `1`, ...) unpacked into a temp folder
inside the target and renamed into place: no name from the stream reaches a path, every
name in the script goes through quote(). Links in the source folder are copied as the files
they point to (Ansible's default local_follow: true).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from machineroom.errors import InputError
from machineroom.modules import files_sh
from machineroom.modules.base import (
    Conversation,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)


@dataclass(frozen=True)
class LocalTree:
    """A local folder's content: folders and files as paths relative to it (posix)."""

    folders: list[str]
    files: list[tuple[str, str, str]]  # (relative path, local path, sha1)


def local_tree(root: str) -> LocalTree:
    """Walk `root`, following links; an InputError for a broken link or an unsafe name."""
    folders: list[str] = []
    files: list[tuple[str, str, str]] = []
    for top, dirs, names in os.walk(root, followlinks=True, onerror=_walk_error):
        dirs.sort()
        relative_top = os.path.relpath(top, root)
        for name in dirs:
            folders.append(_relative(relative_top, name))
        for name in sorted(names):
            path = os.path.join(top, name)
            if not os.path.isfile(path):
                raise InputError(f"copy: {path} is not a regular file (a broken link?)")
            files.append((_relative(relative_top, name), path, _sha1(path)))
    return LocalTree(folders, files)


def _walk_error(exc: OSError) -> None:
    raise InputError(f"copy: cannot read {exc.filename}: {exc.strerror or exc}")


def _relative(top: str, name: str) -> str:
    parts = ([] if top == "." else top.split(os.sep)) + [name]
    # os.walk never yields these; a name that would leave dest is refused all the same
    if any(part in ("", ".", "..") or "/" in part for part in parts):
        raise InputError(f"copy: {'/'.join(parts)!r} would leave dest", expected="a plain name")
    return "/".join(parts)


def _sha1(path: str) -> str:
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                h.update(piece)
    except OSError as exc:
        raise InputError(f"copy: cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def target_root(src: str, dest: str) -> str:
    """Where the folder's content goes: dest for `src/`, dest/<name> for `src`."""
    if src.endswith("/"):
        return dest.rstrip("/") or "/"
    return posixpath.join(dest, posixpath.basename(src.rstrip("/")))


def _head(args: Mapping[str, Any], ctx: ModuleContext, root: str) -> str:
    directory_mode, _ = files_sh.parse_mode(args.get("directory_mode"))
    return "".join(
        [
            files_sh.LIBRARY,
            files_sh.common_vars(ctx.check, ctx.diff, root),
            files_sh.attr_vars(args),
            f"force={int(args.get('force', True))} root={quote(root)} "
            f"directory_mode={quote(directory_mode)}\n",
        ]
    )


# Step 1: `F index send attrs` per file, `D index missing attrs` per folder.
SURVEY = r"""mr_file() {
  mr_p=$root/$2
  [ ! -d "$mr_p" ] || mr_fail "$mr_p is a directory"
  if [ ! -e "$mr_p" ]; then echo "F $1 1 0"; return; fi
  if [ "$force" = 0 ]; then echo "F $1 0 0"; return; fi
  mr_attrs "$mr_p" || mr_fail "cannot stat $mr_p"
  mr_c=1; [ "$(sha1sum <"$mr_p" | cut -d' ' -f1)" != "$3" ] || mr_c=0
  mr_want_mode "$cur_mode" f
  mr_a=0; [ "$want_mode" = "$cur_mode" ] || mr_a=1
  mr_owner_ok || mr_a=1; mr_group_ok || mr_a=1
  echo "F $1 $mr_c $mr_a"
}
mr_dir() {
  mr_p=$root${2:+/$2}
  if [ -d "$mr_p" ]; then
    mr_attrs "$mr_p" || mr_fail "cannot stat $mr_p"
    mr_a=0; mr_owner_ok || mr_a=1; mr_group_ok || mr_a=1
    echo "D $1 0 $mr_a"
  elif [ -e "$mr_p" ]; then mr_fail "$mr_p exists and is not a directory"
  else echo "D $1 1 0"; fi
}
"""

# Step 2: make folders, unpack the files sent, rename them into place, fix attributes.
APPLY = r"""mr_stage=
trap 'rm -rf -- ${mr_stage:+"$mr_stage"}' EXIT
mr_mkdirs() {
  mr_d=$1 mr_new=
  while [ ! -d "$mr_d" ]; do mr_new="$mr_d
$mr_new"; mr_d=$(dirname -- "$mr_d"); done
  (umask "$mr_umask" && mkdir -p -- "$1") || mr_fail "cannot create $1"
  [ -n "$directory_mode" ] || return 0
  printf '%s' "$mr_new" | while IFS= read -r mr_d; do
    [ -z "$mr_d" ] || chmod -- "$directory_mode" "$mr_d" || exit 1
  done || mr_fail "cannot chmod $directory_mode"
}
mr_unpack() {
  mr_stage=$(mktemp -d -- "$root/.machineroom.XXXXXXXX") \
    || mr_fail "cannot create a temp folder in $root"
  tar -x --no-same-owner -C "$mr_stage" -f - || mr_fail "cannot unpack into $mr_stage"
}
mr_send() {
  mr_p=$root/$2 mr_f=$mr_stage/$1
  if [ -e "$mr_p" ]; then
    mr_attrs "$mr_p" || mr_fail "cannot stat $mr_p"
    mr_want_mode "$cur_mode" f
    chown "$cur_uid:$cur_gid" "$mr_f" 2>/dev/null || :
  else mr_want_mode "$(mr_default_mode f)" f; fi
  chmod "$want_mode" "$mr_f" || mr_fail "cannot chmod $want_mode"
  mr_chown "$mr_f"
  mv -f -- "$mr_f" "$mr_p" || mr_fail "cannot rename into $mr_p"
}
mr_fix() {
  mr_p=$root/$1
  mr_attrs "$mr_p" || mr_fail "cannot stat $mr_p"
  mr_want_mode "$cur_mode" f
  chmod "$want_mode" "$mr_p" || mr_fail "cannot chmod $want_mode"
  mr_chown "$mr_p"
}
"""


def _tar(paths: list[tuple[str, str]]) -> bytes:
    """A tar of the local files, members named by index, owned by nobody in particular."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in paths:
            with open(path, "rb") as f:
                # from the open file (fstat): a link is sent as the file it points to
                info = archive.gettarinfo(arcname=name, fileobj=f)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o600
                archive.addfile(info, f)
    return buffer.getvalue()


def _under(root: str, relative: str) -> str:
    return posixpath.join(root, relative) if relative else root


def copy_folder(folder: str, args: Mapping[str, Any], ctx: ModuleContext) -> Conversation:
    """The conversation that makes the host's copy of the local `folder` match."""
    src = str(args["src"])
    root = target_root(src, str(args["dest"]))
    tree = local_tree(folder)
    head = _head(args, ctx, root)
    survey = [SURVEY, "mr_dir 0 ''\n"]
    survey += [f"mr_dir {i + 1} {quote(rel)}\n" for i, rel in enumerate(tree.folders)]
    survey += [f"mr_file {i} {quote(rel)} {sha}\n" for i, (rel, _, sha) in enumerate(tree.files)]
    output = yield RemoteStep(head + "".join(survey))
    if output.exit_code != 0:
        return files_sh.failure(output, "copy")
    all_folders = ["", *tree.folders]
    new_folders: list[str] = []
    folder_attrs: list[str] = []
    send: list[int] = []
    fix: list[int] = []
    for line in output.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        fields = rest.split()
        if kind not in ("F", "D") or len(fields) != 3:
            continue
        index, first, attrs = int(fields[0]), fields[1] == "1", fields[2] == "1"
        if kind == "D":
            if first:
                new_folders.append(all_folders[index])
            elif attrs:
                folder_attrs.append(all_folders[index])
        elif first:
            send.append(index)
        elif attrs:
            fix.append(index)
    result: dict[str, Any] = {"dest": root, "src": src}
    if not (new_folders or folder_attrs or send or fix):
        return Outcome("ok", msg=f"{root} already matches {src}", result=result)
    changed = [tree.files[i][0] for i in send + fix]
    diff = "".join(
        [f"+ {_under(root, rel)}/\n" for rel in new_folders]
        + [f"~ {posixpath.join(root, tree.files[i][0])}\n" for i in send]
        + [f"~ {posixpath.join(root, tree.files[i][0])} (attributes)\n" for i in fix]
    )
    verb = "would copy" if ctx.check else "copied"
    outcome = Outcome(
        "changed",
        msg=f"{verb} {len(send)} file(s), {len(fix)} attribute change(s) into {root}",
        diff=diff if ctx.diff else "",
        result={**result, "files": changed},
    )
    if ctx.check:
        return outcome
    script = [head, APPLY]
    script += [
        f"mr_mkdirs {quote(posixpath.join(root, rel) if rel else root)}\n" for rel in new_folders
    ]
    script += [
        f"mr_chown {quote(posixpath.join(root, rel) if rel else root)}\n"
        for rel in new_folders + folder_attrs
    ]
    if send:
        script.append("mr_unpack\n")
        script += [f"mr_send {n} {quote(tree.files[i][0])}\n" for n, i in enumerate(send)]
    script += [f"mr_fix {quote(tree.files[i][0])}\n" for i in fix]
    stdin = _tar([(str(n), tree.files[i][1]) for n, i in enumerate(send)]) if send else None
    output = yield RemoteStep("".join(script), stdin=stdin)
    if output.exit_code != 0:
        return files_sh.failure(output, "copy")
    return outcome
