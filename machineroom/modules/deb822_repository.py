"""`deb822_repository`: a deb822 `.sources` file, as Ansible's `ansible.builtin.deb822_repository`.

The file is /etc/apt/sources.list.d/<slug>.sources, where the slug is `name` lower-cased,
`_` and spaces as `-`, other characters dropped, as Ansible's module names it; its text is
what Ansible's (python-debian's Deb822) writes: the given fields sorted by argument name,
`name` as `X-Repolib-Name`, `uris` as `URIs`, others Title-Cased (`signed_by` ->
`Signed-By`), lists joined by spaces, booleans yes/no, a multi-line value (an inline key)
indented with `.` for empty lines. A `signed_by` URL is downloaded on the host (curl) into
/etc/apt/keyrings/<slug>.asc (armored) or .gpg, and the field names that file. One POSIX
sh step: compare, write only when different (atomic rename), `mode` (default 0644).
`state: absent` removes the file and the slug's keyrings. Check mode changes nothing.
Results: `repo` (the text), `dest`, `key_filename`.
"""

from __future__ import annotations

import base64
import re
import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlparse

from machineroom.errors import InputError
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)
from machineroom.modules.files_sh import (
    DIFF_MARKER,
    FAIL_MARKER,
    failure,
    parse_mode,
    parse_report,
)

SOURCES_DIR = "/etc/apt/sources.list.d"
KEYRINGS_DIR = "/etc/apt/keyrings"
KEY_URL_MARK = "@@machineroom-signed-by@@"

_LIST = {"type": "array", "items": {"type": "string"}}
_BOOL = {"type": "boolean"}
FIELDS: dict[str, Any] = {
    "allow_downgrade_to_insecure": _BOOL,
    "allow_insecure": _BOOL,
    "allow_weak": _BOOL,
    "architectures": _LIST,
    "by_hash": _BOOL,
    "check_date": _BOOL,
    "check_valid_until": _BOOL,
    "components": _LIST,
    "date_max_future": {"type": "integer"},
    "enabled": _BOOL,
    "inrelease_path": {"type": "string"},
    "languages": _LIST,
    "name": {"type": "string", "minLength": 1},
    "pdiffs": _BOOL,
    "signed_by": {"type": "string"},
    "suites": _LIST,
    "targets": _LIST,
    "trusted": _BOOL,
    "types": {"type": "array", "items": {"enum": ["deb", "deb-src"]}, "default": ["deb"]},
    "uris": _LIST,
}

BODY = r"""set -f
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
mr_say() { printf '%s=%s\n' "$1" "$2"; }
mr_ch=0
if [ "$state" = absent ]; then
  for mr_f in "$dest" "$keybase.asc" "$keybase.gpg"; do
    if [ -e "$mr_f" ] || [ -h "$mr_f" ]; then
      mr_ch=1
      [ "$CHECK" = 1 ] || rm -f -- "$mr_f" || mr_fail "cannot remove $mr_f"
    fi
  done
  mr_say changed "$mr_ch"; exit 0
fi
mr_d=$(mktemp -d) || mr_fail "cannot create a temporary folder"
trap 'rm -rf -- "$mr_d"' EXIT
mr_put() {  # mr_put NEW DEST: atomic replace, the old file's mode kept
  mr_t=$(mktemp -- "$(dirname -- "$2")/.machineroom.XXXXXXXX") || mr_fail "cannot write near $2"
  cat -- "$1" > "$mr_t" && chmod 0644 "$mr_t" && mv -f -- "$mr_t" "$2" \
    || { rm -f -- "$mr_t"; mr_fail "cannot write $2"; }
}
if [ -n "$key_url" ] && [ ! -f "$key_url" ]; then
  command -v curl >/dev/null 2>&1 || mr_fail "Could not fetch signed_by key: curl is not \
installed on the host"
  mr_err=$(curl -fsSL --connect-timeout 30 -o "$mr_d/key" -- "$key_url" 2>&1) \
    || mr_fail "Could not fetch signed_by key: $mr_err"
  if [ -s "$mr_d/key" ]; then
    if grep -q -e '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$mr_d/key"; then mr_ext=asc
    else mr_ext=gpg; fi
    mr_key=$keybase.$mr_ext
    mr_say key_filename "$mr_key"
    content=$(printf '%s' "$content" | awk -v k="$mr_key" -v m="$KEY_URL_MARK" \
      '{ i = index($0, m); if (i) $0 = substr($0, 1, i - 1) k substr($0, i + length(m)); print }')
    if [ ! -d "$KEYRINGS_DIR" ]; then
      mr_ch=1
      [ "$CHECK" = 1 ] || mkdir -m 0755 -p -- "$KEYRINGS_DIR" \
        || mr_fail "cannot create $KEYRINGS_DIR"
    fi
    if ! cmp -s "$mr_d/key" "$mr_key"; then
      mr_ch=1
      [ "$CHECK" = 1 ] || mr_put "$mr_d/key" "$mr_key"
    elif [ "$(stat -c %a -- "$mr_key")" != 644 ]; then
      mr_ch=1
      [ "$CHECK" = 1 ] || chmod 0644 "$mr_key"
    fi
  else
    content=$(printf '%s' "$content" | awk -v k="$key_url" -v m="$KEY_URL_MARK" \
      '{ i = index($0, m); if (i) $0 = substr($0, 1, i - 1) k substr($0, i + length(m)); print }')
  fi
  content="$content
"
fi
printf '%s' "$content" > "$mr_d/new" || mr_fail "cannot write in $mr_d"
printf 'repo=%s\n' "$(base64 -w0 < "$mr_d/new")"
mr_old=/dev/null
[ -f "$dest" ] && mr_old=$dest
if ! cmp -s "$mr_d/new" "$dest"; then
  mr_ch=1
  mr_say content 1
fi
if [ -e "$dest" ] && [ "$(stat -c %a -- "$dest")" != "$mode" ]; then mr_ch=1; mr_say mode 1; fi
mr_say changed "$mr_ch"
printf '%s\n' "$DIFF_MARKER"
if [ "$DIFF" = 1 ]; then
  diff -u -L "before: $dest" -L "after: $dest" -- "$mr_old" "$mr_d/new"
fi
[ "$CHECK" = 0 ] || exit 0
cmp -s "$mr_d/new" "$dest" || mr_put "$mr_d/new" "$dest"
chmod "$mode" "$dest" || mr_fail "cannot chmod $mode $dest"
exit 0
"""


