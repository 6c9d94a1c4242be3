"""`apt_key`: a key in APT's keyrings through `apt-key`, as Ansible's `ansible.builtin.apt_key`.

One POSIX sh step on the host (apt-key and gpg, as Ansible's module needs; curl for `url`):
the key comes from `data` (sent on stdin), `file` (a path on the host), `url` (downloaded on
the host) or `keyserver` (with `id`). Without `id` the key's own ID is read from the key
(`gpg --show-keys`); with it, a key already there is neither read nor downloaded. The keys
there are listed (`apt-key adv --list-public-keys`; expired and revoked keys left out, as
Ansible does); the key is added only when its ID is missing, and removed (`apt-key del`) for
`state: absent` only when present. Results as Ansible's: `id`, `short_id`, `fp`, `key_id`,
`before`, `after`. `apt-key` is deprecated and gone from Debian 13 / Ubuntu 24.04: there the
task fails saying so (use deb822_repository's `signed_by`).
"""

from __future__ import annotations

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

# The script's stdout: `key=` lines (before), `id=` (when read from the key), `added=1` /
# `removed=1`, `after_key=` lines.
BODY = r"""set -f
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
mr_say() { printf '%s=%s\n' "$1" "$2"; }
for mr_bin in apt-key gpg; do
  command -v "$mr_bin" >/dev/null 2>&1 || mr_fail "$mr_bin is not installed on the host \
(apt-key is gone from Debian 13 and Ubuntu 24.04: use deb822_repository with signed_by)"
done
export LANG=C LC_ALL=C APT_KEY_DONT_WARN_ON_DANGEROUS_USAGE=1
set --
[ -n "$keyring" ] && set -- --keyring "$keyring"
mr_list() {  # long IDs and fingerprints of the keys that count, one `$1=...` a line
  apt-key "$@" adv --list-public-keys --with-colons --fingerprint 2>/dev/null | awk -F: '
    ($1 == "pub" || $1 == "sub") { ok = ($2 != "e" && $2 != "r"); if (ok) print "key=" $5 }
    $1 == "fpr" && ok { print "fpr=" $10 }'
}
mr_d=$(mktemp -d) || mr_fail "cannot create a temporary folder"
trap 'rm -rf -- "$mr_d"' EXIT
mr_src=
[ "$source" = data ] && { cat > "$mr_d/key"; mr_src=$mr_d/key; }
mr_fetch() {  # the key from file or url: only when it is needed (no download when present)
  if [ "$source" = file ]; then
    [ -r "$file" ] || mr_fail "Unable to extract key from '$file': no such readable file"
    mr_src=$file
  elif [ "$source" = url ]; then
    command -v curl >/dev/null 2>&1 || mr_fail "url needs curl on the host"
    mr_err=$(curl -fsSL $insecure --connect-timeout 30 -o "$mr_d/key" -- "$url" 2>&1) \
      || mr_fail "Failed to download key at $url: $mr_err"
    mr_src=$mr_d/key
  fi
}
if [ -z "$id" ]; then
  mr_fetch
  [ -n "$mr_src" ] || mr_fail "Missing key_id, required with keyserver."
  id=$(gpg --batch --with-colons --show-keys < "$mr_src" 2>/dev/null \
    | awk -F: '$1 == "pub" { print $5; exit }')
  [ -n "$id" ] || mr_fail "Unable to extract key from '${file:-inline data}'"
  mr_say id "$id"
fi
mr_list "$@" > "$mr_d/before"
cat "$mr_d/before"
mr_has() {  # is $id (8, 16 or 40 hex digits) among the listed keys?
  awk -F= -v id="$id" '
    { v = toupper($2) }
    length(id) == 8 && $1 == "key" && substr(v, 9) == id { f = 1 }
    length(id) == 16 && $1 == "key" && v == id { f = 1 }
    length(id) > 16 && $1 == "fpr" && v == id { f = 1 }
    length(id) > 16 && $1 == "key" && v == substr(id, length(id) - 15) { f = 1 }
    END { exit !f }' "$1"
}
mr_upper() { printf '%s' "$1" | tr a-f A-F; }
id=$(mr_upper "$id"); id=${id#0X}
if [ "$state" = present ]; then
  mr_has "$mr_d/before" && exit 0
  mr_say added 1
  [ "$CHECK" = 1 ] && exit 0
  if [ "$source" = keyserver ]; then
    mr_out=$(apt-key "$@" adv --no-tty --keyserver "$keyserver" --recv "$id" 2>&1) \
      || mr_fail "error fetching key $id from $keyserver: $mr_out"
  else
    [ -n "$mr_src" ] || mr_fetch
    mr_out=$(apt-key "$@" add - < "$mr_src" 2>&1) \
      || mr_fail "Unable to add a key from binary data: $mr_out"
  fi
  mr_list "$@" > "$mr_d/after"
  sed 's/^/after_/' "$mr_d/after"
  mr_has "$mr_d/after" || mr_fail "apt-key did not return an error, but failed to add the key \
(check that the id is correct and *not* a subkey)"
else
  mr_has "$mr_d/before" || exit 0
  mr_say removed 1
  [ "$CHECK" = 1 ] && exit 0
  mr_short=$(printf '%s' "$id" | awk '{ print substr($0, length($0) - 7) }')
  mr_out=$(apt-key "$@" del "$mr_short" 2>&1) \
    || mr_fail "Unable to remove a key with id $mr_short: $mr_out"
  mr_list "$@" > "$mr_d/after"
  sed 's/^/after_/' "$mr_d/after"
  ! mr_has "$mr_d/after" || mr_fail "apt-key did not return an error, but the key was not \
removed (check that the id is correct and *not* a subkey)"
fi
exit 0
"""


