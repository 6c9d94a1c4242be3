"""`authorized_key`: manage a user's SSH authorized keys, as Ansible's module.

Keys are matched by key type and blob, never by the whole line: a key whose options or
comment change is rewritten in place (a key that was `no-pty` becomes `command="..."`,
nothing is duplicated), other users' keys are left alone unless `exclusive`. One round trip:
the wanted key lines travel on stdin and awk merges them into the current file on the host
(the merge needs the old content, which only the host has); `mr_put` installs the result
atomically, mode 0600, owned by the user.
"""

from __future__ import annotations

import base64
import binascii
import re
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

KEY_TYPES = (
    r"(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)"
    r"|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com"
    r"|(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521))-cert-v01@openssh\.com)"
)
_KEY_TYPE = re.compile(f"^{KEY_TYPES}$")
_BLOB = re.compile(r"^[A-Za-z0-9+/]+={0,3}$")

# First input (stdin): the wanted key lines; second: the current file. A line's identity is
# "type blob": the first field that is a key type and the one after it (options come before,
# and quoted option values may hold spaces, so fields are scanned rather than counted).
AWK = (
    r"""
function keyid(s,   a, k, i) {
  if (s ~ /^[ \t]*(#|$)/) return ""
  k = split(s, a, /[ \t]+/)
  for (i = 1; i < k; i++) if (a[i] ~ /^"""
    + KEY_TYPES
    + r"""$/) return a[i] " " a[i + 1]
  return ""
}
BEGIN { absent = ENVIRON["MR_STATE"] == "absent"; exclusive = ENVIRON["MR_EXCLUSIVE"] == 1 }
FILENAME == "-" {
  k = keyid($0); if (k != "" && !(k in want)) { want[k] = $0; order[++nw] = k }; next
}
{ L[++n] = $0 }
END {
  for (i = 1; i <= n; i++) {
    k = keyid(L[i])
    if (k != "" && (k in want)) {
      if (absent || (k in seen)) continue
      seen[k] = 1; print want[k]
    } else if (k != "" && exclusive) continue
    else print L[i]
  }
  if (!absent) for (j = 1; j <= nw; j++) if (!(order[j] in seen)) print want[order[j]]
}
"""
)


def parse_key_line(line: str, options: str | None, comment: str | None = None) -> str:
    """One key line as it should appear: `[options ]type blob[ comment]`.

    `options` (key_options) replaces any options the line had, and `comment` its comment
    (an empty one removes it), as in Ansible.
    """
    words = line.split()
    for i, word in enumerate(words[:-1]):
        if _KEY_TYPE.match(word):
            if not _BLOB.match(words[i + 1]):
                break
            own = line.strip().split(word, 1)[0].strip()
            opts = options if options is not None else own
            key = " ".join(words[i:] if comment is None else [*words[i : i + 2], comment])
            key = key.rstrip()
            return f"{opts} {key}" if opts else key
    raise InputError(
        f"authorized_key: not an SSH public key: {line[:60]!r}",
        expected="a line like 'ssh-ed25519 AAAA... comment'",
    )


