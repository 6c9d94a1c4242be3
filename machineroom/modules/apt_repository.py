"""`apt_repository`: one-line APT sources, as Ansible's `ansible.builtin.apt_repository`.

One POSIX sh step (awk, no python3-apt on the host) that reads /etc/apt/sources.list and
/etc/apt/sources.list.d/*.list as Ansible's module does: every line parsed into enabled
(`#` disables), source (words joined by one space) and comment (after a later `#`).
- present: every line with the same source (disabled ones too) is enabled; without one,
  the line is added to `filename`.list, or to the file Ansible names after the URL
  (`deb http://dl.example.com/apt stable main` -> dl_example_com_apt.list), made with
  `mode` (default 0644);
- absent: every enabled line with the source is removed; a file left with no line goes.
Changed when the parsed files differ; the files are then written back as Ansible writes
them (normalized lines). With `update_cache` (default true, as in Ansible) a change runs
`apt-get update` (retried), and restores the files when it keeps failing. Check mode and
--diff show the change without making it. Results: `repo`, `state`, `sources_added`,
`sources_removed`. A `ppa:` line needs Launchpad over the network: refused here.
"""

from __future__ import annotations

import re
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
from machineroom.modules.files_sh import (
    DIFF_MARKER,
    FAIL_MARKER,
    failure,
    parse_mode,
    parse_report,
)

SOURCES_LIST = "/etc/apt/sources.list"
SOURCES_DIR = "/etc/apt/sources.list.d"
VALID_TYPES = ("deb", "deb-src")

# One file through Ansible's parse and dump; op: none (normalize), present, absent.
# Values come through the environment (awk -v would interpret backslashes).
NORMALIZE = r"""
function trim(s) { sub(/^[[:space:]]+/, "", s); sub(/[[:space:]]+$/, "", s); return s }
{
  line = trim($0); enabled = 1
  if (substr(line, 1, 1) == "#") { enabled = 0; line = substr(line, 2) }
  comment = ""
  i = index(line, "#")
  if (i > 1) { comment = trim(substr(line, i + 1)); line = substr(line, 1, i - 1) }
  source = trim(line); valid = 0
  if (source != "") {
    n = split(source, ch, /[[:space:]]+/)
    if (ch[1] == "deb" || ch[1] == "deb-src") {
      valid = 1; source = ch[1]
      for (k = 2; k <= n; k++) source = source " " ch[k]
    }
  }
  if (mode == "find") { if (valid && source == ENVIRON["MR_SRC"]) found = 1; next }
  if (mode == "present" && valid && source == ENVIRON["MR_SRC"]) enabled = 1
  if (mode == "absent" && valid && enabled && source == ENVIRON["MR_SRC"]) next
  print (enabled ? "" : "# ") source (comment != "" ? " # " comment : "")
}
END { if (mode == "find") print found + 0 }
"""