def parse_key_id(key_id: str) -> tuple[str, str, str]:
    """(short_id, fingerprint, key_id) as Ansible's module derives them; ValueError if bad."""
    int(key_id, 16)
    key_id = key_id.upper().removeprefix("0X")
    if len(key_id) not in (8, 16) and len(key_id) <= 16:
        raise ValueError("key_id must be 8, 16, or 16+ hexadecimal characters in length")
    return key_id[-8:], key_id, key_id[-16:] if len(key_id) > 16 else key_id


class AptKeyModule(Module):
    """`apt_key`: id, data, file, url, keyserver, keyring, state, validate_certs."""

    name: ClassVar[str] = "apt_key"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "data": {"type": "string"},
            "file": {"type": "string"},
            "url": {"type": "string"},
            "keyserver": {"type": "string"},
            "keyring": {"type": "string"},
            "state": {"enum": ["present", "absent"], "default": "present"},
            "validate_certs": {"type": "boolean", "default": True},
        },
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """List, compare, add or delete: one script."""
        sources = [key for key in ("data", "file", "keyserver", "url") if args.get(key)]
        if len(sources) > 1:
            raise InputError(
                f"apt_key: parameters are mutually exclusive: {', '.join(sources)}",
                expected="one of data, file, keyserver, url",
            )
        key_id = str(args.get("id") or "")
        if key_id:
            try:
                parse_key_id(key_id)
            except ValueError:
                raise InputError(
                    f"apt_key: Invalid key_id {key_id!r}",
                    expected="8, 16 or 40 hexadecimal digits",
                ) from None
        elif args.get("keyserver"):
            raise InputError("apt_key: Missing key_id, required with keyserver.")
        elif not sources:
            raise InputError("apt_key: no key given", expected="id, data, file, url or keyserver")
        settings = {
            "FAIL_MARKER": FAIL_MARKER,
            "CHECK": int(ctx.check),
            "state": args.get("state") or "present",
            "source": sources[0] if sources else "",
            "id": key_id,
            "file": args.get("file") or "",
            "url": args.get("url") or "",
            "keyserver": args.get("keyserver") or "",
            "keyring": args.get("keyring") or "",
        }
        lines = "".join(f"{key}={quote(value)}\n" for key, value in settings.items())
        lines += "insecure=" + ("" if args.get("validate_certs", True) else "--insecure") + "\n"
        data = args.get("data")
        stdin = str(data).encode() if data else None
        return RemoteStep(lines + BODY, stdin=stdin)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """id, short_id, fp, key_id, before, after; changed when added or removed."""
        if output.exit_code != 0:
            return failure(output, "apt_key")
        report, _ = parse_report(output.stdout)
        lines = output.stdout.splitlines()
        key_id = str(args.get("id") or report.get("id", ""))
        short_id, fingerprint, long_id = parse_key_id(key_id)
        short = len(long_id) == 8

        def ids(prefix: str) -> list[str]:
            found = [line.split("=", 1)[1] for line in lines if line.startswith(prefix)]
            return [k[-8:] for k in found] if short else found

        result: dict[str, Any] = {
            "id": key_id,
            "short_id": short_id,
            "fp": fingerprint,
            "key_id": long_id,
            "before": ids("key="),
        }
        if (report.get("added") == "1" or report.get("removed") == "1") and not ctx.check:
            result["after"] = ids("after_key=")
        if report.get("added") == "1":
            verb = "would be added" if ctx.check else "added"
            return Outcome("changed", msg=f"key {long_id} {verb}", result=result)
        if report.get("removed") == "1":
            verb = "would be removed" if ctx.check else "removed"
            return Outcome("changed", msg=f"key {long_id} {verb}", result=result)
        state = "present" if (args.get("state") or "present") == "present" else "absent"
        return Outcome("ok", msg=f"key {long_id} already {state}", result=result)
