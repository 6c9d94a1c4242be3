"""`replace`: replace every match of a regular expression in a file, as Ansible's module.

Python's `re` runs here, on the controller, with Ansible's exact semantics (MULTILINE, `\\1`
and `\\g<name>` in `replace`, `after`/`before` as DOTALL patterns): no translation to awk's
dialect could promise that. So it takes two round trips (a conversation): the host sends the
file (remote_read.py), the new content goes back on stdin only when it differs (or when its
mode/owner/group need a look), and the writing step first checks that the file still has the
SHA-1 it was read with, so a concurrent edit is refused instead of overwritten. `mr_put`
(files_sh.py) then validates, backs up and renames atomically, as every file module does.
Symlinks are followed: the real file is written, as Ansible does.
"""

from __future__ import annotations

import codecs
import re
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
from machineroom.modules.remote_read import read_remote_file

# $path, $sha1: the file as it was read; the new content on stdin.
WRITE = r"""real=$(readlink -f -- "$path") || mr_fail "cannot resolve $path"
path=$real dir=${real%/*}; [ -n "$dir" ] || dir=/
sum=$(sha1sum < "$path") || mr_fail "cannot read $path"
[ "${sum%% *}" = "$sha1" ] || mr_fail "$path changed since it was read; nothing written"
mr_tmp_near "$dir"
cat >"$mr_t1" || mr_fail "cannot write a temporary file in $dir"
mr_put "$mr_t1" "$path"
"""


def compile_pattern(pattern: str, what: str, flags: int = 0) -> re.Pattern[str]:
    """A Python regular expression, or an InputError saying why it is not one."""
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise InputError(
            f"replace: {what} {pattern!r} is not a valid regular expression: {exc}"
        ) from None


def replaced(args: Mapping[str, Any], contents: str) -> tuple[str, int, str]:
    """(new contents, replacements made, message when after/before did not match): Ansible's
    algorithm, step for step."""
    after, before = args.get("after") or "", args.get("before") or ""
    pattern = ""
    if after and before:
        pattern = f"{after}(?P<subsection>.*?){before}"
    elif after:
        pattern = f"{after}(?P<subsection>.*)"
    elif before:
        pattern = f"(?P<subsection>.*){before}"
    start, end = 0, len(contents)
    if pattern:
        match = compile_pattern(pattern, "after/before", re.DOTALL).search(contents)
        if match is None:
            return (
                contents,
                0,
                (f"Pattern for before/after params did not match the given file: {pattern}"),
            )
        start, end = match.start("subsection"), match.end("subsection")
    section = contents[start:end]
    regexp = compile_pattern(str(args["regexp"]), "regexp", re.MULTILINE)
    try:
        new_section, count = regexp.subn(str(args.get("replace") or ""), section)
    except (re.error, IndexError) as exc:
        raise InputError(f"replace: Unable to process replace due to error: {exc}") from exc
    if count == 0 or new_section == section:
        return contents, 0, ""
    return contents[:start] + new_section + contents[end:], count, ""


class ReplaceModule(Module):
    """Replace all matches of a Python regular expression in a file on the host."""

    name: ClassVar[str] = "replace"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "regexp": {"type": "string"},
            "replace": {"type": "string", "default": ""},
            "after": {"type": "string"},
            "before": {"type": "string"},
            "backup": {"type": "boolean", "default": False},
            "validate": {"type": "string"},
            "encoding": {"type": "string", "default": "utf-8"},
            **files_sh.ATTR_PROPS,
        },
        "required": ["path", "regexp"],
        "additionalProperties": False,
        "x-aliases": {"dest": "path", "destfile": "path", "name": "path"},
    }

    def converse(self, args: Mapping[str, Any], ctx: ModuleContext) -> Conversation:
        """Read the file, replace here, write back only what differs."""
        path = str(args["path"])
        encoding = str(args.get("encoding") or "utf-8")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(f"replace: unknown encoding {encoding!r}") from None
        compile_pattern(str(args["regexp"]), "regexp", re.MULTILINE)
        validate = files_sh.validate_vars(args.get("validate"))  # checked before any I/O
        attrs = files_sh.attr_vars(args)
        found = yield from read_remote_file(path)
        if found.error:
            return Outcome("failed", msg=found.error, result={"rc": 1})
        if not found.exists:
            return Outcome("failed", msg=f"Path {path} does not exist !", result={"rc": 257})
        if found.isdir:
            return Outcome("failed", msg=f"Path {path} is a directory !", result={"rc": 256})
        try:
            contents = found.data.decode(encoding, "surrogateescape")
        except UnicodeDecodeError as exc:  # encodings without surrogateescape support
            return Outcome("failed", msg=f"{path}: cannot decode as {encoding}: {exc}")
        new, count, unmatched = replaced(args, contents)
        if unmatched:
            return Outcome("ok", msg=unmatched, result={"rc": 0})
        wants_attrs = any(args.get(k) not in (None, "") for k in ("mode", "owner", "group"))
        if not count and not wants_attrs:
            return Outcome("ok", msg=f"{path}: no replacements needed", result={"rc": 0})
        script = "".join(
            [
                files_sh.LIBRARY,
                files_sh.common_vars(ctx.check, ctx.diff, path),
                attrs,
                validate,
                f"backup={int(bool(args.get('backup')))}\n",
                f"path={quote(path)} sha1={quote(found.sha1)}\n",
                WRITE,
            ]
        )
        output = yield RemoteStep(script, stdin=new.encode(encoding, "surrogateescape"))
        return self._outcome(path, ctx, output, count)

    def _outcome(self, path: str, ctx: ModuleContext, output: CommandOutput, count: int) -> Outcome:
        if output.exit_code != 0:
            return files_sh.failure(output, "replace")
        report, diff_text = files_sh.parse_report(output.stdout)
        changed, diff, result = files_sh.file_outcome(
            path, report, diff_text, check=ctx.check, want_diff=ctx.diff
        )
        msg = f"{count} replacements made" if count else ""
        if report.get("attrs") == "1":
            msg += (" and " if msg else "") + "ownership, perms or SE linux context changed"
        result = {"rc": 0, **result}
        if not changed:
            return Outcome("ok", msg=msg or f"{path}: no replacements needed", result=result)
        return Outcome("changed", msg=msg, diff=diff, result=result)