def slug_of(name: str) -> str:
    """`name` as Ansible's module turns it into a file name."""
    return re.sub(r"[^a-z0-9-]+", "", re.sub(r"[_\s]+", "-", name.lower()))


def field_name(argument: str) -> str:
    """The deb822 field an argument writes."""
    if argument == "name":
        return "X-Repolib-Name"
    if argument == "uris":
        return "URIs"
    return argument.replace("_", "-").title()


def field_value(value: Any) -> str:
    """A value as the module writes it (Deb822: a multi-line value indented, `.` for blank)."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, list):
        text = " ".join(str(v) for v in value)
    else:
        text = str(value)
    if "\n" in text:
        lines = (line.strip() or "." for line in text.strip().splitlines())
        text = "\n" + textwrap.indent("\n".join(lines), "    ")
    return text


def render(args: Mapping[str, Any], signed_by: str | None) -> str:
    """The .sources text for these arguments (`signed_by` already resolved)."""
    out = []
    for key in sorted(FIELDS):
        value = signed_by if key == "signed_by" else args.get(key)
        if key == "types" and value is None:
            value = ["deb"]
        if value is None:
            continue
        text = field_value(value)
        sep = ":" if not text or text.startswith("\n") else ": "
        out.append(f"{field_name(key)}{sep}{text}\n")
    return "".join(out)


class Deb822RepositoryModule(Module):
    """`deb822_repository`: name, types, uris, suites, components, signed_by, enabled,
    architectures, languages, targets, trusted, pdiffs, by_hash, allow_insecure,
    allow_weak, allow_downgrade_to_insecure, check_date, check_valid_until,
    date_max_future, inrelease_path, mode, state."""

    name: ClassVar[str] = "deb822_repository"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **FIELDS,
            "mode": {"type": ["string", "integer"], "default": "0644"},
            "state": {"enum": ["present", "absent"], "default": "present"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """One script: keyring download (for a URL), compare, write, mode."""
        slug = slug_of(str(args["name"]))
        if not slug:
            raise InputError(
                f"deb822_repository: name {args['name']!r} leaves no file name",
                expected="a name with letters or digits",
            )
        mode, symbolic = parse_mode(args.get("mode", "0644"))
        if symbolic:
            raise InputError(
                f"deb822_repository: mode {args.get('mode')!r}", expected="an octal mode"
            )
        signed_by = args.get("signed_by")
        key_url = ""
        if signed_by is not None and "\n" not in str(signed_by) and urlparse(signed_by).scheme:
            key_url, signed_by = str(signed_by), KEY_URL_MARK
        settings = {
            "FAIL_MARKER": FAIL_MARKER,
            "DIFF_MARKER": DIFF_MARKER,
            "KEY_URL_MARK": KEY_URL_MARK,
            "KEYRINGS_DIR": KEYRINGS_DIR,
            "CHECK": int(ctx.check),
            "DIFF": int(ctx.diff),
            "state": args.get("state") or "present",
            "dest": f"{SOURCES_DIR}/{slug}.sources",
            "keybase": f"{KEYRINGS_DIR}/{slug}",
            "key_url": key_url,
            "content": render(args, signed_by),
            "mode": mode or "644",
        }
        lines = "".join(f"{key}={quote(value)}\n" for key, value in settings.items())
        return RemoteStep(lines + BODY)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """repo, dest, key_filename; changed when the file, its mode or the key differed."""
        if output.exit_code != 0:
            return failure(output, "deb822_repository")
        report, diff = parse_report(output.stdout)
        slug = slug_of(str(args["name"]))
        dest = f"{SOURCES_DIR}/{slug}.sources"
        changed = report.get("changed") == "1"
        if (args.get("state") or "present") == "absent":
            result = {"repo": None, "dest": dest, "key_filename": f"{KEYRINGS_DIR}/{slug}.gpg"}
            verb = "would be removed" if ctx.check else "removed"
            return Outcome(
                "changed" if changed else "ok",
                msg=f"{dest} {verb}" if changed else f"{dest} already absent",
                result=result,
            )
        repo = base64.b64decode(report.get("repo", "")).decode("utf-8", "replace")
        result = {"repo": repo, "dest": dest, "key_filename": report.get("key_filename")}
        if not changed:
            return Outcome("ok", msg=f"{dest} already matches", result=result)
        verb = "would be written" if ctx.check else "written"
        return Outcome("changed", msg=f"{dest} {verb}", diff=diff, result=result)
