"""`git`: a checkout of a repository on the host, as Ansible's `ansible.builtin.git`.

One POSIX sh step around the host's `git` binary (a clear error when it is missing):
- no repository at `dest`: clone (`--origin remote`, `--bare`, `--depth` with `--branch`
  for a branch or tag, `--single-branch`), then check out `version`; with `clone: false`,
  or in check mode, only `git ls-remote` says what HEAD would be;
- a repository: with `update: false` nothing is fetched (before = after = HEAD); otherwise
  local modifications fail the task unless `force` (then `reset --hard`), the remote's URL
  is set to `repo`, the remote is fetched (branches and tags) and `version` checked out as
  Ansible does (HEAD: the remote's default branch, reset to it; a branch: tracked and reset
  to the remote's; a tag or SHA: detached). Check mode fetches nothing: `ls-remote` gives
  the SHA it would move to.
Results as Ansible's: `before` (null for a clone), `after`, `remote_url_changed`; changed
when HEAD moved, local modifications were discarded, or the remote's URL changed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.errors import InputError
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)
from machineroom.modules.files_sh import FAIL_MARKER, failure, parse_report

BODY = r"""set -f
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
mr_say() { printf '%s=%s\n' "$1" "$2"; }
mr_git() { mr_out=$("$git" "$@" 2>&1) || return 1; }
command -v "$git" >/dev/null 2>&1 || mr_fail "git is not installed on the host ($git not \
found): install it first (e.g. apt-get install git, or the package module)"
export LANG=C LC_ALL=C LANGUAGE=C GIT_TERMINAL_PROMPT=0
[ -n "$ssh_command" ] && export GIT_SSH_COMMAND="$ssh_command"
[ -n "$umask" ] && { umask "$umask" || mr_fail "umask must be an octal integer: $umask"; }
# the SHA `version` names on a remote (URL or remote name), as Ansible's get_remote_head
mr_remote_sha() {
  if [ "$version" = HEAD ]; then
    if [ -n "${2:-}" ]; then mr_ref=refs/heads/$2; else mr_ref=HEAD; fi
    mr_git ls-remote "$1" "$mr_ref" || mr_fail "cannot read $1: $mr_out"
    mr_sha=$(printf '%s\n' "$mr_out" | awk -v r="$mr_ref" '$2 == r { print $1; exit }')
  else
    mr_git ls-remote "$1" "refs/heads/$version" "refs/tags/$version" "refs/tags/$version^{}" \
      || mr_fail "cannot read $1: $mr_out"
    mr_sha=$(printf '%s\n' "$mr_out" | awk -v v="$version" '
      $2 == "refs/heads/" v { b = $1 } $2 == "refs/tags/" v { t = $1 }
      $2 == "refs/tags/" v "^{}" { d = $1 }
      END { if (b != "") print b; else if (d != "") print d; else if (t != "") print t }')
    [ -n "$mr_sha" ] || mr_sha=$version  # a SHA: taken as it is, as Ansible does
  fi
  [ -n "$mr_sha" ] || mr_fail "Could not determine remote revision for $version"
}
mr_kind_on() {  # branch, tag or other: what `version` is on the remote $1
  mr_kind=other
  mr_git ls-remote "$1" "refs/heads/$version" "refs/tags/$version" || return 0
  case "$mr_out" in
    *"refs/heads/$version"*) mr_kind=branch ;;
    *"refs/tags/$version"*) mr_kind=tag ;;
  esac
}
mr_head_branch() {
  mr_b=$("$git" -C "$dest" symbolic-ref --short "refs/remotes/$remote/HEAD" 2>/dev/null) \
    && mr_b=${mr_b#"$remote/"}
  if [ -z "$mr_b" ]; then
    "$git" -C "$dest" remote set-head "$remote" --auto >/dev/null 2>&1
    mr_b=$("$git" -C "$dest" symbolic-ref --short "refs/remotes/$remote/HEAD" 2>/dev/null) \
      && mr_b=${mr_b#"$remote/"}
  fi
  [ -n "$mr_b" ] || mr_b=$("$git" -C "$dest" symbolic-ref --short HEAD 2>/dev/null)
}
mr_switch() {
  if [ "$version" = HEAD ]; then
    mr_head_branch
    [ -n "$mr_b" ] || mr_fail "Failed to find the default branch of $remote"
    mr_git -C "$dest" checkout --force "$mr_b" || mr_fail "Failed to checkout branch $mr_b: $mr_out"
    mr_git -C "$dest" reset --hard "$remote/$mr_b" -- \
      || mr_fail "Failed to checkout branch $mr_b: $mr_out"
  elif "$git" -C "$dest" show-ref --verify --quiet "refs/remotes/$remote/$version"; then
    if "$git" -C "$dest" show-ref --verify --quiet "refs/heads/$version"; then
      mr_git -C "$dest" checkout --force "$version" \
        || mr_fail "Failed to checkout branch $version: $mr_out"
      mr_git -C "$dest" reset --hard "$remote/$version" \
        || mr_fail "Failed to checkout $version: $mr_out"
    else
      mr_git -C "$dest" checkout --track -b "$version" "$remote/$version" \
        || mr_fail "Failed to checkout $version: $mr_out"
    fi
  else
    mr_git -C "$dest" checkout --force "$version" || mr_fail "Failed to checkout $version: $mr_out"
  fi
}
if [ "$bare" = 1 ]; then mr_gitdir=$dest; else mr_gitdir=$dest/.git; fi
if [ -z "$dest" ] || [ ! -f "$mr_gitdir/config" ]; then
  if [ "$CHECK" = 1 ] || [ "$clone" = 0 ]; then
    mr_remote_sha "$repo"
    mr_say changed 1; mr_say after "$mr_sha"; exit 0
  fi
  set -- clone --origin "$remote"
  [ "$bare" = 1 ] && set -- "$@" --bare
  if [ "$version" != HEAD ] && [ -z "$refspec" ]; then mr_kind_on "$repo"; else mr_kind=head; fi
  if [ -n "$depth" ]; then
    case $mr_kind in
      head) set -- "$@" --depth "$depth" ;;
      branch|tag) set -- "$@" --depth "$depth" --branch "$version" ;;
      *) mr_say warning "Ignoring depth argument. Shallow clones are only available for \
HEAD, branches, tags or in combination with refspec." ;;
    esac
  fi
  if [ "$single_branch" = 1 ]; then
    set -- "$@" --single-branch
    case $mr_kind in branch|tag) [ -n "$depth" ] || set -- "$@" --branch "$version" ;; esac
  fi
  mr_git "$@" -- "$repo" "$dest" || mr_fail "Failed to clone $repo into $dest: $mr_out"
  if [ -n "$refspec" ]; then
    set -- -C "$dest" fetch
    [ -n "$depth" ] && set -- "$@" --depth "$depth"
    mr_git "$@" "$remote" "$refspec" || mr_fail "Failed to fetch $refspec: $mr_out"
  fi
  [ "$bare" = 1 ] || mr_switch
  mr_say cloned 1