BODY = r"""
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
mr_say() { printf '%s=%s\n' "$1" "$2"; }
export MR_SRC
mr_d=$(mktemp -d) || mr_fail "cannot create a temporary folder"
trap 'rm -rf -- "$mr_d"' EXIT
mr_files=
[ -f /etc/apt/sources.list ] && mr_files=/etc/apt/sources.list
for mr_f in /etc/apt/sources.list.d/*.list; do
  [ -f "$mr_f" ] && mr_files="$mr_files
$mr_f"
done
set -f
IFS='
'
mr_found=0
if [ "$op" = present ] && [ -n "$mr_files" ]; then
  mr_found=$(awk -v mode=find "$NORMALIZE" $mr_files) || mr_fail "cannot read the sources"
fi
mr_known=0
for mr_f in $mr_files; do [ "$mr_f" = "$target" ] && mr_known=1; done
mr_all=$mr_files
if [ "$op" = present ] && [ "$mr_found" = 0 ] && [ "$mr_known" = 0 ]; then
  mr_all="$mr_all
$target"
fi
mr_n=0 mr_changed=0
for mr_f in $mr_all; do
  [ -n "$mr_f" ] || continue
  mr_n=$((mr_n + 1))
  # a target outside the files APT reads is not read either (Ansible: written anew)
  if [ -f "$mr_f" ] && { [ "$mr_f" != "$target" ] || [ "$mr_known" = 1 ]; }; then
    awk -v mode=none "$NORMALIZE" "$mr_f" > "$mr_d/b$mr_n" || mr_fail "cannot read $mr_f"
    awk -v mode="$op" "$NORMALIZE" "$mr_f" > "$mr_d/a$mr_n"
  else
    : > "$mr_d/b$mr_n"; : > "$mr_d/a$mr_n"
  fi
  if [ "$op" = present ] && [ "$mr_found" = 0 ] && [ "$mr_f" = "$target" ]; then
    printf '%s\n' "$MR_SRC" >> "$mr_d/a$mr_n"
  fi
  if ! cmp -s "$mr_d/b$mr_n" "$mr_d/a$mr_n"; then
    mr_changed=1
    [ -s "$mr_d/b$mr_n" ] || mr_say added "$mr_f"
    [ -s "$mr_d/a$mr_n" ] || mr_say removed "$mr_f"
  fi
done
mr_say changed "$mr_changed"
printf '%s\n' "$DIFF_MARKER"
if [ "$DIFF" = 1 ] && [ "$mr_changed" = 1 ]; then
  mr_n=0
  for mr_f in $mr_all; do
    [ -n "$mr_f" ] || continue
    mr_n=$((mr_n + 1))
    diff -u -L "before: $mr_f" -L "after: $mr_f" "$mr_d/b$mr_n" "$mr_d/a$mr_n"
  done
fi
[ "$mr_changed" = 1 ] && [ "$CHECK" = 0 ] || exit 0
# write every file back as Ansible's save() does; keep the originals to restore
mr_n=0
for mr_f in $mr_all; do
  [ -n "$mr_f" ] || continue
  mr_n=$((mr_n + 1))
  mr_real=$mr_f
  [ -h "$mr_f" ] && mr_real=$(readlink -f -- "$mr_f")
  if [ ! -s "$mr_d/a$mr_n" ]; then
    [ -e "$mr_f" ] && { cp -p -- "$mr_real" "$mr_d/o$mr_n"; rm -f -- "$mr_f"; }
    continue
  fi
  [ -f "$mr_real" ] && cmp -s "$mr_d/a$mr_n" "$mr_real" && continue
  mr_dir=$(dirname -- "$mr_real")
  mkdir -p -- "$mr_dir" || mr_fail "cannot create $mr_dir"
  mr_t=$(mktemp -- "$mr_dir/.machineroom.XXXXXXXX") || mr_fail "cannot write in $mr_dir"
  cat -- "$mr_d/a$mr_n" > "$mr_t"
  if [ -f "$mr_real" ]; then
    cp -p -- "$mr_real" "$mr_d/o$mr_n"
    chmod "$(stat -c %a -- "$mr_real")" "$mr_t"
    chown "$(stat -c %u:%g -- "$mr_real")" "$mr_t" 2>/dev/null
  else
    chmod 0644 "$mr_t"
  fi
  mv -f -- "$mr_t" "$mr_real" || { rm -f -- "$mr_t"; mr_fail "cannot write $mr_real"; }
done
if [ "$op" = present ] && [ "$mr_found" = 0 ] && [ -f "$target" ]; then
  chmod "$mode" "$target" || mr_fail "cannot chmod $mode $target"
fi
mr_restore() {
  mr_n=0
  for mr_f in $mr_all; do
    [ -n "$mr_f" ] || continue
    mr_n=$((mr_n + 1))
    if [ -f "$mr_d/o$mr_n" ]; then cp -p -- "$mr_d/o$mr_n" "$mr_f"; else rm -f -- "$mr_f"; fi
  done
}
if [ "$update_cache" = 1 ]; then
  mr_try=0 mr_delay=1
  until mr_out=$(apt-get update -q 2>&1); do
    mr_try=$((mr_try + 1))
    if [ "$mr_try" -ge "$retries" ]; then
      mr_restore
      mr_fail "Failed to update apt cache after $retries retries: $(printf '%s\n' "$mr_out" \
        | tail -n 3)"
    fi
    sleep "$mr_delay"
    mr_delay=$((mr_delay * 2)); [ "$mr_delay" -le "$max_delay" ] || mr_delay=$max_delay
  done
fi
exit 0
"""