def wanted_lines(args: Mapping[str, Any]) -> list[str]:
    """The key lines from `key` (one or several lines; blank and # lines skipped)."""
    options = args.get("key_options")
    if options is not None and ("\n" in options or not options.strip()):
        raise InputError("authorized_key: key_options must be one non-empty line")
    comment = args.get("comment")
    if comment is not None and "\n" in comment:
        raise InputError("authorized_key: comment must be one line")
    lines = [
        parse_key_line(line, options, comment)
        for line in str(args["key"]).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError("authorized_key: key holds no key")
    return lines


class AuthorizedKeyModule(Module):
    """Add or remove SSH keys in a user's authorized_keys file."""

    name: ClassVar[str] = "authorized_key"
    aliases: ClassVar[tuple[str, ...]] = ("ansible.posix.authorized_key",)
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "user": {"type": "string", "minLength": 1},
            "key": {"type": "string", "minLength": 1},
            "key_options": {"type": "string"},
            "state": {"enum": ["present", "absent"], "default": "present"},
            "exclusive": {"type": "boolean", "default": False},
            "path": {"type": "string", "minLength": 1},
            "manage_dir": {"type": "boolean", "default": True},
            "comment": {"type": "string"},
            "follow": {"type": "boolean", "default": False},
            # Only for keys fetched from a URL, which machineroom does not fetch: accepted.
            "validate_certs": {"type": "boolean", "default": True},
        },
        "required": ["user", "key"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Resolve the user, prepare ~/.ssh, merge the keys with awk, install the file."""
        lines = wanted_lines(args)
        state = args.get("state", "present")
        path = args.get("path")
        user = args["user"]
        label = path or f"~{user}/.ssh/authorized_keys"
        script = [
            files_sh.LIBRARY,
            files_sh.common_vars(ctx.check, ctx.diff, label),
            files_sh.validate_vars(None),
            "backup=0 mode=600 mode_sym=0\n",
            f"user={quote(user)} path={quote(path or '')}\n",
            f"manage_dir={int(args.get('manage_dir', True))}\n",
            f"MR_STATE={quote(state)} MR_EXCLUSIVE={int(bool(args.get('exclusive')))}\n",
            "export MR_STATE MR_EXCLUSIVE\n",
            # getent knows NSS users (LDAP, ...); /etc/passwd is the fallback without it.
            'pw=$(getent passwd -- "$user" 2>/dev/null) '
            "|| pw=$(awk -F: -v u=\"$user\" '$1 == u' /etc/passwd)\n"
            '[ -n "$pw" ] || { cat >/dev/null; mr_fail "no such user: $user"; }\n'
            "owner=$(printf '%s\\n' \"$pw\" | cut -d: -f3)\n"
            "group=$(printf '%s\\n' \"$pw\" | cut -d: -f4)\n"
            "home=$(printf '%s\\n' \"$pw\" | cut -d: -f6)\n"
            'if [ -z "$path" ]; then path=$home/.ssh/authorized_keys; fi\n',
            # follow: write through a symlink to its target (else the link is replaced).
            f"follow={int(bool(args.get('follow')))}\n"
            'if [ "$follow" = 1 ] && [ -L "$path" ]; then path=$(readlink -f -- "$path"); fi\n'
            "mr_say keyfile \"$(printf '%s' \"$path\" | base64 | tr -d '\\n')\"\n",
            f"dir={quote(files_sh.folder(path))}\n" if path else "dir=$home/.ssh\n",
            # The folder: created 0700 and owned by the user (manage_dir), or left alone.
            'if [ ! -d "$dir" ]; then\n'
            '  if [ "$manage_dir" = 0 ] || [ "$MR_STATE" = absent ]; then\n'
            "    cat >/dev/null\n"
            '    [ "$MR_STATE" = absent ] && { mr_say missing 1; exit 0; }\n'
            '    mr_fail "$dir does not exist (manage_dir is off)"\n'
            "  fi\n"
            "  mr_say dir_changed 1\n"
            '  if [ "$CHECK" = 0 ]; then\n'
            '    mkdir -p -- "$dir" && chmod 700 "$dir" && chown "$owner:$group" "$dir" '
            '|| mr_fail "cannot create $dir"\n'
            "  fi\n"
            'elif [ "$manage_dir" = 1 ] && [ "$MR_STATE" = present ]; then\n'
            '  mr_attrs "$dir" || mr_fail "cannot stat $dir"\n'
            '  if [ "$cur_mode" != 700 ] || [ "$cur_uid" != "$owner" ]; then\n'
            "    mr_say dir_changed 1\n"
            '    if [ "$CHECK" = 0 ]; then\n'
            '      chmod 700 "$dir" && chown "$owner:$group" "$dir" || mr_fail "cannot fix $dir"\n'
            "    fi\n"
            "  fi\n"
            "fi\n"
            'src=$path; [ -e "$path" ] || src=/dev/null\n'
            'if [ "$MR_STATE" = absent ] && [ "$src" = /dev/null ]; then\n'
            "  cat >/dev/null; mr_say missing 1; exit 0; fi\n"
            'if [ -d "$dir" ]; then mr_tmp_near "$dir"; else mr_t1=$(mktemp); fi\n',
            f'awk {quote(AWK)} - "$src" >"$mr_t1" || mr_fail "awk failed on $path"\n',
            'mr_put "$mr_t1" "$path"\n',
        ]
        stdin = "".join(line + "\n" for line in lines).encode()
        return RemoteStep("".join(script), stdin=stdin)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when a key line, the file's attributes or the .ssh folder changed."""
        label = args.get("path") or f"~{args['user']}/.ssh/authorized_keys"
        if output.exit_code != 0:
            return files_sh.failure(output, "authorized_key")
        report, diff_text = files_sh.parse_report(output.stdout)
        keys = [line.split() for line in wanted_lines(args)]
        result: dict[str, Any] = {
            "user": args["user"],
            "keys": len(keys),
            "key": args["key"],
            "keyfile": _unb64(report.get("keyfile", "")) or label,
            "path": args.get("path"),
            "state": args.get("state", "present"),
            "exclusive": bool(args.get("exclusive")),
            "manage_dir": args.get("manage_dir", True),
            "key_options": args.get("key_options"),
            "comment": args.get("comment"),
            "follow": bool(args.get("follow")),
        }
        if report.get("missing") == "1":
            return Outcome("ok", msg=f"{label} does not exist: no key to remove", result=result)
        changed, diff, file_result = files_sh.file_outcome(
            label, report, diff_text, check=ctx.check, want_diff=ctx.diff
        )
        result.update(file_result)
        dir_changed = report.get("dir_changed") == "1"
        if dir_changed and ctx.diff:
            diff += f"--- before: {label} folder\n+++ after: {label} folder\n"
            diff += "-(missing or not 0700/owned by the user)\n+0700, owned by the user\n"
        if not (changed or dir_changed):
            return Outcome("ok", msg=f"{label} already matches", result=result)
        prefix = "would update" if ctx.check else "updated"
        return Outcome("changed", msg=f"{prefix} {label}", diff=diff, result=result)


def _unb64(text: str) -> str:
    try:
        return base64.b64decode(text).decode(errors="replace")
    except (ValueError, binascii.Error):
        return ""