elif [ "$update" = 0 ]; then
  mr_sha=$("$git" -C "$dest" rev-parse HEAD 2>/dev/null)
  mr_say before "$mr_sha"; mr_say after "$mr_sha"; exit 0
else
  mr_mods=0
  if [ "$bare" != 1 ]; then
    mr_git -C "$dest" status --porcelain || mr_fail "git status failed in $dest: $mr_out"
    printf '%s\n' "$mr_out" | grep -v '^??' | grep -q . && mr_mods=1
  fi
  mr_before=$("$git" -C "$dest" rev-parse HEAD 2>/dev/null)
  mr_say before "$mr_before"
  if [ "$mr_mods" = 1 ]; then
    [ "$force" = 1 ] || mr_fail "Local modifications exist in the destination: $dest (force=no)."
    mr_say local_mods 1
    if [ "$CHECK" = 0 ]; then
      mr_git -C "$dest" reset --hard HEAD -- || mr_fail "Failed to reset $dest: $mr_out"
    fi
  fi
  mr_url=$("$git" -C "$dest" config --get "remote.$remote.url")
  if [ "$mr_url" != "$repo" ] && [ "${mr_url%/}" != "file://${repo%/}" ] \
    && [ "file://${mr_url%/}" != "${repo%/}" ] && [ "${mr_url%/}" != "${repo%/}" ]; then
    mr_say remote_url_changed 1
    if [ "$CHECK" = 0 ]; then
      if [ -n "$mr_url" ]; then mr_git -C "$dest" remote set-url "$remote" "$repo"
      else mr_git -C "$dest" remote add "$remote" "$repo"; fi \
        || mr_fail "Failed to set the URL of $remote: $mr_out"
    fi
  fi
  if [ "$CHECK" = 1 ]; then
    mr_head_branch
    if [ "$version" = HEAD ]; then mr_remote_sha "$repo" "$mr_b"; else mr_remote_sha "$repo"; fi
    mr_say after "$mr_sha"; exit 0
  fi
  set -- fetch --tags --force
  [ -n "$depth" ] && set -- "$@" --depth "$depth"
  if [ "$bare" = 1 ]; then set -- "$@" "$remote" '+refs/heads/*:refs/heads/*'
  else set -- "$@" "$remote" "+refs/heads/*:refs/remotes/$remote/*"; fi
  [ -n "$refspec" ] && set -- "$@" "$refspec"
  mr_git -C "$dest" "$@" || mr_fail "Failed to download remote objects and refs: $mr_out"
  [ "$bare" = 1 ] || mr_switch
fi
if [ "$bare" != 1 ] && [ "$recursive" = 1 ] && [ -f "$dest/.gitmodules" ]; then
  set -- -C "$dest" submodule update --init --recursive
  [ "$track_submodules" = 1 ] && set -- "$@" --remote
  mr_git "$@" || mr_fail "Failed to update the submodules of $dest: $mr_out"