def parse_source(line: str) -> str:
    """A repository line as Ansible's `_parse` reads it: comment dropped, words joined by one
    space; an InputError for a disabled or non-deb line."""
    text = line.strip()
    if text.startswith("#"):
        raise InputError(f"Invalid repository string: {line}", expected="an enabled deb line")
    at = text.find("#")
    if at > 0:
        text = text[:at]
    words = text.split()
    if not words or words[0] not in VALID_TYPES:
        raise InputError(
            f"Invalid repository string: {line}",
            expected="'deb URI SUITE [COMPONENT...]' or 'deb-src ...'",
        )
    return " ".join(words)


def suggested_filename(source: str, filename: str | None) -> str:
    """The file a new source goes in, named as Ansible names it."""
    if filename is None:
        line = re.sub(r"\[[^\]]+\]", "", source)
        line = re.sub(r"\w+://", "", line)
        parts = [part for part in line.split() if part not in VALID_TYPES]
        first = parts[0].split("@", 1)[-1] if parts else ""
        filename = "_".join(re.sub("[^a-zA-Z0-9]", " ", first).split())
    name = f"{filename}.list"
    return name if "/" in name else f"{SOURCES_DIR}/{name}"


class AptRepositoryModule(Module):
    """`apt_repository`: repo, state, filename, mode, update_cache, update_cache_retries,
    update_cache_retry_max_delay, codename, validate_certs, install_python_apt."""

    name: ClassVar[str] = "apt_repository"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "repo": {"type": "string", "minLength": 1},
            "state": {"enum": ["present", "absent"], "default": "present"},
            "filename": {"type": "string", "minLength": 1},
            "mode": {"type": ["string", "integer"]},
            "update_cache": {"type": "boolean", "default": True},
            "update_cache_retries": {"type": "integer", "minimum": 1, "default": 5},
            "update_cache_retry_max_delay": {"type": "integer", "minimum": 0, "default": 12},
            "codename": {"type": "string"},
            "validate_certs": {"type": "boolean", "default": True},
            "install_python_apt": {"type": "boolean", "default": True},
        },
        "required": ["repo"],
        "additionalProperties": False,
        "x-aliases": {"update-cache": "update_cache"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """The whole read-compare-write as one script."""
        repo = str(args["repo"])
        if repo.strip().startswith("ppa:"):
            raise InputError(
                f"apt_repository: {repo}: PPAs need Launchpad's API over the network, which "
                "machineroom's apt_repository does not use",
                expected="the PPA's deb line (deb https://ppa.launchpadcontent.net/OWNER/"
                "NAME/ubuntu CODENAME main) and its key",
            )
        source = parse_source(repo)
        mode, _symbolic = parse_mode(args.get("mode"))
        settings = {
            "FAIL_MARKER": FAIL_MARKER,
            "DIFF_MARKER": DIFF_MARKER,
            "CHECK": int(ctx.check),
            "DIFF": int(ctx.diff),
            "MR_SRC": source,
            "op": args.get("state") or "present",
            "target": suggested_filename(source, args.get("filename")),
            "mode": mode or "644",
            "update_cache": int(bool(args.get("update_cache", True))),
            "retries": int(args.get("update_cache_retries") or 5),
            "max_delay": int(args.get("update_cache_retry_max_delay", 12)),
            "NORMALIZE": NORMALIZE,
        }
        lines = "".join(f"{key}={quote(value)}\n" for key, value in settings.items())
        return RemoteStep(lines + BODY)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """changed, sources_added, sources_removed, and the files' diff."""
        if output.exit_code != 0:
            return failure(output, "apt_repository")
        head, _, diff = output.stdout.partition(DIFF_MARKER + "\n")
        report, _ = parse_report(head)
        added = [line[6:] for line in head.splitlines() if line.startswith("added=")]
        removed = [line[8:] for line in head.splitlines() if line.startswith("removed=")]
        state = str(args.get("state") or "present")
        result = {
            "repo": args["repo"],
            "state": state,
            "sources_added": added,
            "sources_removed": removed,
        }
        if report.get("changed") != "1":
            where = "present" if state == "present" else "absent"
            return Outcome("ok", msg=f"{args['repo']} already {where}", result=result)
        verb = ("would be " if ctx.check else "") + ("added" if state == "present" else "removed")
        return Outcome("changed", msg=f"{args['repo']} {verb}", diff=diff, result=result)
