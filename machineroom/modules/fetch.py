"""`fetch`: copy a file from the host to the controller, as Ansible's action plugin does.

Lands in `dest/<inventory_hostname>/<src>` or, with `flat`, in `dest` itself (a `dest`
ending in `/` gets the source's name). The host first says the file's SHA-1: when the local
copy has it already, nothing travels (changed=false); otherwise the file comes in pieces
(remote_read.py), is checked against that SHA-1 and written here atomically, through
`ModuleContext.local_files` (modules do no I/O). As in Ansible, check mode skips the task.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.errors import InputError
from machineroom.modules.base import (
    Conversation,
    LocalFiles,
    Module,
    ModuleContext,
    Outcome,
)
from machineroom.modules.remote_read import read_remote_file


def local_dest(args: Mapping[str, Any], host: str) -> str:
    """Where the file goes, before resolving against the playbook's folder."""
    src, dest = str(args["src"]), str(args["dest"])
    if args.get("flat"):
        if dest.endswith("/"):
            dest += posixpath.basename(src)
        return posixpath.normpath(dest)
    root = posixpath.normpath(f"{dest}/{host}")
    path = posixpath.normpath(f"{root}/{src}")
    if not path.startswith(root + "/"):
        raise InputError(
            f"fetch: Detected directory traversal, expected to be contained in '{root}' "
            f"but got '{path}'"
        )
    return path


class FetchModule(Module):
    """Copy a file from the host into a local folder (per host) or file (flat)."""

    name: ClassVar[str] = "fetch"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "src": {"type": "string", "minLength": 1},
            "dest": {"type": "string", "minLength": 1},
            "flat": {"type": "boolean", "default": False},
            "fail_on_missing": {"type": "boolean", "default": True},
            "validate_checksum": {"type": "boolean", "default": True},
        },
        "required": ["src", "dest"],
        "additionalProperties": False,
    }

    def converse(self, args: Mapping[str, Any], ctx: ModuleContext) -> Conversation:
        """Compare checksums, bring the file only when it differs."""
        if ctx.check:
            skip = "check mode not (yet) supported for this module"
            return Outcome("ok", msg=skip, result={"skipped": True})
        local = ctx.local_files
        if local is None:
            return Outcome("failed", msg="fetch: this run cannot write local files")
        src = str(args["src"])
        host = str(ctx.vars.get("inventory_hostname") or ctx.host_id)
        dest = local.resolve(local_dest(args, host))
        missing_ok = not args.get("fail_on_missing", True)
        known = local.digest(dest) or ""
        found = yield from read_remote_file(src, known_sha1=known)
        if not found.exists or found.isdir:
            msg = (
                "the remote file does not exist, not transferring, ignored"
                if not found.exists
                else "remote file is a directory, fetch cannot work on directories"
                + (", not transferring, ignored" if missing_ok else "")
            )
            return Outcome("ok" if missing_ok else "failed", msg=msg, result={"file": src})
        if found.error:
            return Outcome("failed", msg=found.error, result={"file": src})
        if found.known:
            same = {"file": src, "dest": dest, "checksum": known, "md5sum": _md5(local, dest)}
            return Outcome("ok", msg=f"{dest} already matches", result=same)
        local.write(dest, found.data)
        written = local.digest(dest) or ""
        result: dict[str, Any] = {
            "dest": dest,
            "md5sum": hashlib.md5(found.data).hexdigest(),
            "checksum": written,
            "remote_checksum": found.sha1,
            "remote_md5sum": None,
        }
        if args.get("validate_checksum", True) and written != found.sha1:
            return Outcome("failed", msg="checksum mismatch", result={**result, "file": src})
        return Outcome("changed", msg=f"{src} fetched to {dest}", result=result)


def _md5(local: LocalFiles, dest: str) -> str | None:
    return local.digest(dest, "md5")