fi
mr_say after "$("$git" -C "$dest" rev-parse HEAD 2>/dev/null)"
exit 0
"""


class GitModule(Module):
    """`git`: repo (or name), dest, version, remote, force, depth, clone, update, bare,
    single_branch, accept_hostkey, accept_newhostkey, key_file, ssh_opts, executable,
    umask, refspec, recursive, track_submodules."""

    name: ClassVar[str] = "git"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "repo": {"type": "string", "minLength": 1},
            "dest": {"type": "string"},
            "version": {"type": "string", "minLength": 1, "default": "HEAD"},
            "remote": {"type": "string", "minLength": 1, "default": "origin"},
            "force": {"type": "boolean", "default": False},
            "depth": {"type": "integer", "minimum": 1},
            "clone": {"type": "boolean", "default": True},
            "update": {"type": "boolean", "default": True},
            "bare": {"type": "boolean", "default": False},
            "single_branch": {"type": "boolean", "default": False},
            "accept_hostkey": {"type": "boolean", "default": False},
            "accept_newhostkey": {"type": "boolean", "default": False},
            "key_file": {"type": "string"},
            "ssh_opts": {"type": "string"},
            "executable": {"type": "string"},
            "umask": {"type": "string", "pattern": "^0?[0-7]{1,4}$"},
            "refspec": {"type": "string", "minLength": 1},
            "recursive": {"type": "boolean", "default": True},
            "track_submodules": {"type": "boolean", "default": False},
        },
        "required": ["repo"],
        "additionalProperties": False,
        "x-aliases": {"name": "repo"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """The whole clone-or-update as one script; check mode only asks the remote."""
        repo = str(args["repo"])
        if repo.startswith("/") or repo.startswith("~/"):
            repo = "file://" + repo  # as Ansible: depth needs a protocol for local paths
        dest = str(args.get("dest") or "")
        if not dest and args.get("clone", True):
            raise InputError(
                "git: the destination directory must be specified unless clone=no",
                expected="dest: a path on the host",
            )
        settings = {
            "FAIL_MARKER": FAIL_MARKER,
            "CHECK": int(ctx.check),
            "git": args.get("executable") or "git",
            "repo": repo,
            "dest": dest,
            "version": args.get("version") or "HEAD",
            "remote": args.get("remote") or "origin",
            "force": int(bool(args.get("force"))),
            "depth": args.get("depth") or "",
            "clone": int(bool(args.get("clone", True))),
            "update": int(bool(args.get("update", True))),
            "bare": int(bool(args.get("bare"))),
            "single_branch": int(bool(args.get("single_branch"))),
            "ssh_command": self.ssh_command(args),
            "umask": args.get("umask") or "",
            "refspec": args.get("refspec") or "",
            "recursive": int(bool(args.get("recursive", True))),
            "track_submodules": int(bool(args.get("track_submodules"))),
        }
        lines = "".join(f"{key}={quote(value)}\n" for key, value in settings.items())
        # `~/` as Ansible's path arguments expand it: the home of the user the task runs as
        if dest.startswith("~/"):
            lines += f'dest="$HOME"/{quote(dest[2:])}\n'
        if repo.startswith("file://~/"):
            lines += f'repo=file://"$HOME"/{quote(repo[9:])}\n'
        return RemoteStep(lines + BODY)

    @staticmethod
    def ssh_command(args: Mapping[str, Any]) -> str:
        """GIT_SSH_COMMAND for key_file, ssh_opts (shell words, as in Ansible) and the
        host key options; "" when none is given."""
        options = str(args.get("ssh_opts") or "")
        if args.get("accept_hostkey") and "StrictHostKeyChecking" not in options:
            options += " -o StrictHostKeyChecking=no"
        if args.get("accept_newhostkey") and "StrictHostKeyChecking" not in options:
            options += " -o StrictHostKeyChecking=accept-new"
        if args.get("key_file"):
            options += f" -i {shlex.quote(str(args['key_file']))} -o IdentitiesOnly=yes"
        return f"ssh {options.strip()}" if options.strip() else ""

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """before/after SHAs; changed when HEAD moved (or would), mods discarded, URL set."""
        if output.exit_code != 0:
            return failure(output, "git")
        report, _ = parse_report(output.stdout)
        before = report.get("before") or None
        after = report.get("after") or None
        result: dict[str, Any] = {"before": before, "after": after}
        if "before" in report and args.get("update", True):
            result["remote_url_changed"] = report.get("remote_url_changed") == "1"
        if "warning" in report:
            result["warnings"] = [report["warning"]]
        changed = (
            report.get("changed") == "1"
            or before != after
            or report.get("local_mods") == "1"
            or report.get("remote_url_changed") == "1"
        )
        dest = args.get("dest") or args["repo"]
        if not changed:
            return Outcome("ok", msg=f"{dest} already at {after}", result=result)
        if report.get("cloned") == "1":
            msg = f"cloned {args['repo']} into {dest} at {after}"
        elif ctx.check:
            msg = f"{dest} would move from {before} to {after}"
        else:
            msg = f"{dest} moved from {before} to {after}"
        if report.get("local_mods") == "1" and not ctx.check:
            result["msg"] = f"Local modifications exist in the destination: {dest}"
        return Outcome("changed", msg=msg, result=result)
